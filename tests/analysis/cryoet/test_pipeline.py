"""run_pipeline on a small simulated tomogram, evaluate() and the simulator templates."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.backends.base import weights_sha256
from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES
from analysis.cryoet.classify import Classification
from analysis.cryoet.io import ParticleList, write_volume
from analysis.cryoet.pipeline import DEFAULT_CHECKPOINT, assign_classes, evaluate, run_pipeline, simulator_template
from analysis.cryoet.simulate import simulate_tomogram
from analysis.progress import RecordingReporter

VOXEL = 10.0
COUNTS = {name: 2 for name in CLASS_NAMES}


@pytest.fixture(scope="module")
def simulation() -> tuple[np.ndarray, ParticleList]:
    return simulate_tomogram((48, 128, 128), VOXEL, counts=COUNTS, snr=1.0, seed=5, ribosome_model=None)


@pytest.fixture(scope="module")
def result_and_reporter(simulation):
    reporter = RecordingReporter()
    return run_pipeline(simulation[0], voxel_size=VOXEL, score_threshold=3.0, reporter=reporter), reporter


def test_pipeline_counts_add_up(result_and_reporter):
    result, _ = result_and_reporter
    assert result.picked_count > 0
    assert result.picked_count == len(result.picks) + result.rejected_count + result.merged_count
    assert len(result.spatial_map) == len(result.picks)
    assert result.probabilities.shape == (len(result.picks), len(result.probability_classes))
    assert result.embeddings.shape[0] == len(result.picks)
    assert "background" not in set(result.picks.class_names)


def test_pipeline_scores_are_kept_class_probabilities(result_and_reporter):
    result, _ = result_and_reporter
    columns = [result.probability_classes.index(name) for name in result.picks.class_names]
    expected = result.probabilities[np.arange(len(columns)), columns]
    np.testing.assert_allclose(result.picks.scores, expected, rtol=1e-6)
    np.testing.assert_allclose(result.spatial_map.scores, expected, rtol=1e-6)


def test_pipeline_reports_stages_in_order(result_and_reporter):
    result, reporter = result_and_reporter
    stages = list(dict.fromkeys(stage for stage, _, _ in reporter.reports))
    assert stages == ["read", "pick", "classify", "map"]
    fractions = [fraction for _, fraction, _ in reporter.reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert list(result.timings) == ["read", "pick", "classify", "map"]


def test_pipeline_names_checkpoint_digest(result_and_reporter):
    result, _ = result_and_reporter
    digest = weights_sha256(DEFAULT_CHECKPOINT)
    assert result.produced_by.startswith("DoG + APT-ViT (aptvit-small, sha256 ")
    assert digest[:12] in result.produced_by


def test_pipeline_map_bounds_cover_volume(result_and_reporter):
    result, _ = result_and_reporter
    np.testing.assert_allclose(result.spatial_map.bounds, [[0, 0, 0], [1280.0, 1280.0, 480.0]])


def test_pipeline_reads_mrc_voxel_size(simulation, tmp_path):
    path = write_volume(tmp_path / "tomogram.mrc", simulation[0], 12.0)
    result = run_pipeline(path, score_threshold=3.0)
    assert result.voxel_size == 12.0
    assert result.warnings == []
    assert result.shape == (48, 128, 128)
    assert result.picks.tomogram == "tomogram"


def test_pipeline_rejects_unknown_picker(simulation):
    with pytest.raises(ValueError, match="Unknown picker 'blob'"):
        run_pipeline(simulation[0], picker="blob", voxel_size=VOXEL)


def test_pipeline_rejects_2d_array():
    with pytest.raises(ValueError, match="3D volume"):
        run_pipeline(np.zeros((32, 32), dtype=np.float32), voxel_size=VOXEL)


def test_pipeline_template_picker(simulation):
    template = simulator_template("ribosome", VOXEL)
    result = run_pipeline(
        simulation[0],
        picker="template",
        voxel_size=VOXEL,
        score_threshold=0.2,
        template=template,
        rotations=np.eye(3)[None],
    )
    assert result.produced_by.startswith("template matching + APT-ViT")
    assert result.picked_count == len(result.picks) + result.rejected_count + result.merged_count


def test_evaluate_perfect_picks(simulation):
    reference = simulation[1]
    score = evaluate(reference, reference)
    assert score.weighted_fbeta == pytest.approx(1.0)
    for item in score.classes:
        assert item.recall == pytest.approx(1.0), item.name


def test_evaluate_far_picks_score_zero(simulation):
    reference = simulation[1]
    moved = ParticleList(reference.positions + 200.0, reference.class_names, reference.scores, reference.ids)
    score = evaluate(moved, reference)
    assert score.weighted_fbeta == 0.0


def test_evaluate_wrong_class_is_false_positive(simulation):
    reference = simulation[1]
    relabelled = reference.select(reference.class_names == "ribosome")
    relabelled.class_names[:] = "thyroglobulin"
    score = evaluate(relabelled, reference)
    by_name = {item.name: item for item in score.classes}
    assert by_name["thyroglobulin"].false_positives == len(relabelled)
    assert by_name["ribosome"].true_positives == 0


def test_evaluate_rejects_unknown_reference_class(simulation):
    reference = ParticleList.from_positions(np.zeros((1, 3)), class_name="proteasome")
    with pytest.raises(ValueError, match="proteasome"):
        evaluate(simulation[1], reference)


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_simulator_template_is_centred(name):
    template = simulator_template(name, VOXEL)
    side = template.shape[0]
    assert template.shape == (side, side, side)
    assert side % 2 == 1
    assert side >= 2 * CLASS_BY_NAME[name].radius_angstrom / VOXEL
    grid = np.indices(template.shape).reshape(3, -1)
    weights = template.reshape(-1)
    centre_of_mass = grid @ weights / weights.sum()
    np.testing.assert_allclose(centre_of_mass, (side - 1) / 2, atol=1.5)


def test_simulator_template_rejects_unknown_class():
    with pytest.raises(ValueError, match="Unknown particle class 'proteasome'"):
        simulator_template("proteasome", VOXEL)


def test_assign_classes_thresholds_and_merges():
    class_names = [*CLASS_NAMES, "background"]
    probabilities = np.zeros((4, len(class_names)), dtype=np.float32)
    ribosome = class_names.index("ribosome")
    background = class_names.index("background")
    probabilities[0, [ribosome, background]] = [0.9, 0.1]
    # 100 Å from the first pick, inside the ribosome radius, and less probable: merged.
    probabilities[1, [ribosome, background]] = [0.6, 0.4]
    # Background wins the argmax, but the best particle class still clears 0.3.
    probabilities[2, [ribosome, background]] = [0.35, 0.65]
    probabilities[3, [ribosome, background]] = [0.2, 0.8]
    positions = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [1000.0, 0.0, 0.0], [2000.0, 0.0, 0.0]])
    classification = Classification(
        positions, class_names, probabilities.argmax(axis=1), probabilities, np.zeros((4, 2)), False, "test"
    )

    labels, confidences, keep, refined, merged = assign_classes(classification, positions, min_probability=0.3)
    assert list(labels) == ["ribosome"] * 4
    np.testing.assert_allclose(confidences, [0.9, 0.6, 0.35, 0.2], rtol=1e-6)
    assert list(keep) == [True, False, True, False]
    assert merged == 1
    # The kept pick moves to the probability-weighted mean of the two within 0.75 of 150 Å.
    np.testing.assert_allclose(refined[0], [100.0 * 0.6 / 1.5, 0.0, 0.0])
    np.testing.assert_allclose(refined[2], positions[2])
    np.testing.assert_allclose(refined[3], positions[3])


def test_pipeline_rejects_bad_min_probability(simulation):
    with pytest.raises(ValueError, match="min_probability must lie between 0 and 1"):
        run_pipeline(simulation[0], voxel_size=VOXEL, min_probability=1.5)


@pytest.mark.parametrize("seed", [21, 22])
def test_pipeline_fbeta_at_default_snr(seed):
    # Three particles of each class at the simulator's default SNR (0.1), tilt range and defocus;
    # the shipped checkpoint and the default thresholds scored 0.997 and 0.903 on these seeds.
    volume, reference = simulate_tomogram(
        (184, 256, 256), VOXEL, counts={name: 3 for name in CLASS_NAMES}, seed=seed, ribosome_model=None
    )

    result = run_pipeline(volume, voxel_size=VOXEL)

    score = evaluate(result, reference)
    assert score.weighted_fbeta >= 0.8
    recalls = {item.name: item.recall for item in score.classes}
    assert min(recalls.values()) >= 0.5, recalls
