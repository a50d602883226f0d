"""The weight-free path: measured features, the measured proposer and ranker, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from analysis.__main__ import main
from analysis.setdiff.features import FEATURE_NAMES, measure_image, segment
from analysis.setdiff.ingest import Groups, ImageRecord
from analysis.setdiff.measured import propose_measured
from analysis.setdiff.pipeline import Settings, run_setdiff
from analysis.setdiff.synthetic import make_pair

FAST = Settings(proposers=("measured",), resamples=200, permutations=400)


def blob_image(centres, radius: float, brightness: int = 200, size: int = 96, seed: int = 0, elongation: float = 1.0):
    """Draw bright ellipses on a dark, slightly noisy background."""
    image = Image.new("L", (size, size), 20)
    draw = ImageDraw.Draw(image)
    for x, y in centres:
        draw.ellipse(
            [x - radius * elongation, y - radius / elongation, x + radius * elongation, y + radius / elongation],
            fill=brightness,
        )
    noise = np.random.default_rng(seed).normal(0, 4, (size, size))
    gray = np.clip(np.asarray(image, np.float64) + noise, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def grid(count: int, size: int = 96):
    side = int(np.ceil(np.sqrt(count)))
    step = size / (side + 1)
    return [((i % side + 1) * step, (i // side + 1) * step) for i in range(count)]


def as_groups(images_a, images_b) -> Groups:
    def records(images, group):
        return [ImageRecord(f"{group}{i}", group, pixels, f"{group}-{i}") for i, pixels in enumerate(images)]

    return Groups(records(images_a, "A"), records(images_b, "B"))


def test_measure_counts_and_sizes():
    values = measure_image(blob_image(grid(9), 6))
    assert set(values) == set(FEATURE_NAMES)
    assert values["object_count"] == 9
    assert values["object_area"] == pytest.approx(np.pi * 36, rel=0.25)
    assert values["circularity"] > 0.8
    assert values["eccentricity"] < 0.5


def test_watershed_splits_touching_objects():
    image = blob_image([(35, 48), (51, 48)], 9)  # two discs overlapping by 2 pixels
    gray = image[..., 0] / 255.0
    assert segment(gray, "otsu").max() == 1
    assert segment(gray, "watershed").max() == 2


def test_dark_objects_on_bright_background():
    image = 255 - blob_image(grid(4), 7)
    assert measure_image(image)["object_count"] == 4


def top_feature(result):
    top = result.hypotheses[0]
    return top.source["feature"], top.source["sign"]


@pytest.mark.parametrize(
    ("make_a", "make_b", "expected"),
    [
        (lambda s: blob_image(grid(16), 5, seed=s), lambda s: blob_image(grid(6), 5, seed=s), ("object_count", 1)),
        (lambda s: blob_image(grid(6), 8, seed=s), lambda s: blob_image(grid(6), 5, seed=s), ("object_area", 1)),
        (
            lambda s: blob_image(grid(6), 6, 240, seed=s),
            lambda s: blob_image(grid(6), 6, 140, seed=s),
            ("object_intensity", 1),
        ),
        # Object sizes vary between images, so only the shape separates the groups.
        (
            lambda s: blob_image(grid(6), 5 + s % 3, seed=s, elongation=1.8),
            lambda s: blob_image(grid(6), 5 + s % 3, seed=s),
            ("eccentricity", 1),
        ),
    ],
    ids=["count", "size", "brightness", "elongation"],
)
def test_known_difference_ranked_first(make_a, make_b, expected):
    # Each image varies a little (its own noise), and the groups differ in one drawn property.
    groups = as_groups([make_a(seed) for seed in range(6)], [make_b(100 + seed) for seed in range(6)])
    result = run_setdiff(groups, None, FAST)
    feature, sign = top_feature(result)
    if expected[0] == "object_area":
        assert feature in ("object_area", "object_perimeter")
    elif expected[0] == "eccentricity":
        assert (feature, sign) in (("eccentricity", 1), ("circularity", -1))
    else:
        assert feature == expected[0]
        assert sign == expected[1]
    top = result.hypotheses[0].result
    assert top.auroc == 1.0
    assert top.permutation_p < 0.01


def test_reversed_groups_flip_direction():
    small = [blob_image(grid(6), 5, seed=s) for s in range(5)]
    large = [blob_image(grid(6), 8, seed=10 + s) for s in range(5)]
    result = run_setdiff(as_groups(small, large), None, FAST)
    top = result.hypotheses[0]
    assert top.source["feature"] in ("object_area", "object_perimeter")
    assert top.source["sign"] == -1
    assert top.description.startswith(("smaller objects", "objects with shorter outlines"))


def test_evidence_lists_extremes():
    images_a = [blob_image(grid(n), 5, seed=n) for n in (10, 12, 14, 16)]
    images_b = [blob_image(grid(n), 5, seed=n) for n in (3, 5, 7, 9)]
    result = run_setdiff(as_groups(images_a, images_b), None, FAST)
    count = next(item for item in result.hypotheses if item.source["feature"] == "object_count")
    assert [entry["image"] for entry in count.evidence["a_best"]] == ["A3", "A2", "A1"]
    assert [entry["image"] for entry in count.evidence["b_best"]] == ["B3", "B2", "B1"]
    assert [entry["image"] for entry in count.evidence["b_worst"]] == ["B0", "B1", "B2"]
    assert count.evidence["b_worst"][0]["score"] == 3
    assert count.evidence["b_worst"][0]["value"] == 3


def test_evidence_values_keep_sign():
    small = [blob_image(grid(n), 5, seed=n) for n in (3, 4, 5)]
    large = [blob_image(grid(n), 5, seed=n) for n in (10, 12, 14)]
    result = run_setdiff(as_groups(small, large), None, FAST)
    count = next(item for item in result.hypotheses if item.source["feature"] == "object_count")
    assert count.source["sign"] == -1
    # For "fewer objects", the best-matching A image has the fewest objects.
    assert count.evidence["a_best"][0]["image"] == "A0"
    assert count.evidence["a_best"][0]["value"] == 3
    assert count.evidence["a_best"][0]["score"] == -3
    assert json.loads(json.dumps(result.as_dict(), allow_nan=False))


def test_synthetic_easy_count_ranked_first():
    pair = make_pair("count", "easy", images_per_group=8, seed=2)
    result = run_setdiff(as_groups(pair.a, pair.b), None, FAST)
    feature, sign = top_feature(result)
    assert pair.accepted.get(feature) == sign


def test_cli_run_writes_json(tmp_path, capsys):
    assert main(["setdiff", "synthetic", str(tmp_path / "data"), "--attribute", "size", "--images", "6"]) == 0
    output = tmp_path / "result.json"
    code = main(
        [
            "setdiff",
            "run",
            str(tmp_path / "data" / "A"),
            str(tmp_path / "data" / "B"),
            "-o",
            str(output),
            "--proposers",
            "measured",
            "--resamples",
            "100",
            "--permutations",
            "200",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "AUROC" in printed
    result = json.loads(output.read_text())
    assert result["groups"]["a"]["images"] == 6
    top = result["hypotheses"][0]
    assert top["source"]["feature"] in ("object_area", "object_perimeter", "foreground_fraction")
    assert top["auroc"] == 1.0
    assert {"auroc_low", "auroc_high", "welch_p", "permutation_p", "q", "evidence", "proposer", "ranker"} <= set(top)


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["setdiff", "run", str(tmp_path / "missing"), str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["setdiff", "run", "--csv", str(tmp_path / "x.csv")]) == 2
    assert "--group-a and --group-b" in capsys.readouterr().err


def combined(result):
    return [item for item in result.hypotheses if item.source.get("features")]


def test_larger_and_rounder_ranked_near_top():
    # A: large discs. B: smaller ellipses, so A's objects are both larger and rounder.
    images_a = [blob_image(grid(6), 8 + s % 3 * 0.5, seed=s) for s in range(6)]
    images_b = [blob_image(grid(6), 6 + s % 3 * 0.5, seed=100 + s, elongation=1.4 + s % 2 * 0.2) for s in range(6)]
    result = run_setdiff(as_groups(images_a, images_b), None, FAST)
    phrases = [item.source["phrase"] for item in result.hypotheses]
    assert "larger and rounder objects" in phrases[:3]
    item = result.hypotheses[phrases.index("larger and rounder objects")]
    assert item.source["features"] == {"object_area": 1, "circularity": 1}
    assert item.result.auroc == 1.0
    assert "in A against" in item.description
    # The single-feature descriptions stay.
    assert "larger objects" in phrases
    assert "rounder objects" in phrases


def test_size_only_not_called_rounder():
    images_a = [blob_image(grid(6), 8, seed=s) for s in range(6)]
    images_b = [blob_image(grid(6), 5, seed=100 + s) for s in range(6)]
    result = run_setdiff(as_groups(images_a, images_b), None, FAST)
    assert not any("round" in item.source["phrase"] for item in combined(result))
    assert result.hypotheses[0].source["feature"] in ("object_area", "object_perimeter")


def test_synthetic_size_not_called_rounder():
    pair = make_pair("size", "easy", images_per_group=8, seed=0)
    result = run_setdiff(as_groups(pair.a, pair.b), None, FAST)
    phrases = [item.source["phrase"] for item in combined(result)]
    assert not any("round" in phrase or "elongated" in phrase for phrase in phrases)
    top = result.hypotheses[0].source
    assert top["feature"] in ("object_area", "object_perimeter", "foreground_fraction")


def test_combined_score_is_mean_z_score():
    from analysis.setdiff.measured import combined_score

    table = np.zeros((4, len(FEATURE_NAMES)))
    table[:, FEATURE_NAMES.index("object_area")] = [30, 34, 10, 14]
    table[:, FEATURE_NAMES.index("circularity")] = [0.7, 0.9, 0.8, 0.6]
    # Area: mean 22, pooled within-group SD sqrt((4 + 4 + 4 + 4) / (4 - 2)) = 2 * sqrt(2).
    # Circularity, sign flipped: mean -0.75, pooled within-group SD sqrt(4 * 0.01 / (4 - 2)).
    area = (np.array([30, 34, 10, 14]) - 22) / (2 * np.sqrt(2))
    roundness = (-np.array([0.7, 0.9, 0.8, 0.6]) + 0.75) / np.sqrt(0.02)
    scores = combined_score(table, {"object_area": 1, "circularity": -1}, count_a=2)
    assert scores == pytest.approx((area + roundness) / 2)


def flat_disc_image(count: int, brightness: int, size: int = 96):
    """Draw discs of one exact grey level on black, with no noise, as rendered test data looks."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    for x, y in grid(count, size):
        draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=brightness)
    return np.repeat(np.asarray(image)[..., None], 3, axis=2)


def test_flat_objects_have_zero_texture():
    values = measure_image(flat_disc_image(9, 201))
    assert values["object_count"] == 9
    assert values["object_texture"] == 0.0


def test_rounding_spread_not_proposed():
    table = np.ones((6, len(FEATURE_NAMES)))
    column = FEATURE_NAMES.index("object_texture")
    # Both groups constant, differing only at the float32 rounding of a flat interior.
    table[:, column] = [7.56e-8] * 3 + [7.60e-8] * 3
    count = FEATURE_NAMES.index("object_count")
    table[:, count] = [20, 21, 22, 10, 11, 12]
    proposed = {item.source["feature"] for item in propose_measured(table, 3)}
    assert proposed == {"object_count"}


def test_flat_objects_rank_real_differences():
    # A draws its discs one grey level brighter than B. Unless flat interiors measure exactly 0,
    # their float32 rounding differs by level and ranks "smoother objects" first.
    images_a = [flat_disc_image(count, 201) for count in (16, 17, 18, 19, 20)]
    images_b = [flat_disc_image(count, 200) for count in (6, 7, 8, 9, 10)]
    result = run_setdiff(as_groups(images_a, images_b), None, FAST)
    features = [item.source["feature"] for item in result.hypotheses]
    assert "object_texture" not in features
    # The one grey level between the discs is a real, constant difference and ties the count.
    assert set(features[:2]) == {"object_count", "object_intensity"}
    assert result.hypotheses[0].result.auroc == 1.0


def colour_table(shift: float) -> np.ndarray:
    """Return a feature table of 3 A and 3 B images whose colour fractions differ by ``shift``."""
    table = np.ones((6, len(FEATURE_NAMES)))
    for name in ("red_fraction", "green_fraction", "blue_fraction"):
        values_a = [1 / 3 + shift + 1e-6 * i for i in range(3)]
        values_b = [1 / 3 + 1e-6 * i for i in range(3)]
        table[:, FEATURE_NAMES.index(name)] = values_a + values_b
    table[:, FEATURE_NAMES.index("object_count")] = [20, 21, 22, 10, 11, 12]
    return table


def test_negligible_colour_shift_not_proposed():
    # Greyscale tiles: every colour fraction is 1/3, shifted by 1e-5 with brightness.
    proposed = {item.source["feature"] for item in propose_measured(colour_table(1e-5), 3)}
    assert proposed == {"object_count"}


def test_visible_colour_shift_proposed():
    proposed = {item.source["feature"] for item in propose_measured(colour_table(0.02), 3)}
    assert "red_fraction" in proposed
    assert "blue_fraction" in proposed


def test_negligible_relative_change_not_proposed():
    table = np.ones((6, len(FEATURE_NAMES)))
    column = FEATURE_NAMES.index("glcm_correlation")
    # A consistent shift of 0.01 % of the value separates the groups perfectly.
    table[:, column] = [0.93810, 0.93811, 0.93812, 0.93800, 0.93801, 0.93802]
    assert "glcm_correlation" not in {item.source["feature"] for item in propose_measured(table, 3)}
    table[:, column] = [0.95, 0.951, 0.952, 0.93, 0.931, 0.932]
    assert "glcm_correlation" in {item.source["feature"] for item in propose_measured(table, 3)}


def test_feature_descriptions_unique():
    from analysis.setdiff.features import FEATURES

    phrases = [spec.higher for spec in FEATURES] + [spec.lower for spec in FEATURES]
    assert len(phrases) == len(set(phrases))
    labels = [spec.label for spec in FEATURES]
    assert len(labels) == len(set(labels))
