"""Subtomogram extraction, batched APT-ViT inference and classify() through checkpoints and the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from analysis.backends import ModelRegistry
from analysis.backends.checkpoint import load_checkpoint, save_checkpoint
from analysis.cryoet.aptvit import APTViT, APTViTConfig
from analysis.cryoet.aptvit.data import TRAINING_CLASS_NAMES
from analysis.cryoet.aptvit.infer import extract_subtomograms, predict_subtomograms
from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.classify import classify
from analysis.cryoet.pipeline import DEFAULT_MIN_PROBABILITY
from analysis.cryoet.simulate import simulate_tomogram
from analysis.progress import RecordingReporter

SMALL = APTViTConfig(box_size=16, voxel_size=20.0, patch_size=4, dim=32, depth=2, heads=2)
TRAINED_CHECKPOINT = Path(__file__).resolve().parents[3] / "analysis/cryoet/aptvit/checkpoints/aptvit-small.pt"


@pytest.fixture
def random_checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = APTViT(SMALL)
    return save_checkpoint(
        tmp_path / "aptvit-random.pt", "aptvit", model, SMALL.to_dict(), list(TRAINING_CLASS_NAMES), {"note": 1}
    )


@pytest.fixture
def tomogram() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((40, 50, 60)).astype(np.float32)


def test_extract_matches_volume_slice(tomogram):
    # Voxel (z, y, x) = (20, 25, 30) is at x, y, z = (300, 250, 200) Å at 10 Å per voxel.
    crops = extract_subtomograms(tomogram, 10.0, np.array([[300.0, 250.0, 200.0]]), box=8)

    expected = tomogram[16:24, 21:29, 26:34]
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(crops[0], expected, atol=1e-5)


def test_extract_pads_at_border(tomogram):
    crops = extract_subtomograms(tomogram, 10.0, np.array([[0.0, 0.0, 0.0]]), box=8)
    inside = tomogram[0:4, 0:4, 0:4]
    crop = crops[0]

    # The padded voxels all take one value, the mean of the part inside, before standardising.
    padded_values = np.unique(np.round(crop[:4], 5))
    assert padded_values.size == 1
    assert crop[4:, 4:, 4:].std() > 0.5
    np.testing.assert_allclose(np.corrcoef(crop[4:, 4:, 4:].ravel(), inside.ravel())[0, 1], 1.0, atol=1e-6)


def test_extract_resamples_other_voxel_size():
    # A ramp along x: value = x index. At 10 Å per voxel, a 20 Å crop samples every other voxel.
    ramp = np.broadcast_to(np.arange(64, dtype=np.float32), (64, 64, 64)).copy()
    crops = extract_subtomograms(ramp, 10.0, np.array([[320.0, 320.0, 320.0]]), box=8, box_voxel_size=20.0)

    profile = crops[0][4, 4]
    steps = np.diff(profile)
    np.testing.assert_allclose(steps, steps[0], atol=1e-5)
    assert np.allclose(crops[0][0], crops[0][7])


def test_extract_rejects_pick_outside_tomogram(tomogram):
    with pytest.raises(ValueError, match="1 pick\\(s\\) lie outside the tomogram"):
        extract_subtomograms(tomogram, 10.0, np.array([[100.0, 100.0, 100.0], [100.0, 100.0, 5000.0]]), box=8)


def test_extract_rejects_bad_picks(tomogram):
    with pytest.raises(ValueError, match=r"\(n, 3\) array"):
        extract_subtomograms(tomogram, 10.0, np.zeros((4, 2)), box=8)
    with pytest.raises(ValueError, match="NaN"):
        extract_subtomograms(tomogram, 10.0, np.array([[np.nan, 1.0, 1.0]]), box=8)
    with pytest.raises(ValueError, match="voxel_size"):
        extract_subtomograms(tomogram, 0.0, np.zeros((1, 3)), box=8)


def test_predict_batches_match_single_pass():
    torch.manual_seed(1)
    model = APTViT(SMALL).eval()
    volumes = np.random.default_rng(1).standard_normal((5, 16, 16, 16)).astype(np.float32)
    calls = []

    batched, batched_embeddings = predict_subtomograms(
        model, volumes, batch_size=2, rotation_average=False, progress=lambda done, total: calls.append(done)
    )
    whole, whole_embeddings = predict_subtomograms(model, volumes, batch_size=5, rotation_average=False)

    np.testing.assert_allclose(batched, whole, atol=1e-5)
    np.testing.assert_allclose(batched_embeddings, whole_embeddings, atol=1e-5)
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    assert calls == [2, 4, 5]


def test_classify_through_registry(random_checkpoint, tomogram):
    picks = np.array([[300.0, 250.0, 200.0], [50.0, 60.0, 70.0], [590.0, 490.0, 390.0]])
    registry = ModelRegistry({"aptvit": f"local:{random_checkpoint}"}, device="cpu")
    reporter = RecordingReporter()

    result = classify(tomogram, 10.0, picks, registry, reporter, rotation_average=False)
    from_path = classify(tomogram, 10.0, picks, random_checkpoint, rotation_average=False)

    assert registry.get("aptvit").info.backend == "torch-checkpoint"
    assert result.class_names == list(TRAINING_CLASS_NAMES)
    assert result.probabilities.shape == (3, 7)
    assert result.embeddings.shape == (3, 32)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, from_path.probabilities, atol=1e-6)
    assert result.model_source == f"local:{random_checkpoint}"
    assert reporter.reports[-1][:2] == ("classify", 1.0)
    assert len(result.to_dict()["particles"]) == 3


def test_classify_uses_model_voxel_size(random_checkpoint, tomogram):
    """The 20 Å model gets crops resampled from the 10 Å tomogram, the same as predict on those crops."""
    model = load_checkpoint(random_checkpoint)
    picks = np.array([[300.0, 250.0, 200.0]])

    result = classify(tomogram, 10.0, picks, model, rotation_average=True)

    crops = extract_subtomograms(tomogram, 10.0, picks, box=16, box_voxel_size=20.0)
    expected, _ = predict_subtomograms(model.module, crops, rotation_average=True)
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
    assert result.rotation_average


def test_classify_with_no_picks(random_checkpoint, tomogram):
    result = classify(tomogram, 10.0, np.zeros((0, 3)), random_checkpoint)

    assert result.probabilities.shape == (0, 7)
    assert result.labels == []


def test_classify_rejects_unknown_model_argument(tomogram):
    with pytest.raises(TypeError, match="checkpoint path, a ModelRegistry"):
        classify(tomogram, 10.0, np.zeros((1, 3)), 42)


def simulated_picks(seed: int) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Simulate a small tomogram at the default SNR with two particles of each class.

    Returns the tomogram, the picks (the true centres, then six empty places at least 320 Å from
    every particle), their true class names with "background" for the empty places, and the
    number of particles.
    """
    volume, particles = simulate_tomogram(
        (96, 256, 256), counts={name: 2 for name in CLASS_NAMES}, snr=0.1, seed=seed, ribosome_model=None
    )
    rng = np.random.default_rng(seed)
    tree = cKDTree(particles.positions)
    extent = np.array([256, 256, 96]) * 10.0
    empty = []
    while len(empty) < 6:
        place = rng.uniform(160.0, extent - 160.0)
        if tree.query(place)[0] > 320.0:
            empty.append(place)
    picks = np.concatenate([particles.positions, np.array(empty)])
    names = [*particles.class_names.astype(str), *["background"] * 6]
    return volume, picks, names, len(particles)


@pytest.mark.skipif(not TRAINED_CHECKPOINT.is_file(), reason="the trained APT-ViT checkpoint is not in this checkout")
@pytest.mark.parametrize("seed", [11, 12])
def test_trained_checkpoint_classifies_simulation(seed):
    volume, picks, names, count = simulated_picks(seed)
    registry = ModelRegistry({"aptvit": f"local:{TRAINED_CHECKPOINT}"}, device="cpu")

    result = classify(volume, 10.0, picks, registry, rotation_average=True)

    assert result.class_names == list(TRAINING_CLASS_NAMES)
    # The pipeline labels a pick with its most probable particle class, and keeps it when that
    # probability reaches DEFAULT_MIN_PROBABILITY.
    particle_probabilities = result.probabilities[:, : len(CLASS_NAMES)]
    best = np.array(CLASS_NAMES)[particle_probabilities.argmax(axis=1)]
    assert np.mean(best[:count] == np.array(names[:count])) >= 0.8
    kept_empty = particle_probabilities[count:].max(axis=1) >= DEFAULT_MIN_PROBABILITY
    assert kept_empty.sum() <= 1
