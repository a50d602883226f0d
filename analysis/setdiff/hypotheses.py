"""Ranked descriptions: the record each proposer and ranker fills, and the ranking itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.setdiff.stats import Separation, fill_q_values, separation, within_rounding

EVIDENCE_COUNT = 3
# NOTE: chosen by looking at which summaries outranked the true difference on the hard
# synthetic groups, so the synthetic benchmark is not an independent test of this value.
SUMMARY_MARGIN = 0.05
# The order of ``rank`` in words, shown above result tables and in exports.
RANK_ORDER = (
    f'Sorted by AUROC, highest first. Whole-image summaries (marked "whole image") are sorted as if '
    f"their AUROC were {SUMMARY_MARGIN} lower, so an object measurement that separates the groups about as "
    "well comes first. Ties go to the larger effect size."
)


@dataclass
class Hypothesis:
    """A description claimed to be more true of group A than of group B."""

    description: str
    proposer: str  # "measured", "caption_tokens", "comparative_decoding", "llm", "user"
    # What the proposer based it on, such as the feature and its medians, or a phrase's z-score.
    source: dict = field(default_factory=dict)
    ranker: str = ""
    # One score per image of A then B; higher means the description fits the image better.
    scores: np.ndarray | None = None
    result: Separation | None = None
    evidence: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "description": self.description,
            "direction": "more true of A than of B",
            "proposer": self.proposer,
            "ranker": self.ranker,
            "source": _finite_or_none(self.source),
            **(self.result.as_dict() if self.result else {}),
            "evidence": self.evidence,
        }


def _finite_or_none(value):
    """Replace NaN and infinite floats with None, so the result is valid JSON."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def build_evidence(scores: np.ndarray, names_a: list[str], names_b: list[str], count: int = EVIDENCE_COUNT) -> dict:
    """Pick the best-matching A images, the best-matching B images (counterexamples) and the
    least-matching B images, each with its score."""
    scores_a, scores_b = scores[: len(names_a)], scores[len(names_a) :]

    def pick(values: np.ndarray, names: list[str], highest: bool) -> list[dict]:
        order = np.argsort(-values if highest else values, kind="stable")[:count]
        return [{"image": names[index], "score": float(values[index])} for index in order]

    return {
        "a_best": pick(scores_a, names_a, True),
        "b_best": pick(scores_b, names_b, True),
        "b_worst": pick(scores_b, names_b, False),
    }


def score_hypothesis(
    hypothesis: Hypothesis,
    scores: np.ndarray,
    names_a: list[str],
    names_b: list[str],
    ranker: str,
    resamples: int = 1000,
    permutations: int = 2000,
) -> Hypothesis:
    scores = np.asarray(scores, np.float64)
    hypothesis.scores = scores
    hypothesis.ranker = ranker
    hypothesis.result = separation(scores[: len(names_a)], scores[len(names_a) :], resamples, permutations)
    hypothesis.evidence = build_evidence(scores, names_a, names_b)
    return hypothesis


def rank(hypotheses: list[Hypothesis], summary_margin: float = SUMMARY_MARGIN) -> list[Hypothesis]:
    """Fill q-values across all hypotheses and sort them, best first (``RANK_ORDER`` states the order).

    Hypotheses whose group means differ only by floating-point rounding go last, whatever
    their AUROC, because a constant that differs between the groups only by rounding
    separates them perfectly. The others sort by AUROC, highest first, then |effect size|
    (infinite when both groups are constant, NaN once stored without it), then the
    permutation p-value. For sorting only, a whole-image summary (mean intensity, GLCM
    texture, edge density and the like) has ``summary_margin`` taken off its AUROC. Such
    summaries move with any change to the objects, because more nuclei also mean more edges
    and a brighter mean. So a summary goes first only when it separates the groups clearly
    better.
    """
    scored = [item for item in hypotheses if item.result is not None]
    fill_q_values([item.result for item in scored])

    def key(item: Hypothesis):
        result = item.result
        negligible = within_rounding(result.mean_a, result.mean_b)
        effect = abs(result.effect_size) if np.isfinite(result.effect_size) else 1e9
        margin = summary_margin if item.source.get("whole_image") else 0.0
        return (negligible, -(result.auroc - margin), -effect, result.permutation_p)

    return sorted(scored, key=key)
