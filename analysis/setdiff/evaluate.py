"""Benchmarks: Acc@1 and Acc@5 on the synthetic microscopy groups and on VisDiff-format data.

On synthetic groups the true difference is known as a set of measured features with a sign,
so a measured description is judged exactly. On VisDiff-format data a judge compares each
proposed description with the true difference: the LLM when one is configured, otherwise the
cosine similarity of sentence embeddings against a threshold calibrated on labelled pairs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.setdiff.features import FEATURE_NAMES
from analysis.setdiff.hypotheses import Hypothesis, rank, score_hypothesis
from analysis.setdiff.ingest import Groups, ImageRecord, IngestError, IngestOptions, load_groups, read_visdiff_csv
from analysis.setdiff.measured import FeatureTable, propose_measured, rank_measured
from analysis.setdiff.pipeline import Settings, run_setdiff
from analysis.setdiff.synthetic import ATTRIBUTES, DIFFICULTIES, make_pair

# Labelled (proposed, true, same meaning) pairs for calibrating the embedding judge's threshold.
CALIBRATION_PAIRS = [
    ("larger nuclei", "bigger nuclei", True),
    ("more cells per image", "a higher number of cells", True),
    ("brighter objects", "brighter nuclei", True),
    ("more elongated objects", "elongated cells", True),
    ("more clustered objects", "cells grouped in clusters", True),
    ("more textured objects", "granular nuclei", True),
    ("dogs playing in snow", "dogs in the snow", True),
    ("red cars", "cars that are red", True),
    ("people wearing hats", "people with hats", True),
    ("images taken at night", "night-time photographs", True),
    ("larger nuclei", "more cells per image", False),
    ("brighter objects", "elongated cells", False),
    ("more clustered objects", "bigger nuclei", False),
    ("more textured objects", "a higher number of cells", False),
    ("dogs playing in snow", "cats sleeping indoors", False),
    ("red cars", "people wearing hats", False),
    ("images taken at night", "red cars", False),
    ("people wearing hats", "dogs in the snow", False),
    ("rounder objects", "brighter background", False),
    ("fewer objects per image", "larger nuclei", False),
]


def judged_text(hypothesis: Hypothesis) -> str:
    """Return the text a judge compares: a measured description's bare phrase, without its values."""
    return hypothesis.source.get("phrase") or hypothesis.description


@dataclass
class EmbeddingJudge:
    """Judges a description correct when its embedding's cosine similarity to the truth reaches ``threshold``."""

    embedder: object
    threshold: float
    calibration_accuracy: float | None = None

    def matches(self, proposed: list[str], truth: str) -> list[bool]:
        vectors = self.embedder.embed([truth, *proposed])
        return [bool(value >= self.threshold) for value in vectors[1:] @ vectors[0]]

    def describe(self) -> str:
        accuracy = (
            "" if self.calibration_accuracy is None else f", {self.calibration_accuracy:.2f} accurate on calibration"
        )
        return f"sentence-embedding judge, cosine >= {self.threshold:.3f}{accuracy}"

    @classmethod
    def calibrated(cls, embedder, pairs=CALIBRATION_PAIRS) -> EmbeddingJudge:
        """Pick the threshold that classifies ``pairs`` best: the midpoint between neighbouring similarities."""
        first = embedder.embed([pair[0] for pair in pairs])
        second = embedder.embed([pair[1] for pair in pairs])
        similarities = np.sum(first * second, axis=1)
        labels = np.array([pair[2] for pair in pairs])
        ordered = np.sort(similarities)
        candidates = np.concatenate([[ordered[0] - 1e-6], (ordered[1:] + ordered[:-1]) / 2, [ordered[-1] + 1e-6]])
        accuracies = [np.mean((similarities >= value) == labels) for value in candidates]
        best = int(np.argmax(accuracies))
        return cls(embedder, float(candidates[best]), float(accuracies[best]))


@dataclass
class LLMJudge:
    llm: object

    def matches(self, proposed: list[str], truth: str) -> list[bool]:
        verdicts = []
        for text in proposed:
            question = (
                f'True difference: "{truth}". Proposed difference: "{text}". '
                "Do they describe the same difference? Answer yes or no."
            )
            reply = self.llm.chat([{"role": "user", "content": question}], max_new_tokens=4).text
            verdicts.append(bool(re.match(r"\W*yes\b", reply.strip().lower())))
        return verdicts

    def describe(self) -> str:
        return f"LLM judge ({self.llm.info.version})"


@dataclass
class Scoreboard:
    """Acc@1 and Acc@5 counts per difficulty (or per data set) for one method."""

    hits_at_1: dict[str, int] = field(default_factory=dict)
    hits_at_5: dict[str, int] = field(default_factory=dict)
    comparisons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0

    def add(self, level: str, correct: list[bool]) -> None:
        self.comparisons[level] = self.comparisons.get(level, 0) + 1
        self.hits_at_1[level] = self.hits_at_1.get(level, 0) + int(any(correct[:1]))
        self.hits_at_5[level] = self.hits_at_5.get(level, 0) + int(any(correct[:5]))

    def accuracy(self, level: str, k: int) -> float:
        hits = self.hits_at_1 if k == 1 else self.hits_at_5
        return hits.get(level, 0) / self.comparisons[level]


# --- synthetic benchmark --------------------------------------------------------------


def _records(images: list[np.ndarray], group: str, tag: str) -> list[ImageRecord]:
    import hashlib

    return [
        ImageRecord(f"{tag}/{group}{i}", group, pixels, hashlib.sha256(pixels.tobytes()).hexdigest())
        for i, pixels in enumerate(images)
    ]


def matches_truth(accepted: dict[str, int], source: dict) -> bool:
    """Check whether a measured description states the known difference. A combined description
    counts only when every one of its features is accepted, in the accepted direction."""
    parts = source.get("features") or {source.get("feature"): source.get("sign")}
    return all(accepted.get(name) == sign for name, sign in parts.items())


def measured_ranking(table: np.ndarray, count_a: int, names_a, names_b, **options) -> list[Hypothesis]:
    return rank(rank_measured(propose_measured(table, count_a), table, names_a, names_b, **options))


def mean_intensity_ranking(table: np.ndarray, count_a: int, names_a, names_b, **options) -> list[Hypothesis]:
    """Rank the baseline's single description, made from the mean intensity alone."""
    column = table[:, FEATURE_NAMES.index("mean_intensity")]
    brighter = np.median(column[:count_a]) >= np.median(column[count_a:])
    phrase = "brighter images" if brighter else "darker images"
    source = {"feature": "mean_intensity", "sign": 1 if brighter else -1, "phrase": phrase}
    hypothesis = Hypothesis(phrase, "mean_intensity_baseline", source)
    return [score_hypothesis(hypothesis, column * source["sign"], names_a, names_b, "measured", **options)]


METHODS: dict[str, Callable] = {"measured": measured_ranking, "mean intensity baseline": mean_intensity_ranking}


def run_synthetic_benchmark(
    difficulties=DIFFICULTIES,
    attributes=ATTRIBUTES,
    seeds: int = 2,
    images_per_group: int = 20,
    first_seed: int = 0,
    segmentation: str = "watershed",
    resamples: int = 200,
    permutations: int = 500,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Scoreboard]:
    """Run every method on every attribute, difficulty and seed; features are measured once and shared."""
    boards = {name: Scoreboard() for name in METHODS}
    features_seconds = 0.0
    for difficulty in difficulties:
        for attribute in attributes:
            for seed in range(first_seed, first_seed + seeds):
                pair = make_pair(attribute, difficulty, images_per_group, seed=seed)
                tag = f"{attribute}-{difficulty}-{seed}"
                records = _records(pair.a, "A", tag) + _records(pair.b, "B", tag)
                started = time.perf_counter()
                table = FeatureTable(segmentation).table(records)
                measuring = time.perf_counter() - started
                features_seconds += measuring
                names_a = [record.name for record in records[: len(pair.a)]]
                names_b = [record.name for record in records[len(pair.a) :]]
                for name, method in METHODS.items():
                    started = time.perf_counter()
                    ranked = method(
                        table, len(pair.a), names_a, names_b, resamples=resamples, permutations=permutations
                    )
                    board = boards[name]
                    # The baseline needs only the mean intensity, so it is charged 1/len(FEATURE_NAMES)
                    # of the measuring time: an estimate, as all features are measured in one pass.
                    share = measuring if name == "measured" else measuring / len(FEATURE_NAMES)
                    board.seconds += time.perf_counter() - started + share
                    board.images += len(records)
                    correct = [matches_truth(pair.accepted, item.source) for item in ranked]
                    board.add(difficulty, correct)
                if progress:
                    top = boards["measured"]
                    progress(f"{tag}: measured Acc@1 so far {top.hits_at_1[difficulty]}/{top.comparisons[difficulty]}")
    return boards


# --- VisDiff-format benchmark -----------------------------------------------------------


def read_pairs(path: str | Path) -> list[dict]:
    """Read JSONL pairs: ``set1``/``set2`` (or ``group_a``/``group_b``) and ``difference`` per line."""
    pairs = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise IngestError(f"{path}:{number}: not valid JSON ({error.msg}).") from error
        group_a = row.get("set1", row.get("group_a"))
        group_b = row.get("set2", row.get("group_b"))
        truth = row.get("difference", row.get("description"))
        if not (group_a and group_b and truth):
            raise IngestError(f"{path}:{number}: each line needs set1, set2 and difference.")
        pairs.append({"group_a": group_a, "group_b": group_b, "difference": truth})
    return pairs


def run_visdiff_benchmark(
    csv_path: str | Path,
    pairs_path: str | Path,
    judge,
    registry=None,
    settings: Settings | None = None,
    options: IngestOptions | None = None,
) -> tuple[Scoreboard, list[dict]]:
    """Run each pair, judge its top 5 descriptions against the true difference, and count Acc@1 and Acc@5."""
    groups_by_name = read_visdiff_csv(csv_path)
    board = Scoreboard()
    rows = []
    for pair in read_pairs(pairs_path):
        for name in (pair["group_a"], pair["group_b"]):
            if name not in groups_by_name:
                raise IngestError(f"{pairs_path}: group {name!r} is not in {csv_path}.")
        groups: Groups = load_groups(
            groups_by_name[pair["group_a"]], groups_by_name[pair["group_b"]], options, pair["group_a"], pair["group_b"]
        )
        started = time.perf_counter()
        result = run_setdiff(groups, registry, settings)
        board.seconds += time.perf_counter() - started
        board.images += len(groups.images)
        top = [judged_text(item) for item in result.hypotheses[:5]]
        correct = judge.matches(top, pair["difference"]) if top else []
        board.add("all", correct)
        rows.append({**pair, "top5": top, "correct": correct})
    return board, rows
