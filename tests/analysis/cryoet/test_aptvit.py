"""APT-ViT: shift invariance of the polyphase tokenizer, the cube rotation group, synthetic data, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.backends.checkpoint import read_checkpoint, registered_architectures
from analysis.cryoet.aptvit import ARCHITECTURE, CUBE_ROTATIONS, APTViT, APTViTConfig, apply_rotation
from analysis.cryoet.aptvit.data import (
    GENERATOR_VERSION,
    TRAINING_CLASS_NAMES,
    SubtomogramGenerator,
    imaging_filter,
    make_synthetic_set,
)
from analysis.cryoet.aptvit.model import apply_rotation_numpy, rotation_averaged
from analysis.cryoet.aptvit.tomogram_data import TOMOGRAM_GENERATOR_VERSION
from analysis.cryoet.aptvit.train import TrainConfig, train
from analysis.progress import RecordingReporter

SMALL = APTViTConfig(box_size=16, voxel_size=20.0, patch_size=4, dim=32, depth=2, heads=2)


def random_model(config: APTViTConfig, seed: int = 0) -> APTViT:
    """A randomly initialised model whose attention biases are non-zero, so they affect the output."""
    torch.manual_seed(seed)
    model = APTViT(config).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attention.bias_table.normal_(std=1.0)
    return model


@pytest.mark.parametrize("config", [SMALL, APTViTConfig()], ids=["box16-patch4", "box32-patch8"])
def test_logits_invariant_to_circular_shift(config):
    model = random_model(config)
    volumes = torch.randn(4, config.box_size, config.box_size, config.box_size)
    shifted = torch.roll(volumes, shifts=(1, 2, 3), dims=(1, 2, 3))

    with torch.no_grad():
        logits = model(volumes)
        shifted_logits = model(shifted)

    assert logits.abs().max() > 0.1
    torch.testing.assert_close(shifted_logits, logits, atol=1e-5, rtol=1e-5)


def test_tokenizer_phase_follows_shift():
    model = random_model(SMALL)
    volumes = torch.randn(3, 16, 16, 16)
    shift = torch.tensor([1, 2, 3])

    phase = model.tokenizer.select_phase(volumes)
    shifted_phase = model.tokenizer.select_phase(torch.roll(volumes, tuple(shift.tolist()), dims=(1, 2, 3)))

    assert torch.equal(shifted_phase, (phase + shift) % SMALL.patch_size)


def test_tokens_are_cyclic_permutation_after_shift():
    model = random_model(SMALL)
    volume = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        tokens = model.tokenizer(volume)[0]
        shifted_tokens = model.tokenizer(torch.roll(volume, (1, 2, 3), dims=(1, 2, 3)))[0]

    distances = (shifted_tokens[:, None, :] - tokens[None, :, :]).norm(dim=-1)
    matches = distances.argmin(dim=1)
    assert torch.equal(torch.sort(matches).values, torch.arange(len(tokens)))
    assert float(distances.min(dim=1).values.max()) < 1e-5
    assert not torch.equal(matches, torch.arange(len(tokens)))


def test_fixed_phase_patching_is_not_shift_invariant():
    """Without the polyphase choice the same network changes its output under the shift."""
    model = random_model(SMALL)
    volumes = torch.randn(2, 16, 16, 16)
    model.tokenizer.select_phase = lambda batch: torch.zeros(len(batch), 3, dtype=torch.long)

    with torch.no_grad():
        difference = (model(volumes) - model(torch.roll(volumes, (1, 2, 3), dims=(1, 2, 3)))).abs().max()

    assert difference > 1e-3


def test_cube_rotations_distinct_and_closed():
    probe = np.arange(27).reshape(3, 3, 3)
    rotated = [apply_rotation_numpy(probe, steps).tobytes() for steps in CUBE_ROTATIONS]

    assert len(CUBE_ROTATIONS) == 24
    assert len(set(rotated)) == 24
    assert rotated[0] == probe.tobytes()
    for first in CUBE_ROTATIONS:
        for second in CUBE_ROTATIONS:
            composed = apply_rotation_numpy(apply_rotation_numpy(probe, first), second)
            assert composed.tobytes() in rotated


def test_cube_rotations_are_proper():
    """Each rotation maps the axes by a signed permutation matrix with determinant +1."""
    basis = np.zeros((3, 3, 3))
    basis[1, 1, 2] = 1.0
    basis[1, 2, 1] = 2.0
    basis[2, 1, 1] = 3.0
    determinants = set()
    for steps in CUBE_ROTATIONS:
        rotated = apply_rotation_numpy(basis, steps)
        matrix = np.zeros((3, 3))
        for value, column in ((3.0, 0), (2.0, 1), (1.0, 2)):
            position = np.argwhere(rotated == value)[0] - 1
            matrix[:, column] = position
        determinants.add(round(float(np.linalg.det(matrix))))
    assert determinants == {1}


def test_torch_and_numpy_rotations_agree():
    volume = np.random.default_rng(0).standard_normal((2, 5, 5, 5)).astype(np.float32)
    for steps in CUBE_ROTATIONS:
        expected = apply_rotation_numpy(volume, steps, first_axis=1)
        actual = apply_rotation(torch.from_numpy(volume), steps).numpy()
        np.testing.assert_array_equal(actual, expected)


def test_rotation_average_invariant_to_quarter_turns():
    model = random_model(SMALL)
    volumes = torch.randn(2, 16, 16, 16)
    with torch.no_grad():
        logits, embedding = rotation_averaged(model, volumes)
        single = model(volumes)
        for dims in ((1, 2), (1, 3), (2, 3)):
            turned_logits, turned_embedding = rotation_averaged(model, torch.rot90(volumes, 1, dims=dims))
            torch.testing.assert_close(turned_logits, logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(turned_embedding, embedding, atol=1e-5, rtol=1e-5)
        turned_single = model(torch.rot90(volumes, 1, dims=(1, 2)))

    # A single pass is not rotation invariant, so the average is what makes the check above pass.
    assert (turned_single - single).abs().max() > 1e-3


def test_model_output_shapes():
    model = random_model(SMALL)
    with torch.no_grad():
        logits, embedding = model.forward_with_embedding(torch.randn(5, 1, 16, 16, 16))
    assert logits.shape == (5, 7)
    assert embedding.shape == (5, 32)


def test_model_rejects_wrong_box():
    model = random_model(SMALL)
    with pytest.raises(ValueError, match=r"\(batch, 16, 16, 16\)"):
        model(torch.randn(2, 16, 16, 12))


def test_config_rejects_patch_not_dividing_box():
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        APTViTConfig(box_size=30, patch_size=4)


def test_architecture_registered_on_import():
    assert ARCHITECTURE in registered_architectures()


def test_synthetic_set_is_reproducible():
    first = make_synthetic_set(seed=3, per_class=2, box=16, voxel_size=20.0)
    again = make_synthetic_set(seed=3, per_class=2, box=16, voxel_size=20.0)
    other = make_synthetic_set(seed=4, per_class=2, box=16, voxel_size=20.0)

    assert first.sha256() == again.sha256()
    assert first.sha256() != other.sha256()
    assert np.bincount(first.labels).tolist() == [2] * len(TRAINING_CLASS_NAMES)
    assert first.noisy.shape == (14, 16, 16, 16)
    assert first.noisy.dtype == np.float32


def test_synthetic_volumes_have_missing_wedge():
    data = make_synthetic_set(seed=0, per_class=1, box=32, voxel_size=10.0)
    missing = imaging_filter(32, 10.0) == 0
    assert missing.mean() > 0.2
    for clean in data.clean:
        power = np.abs(np.fft.rfftn(clean)) ** 2
        assert power[missing].max() <= 1e-12 * max(power.max(), 1e-30)
    # Noise is filtered on a larger grid and cropped, so a little power leaks into the wedge,
    # where unfiltered white noise would have as much as elsewhere.
    for noisy in data.noisy:
        power = np.abs(np.fft.rfftn(noisy)) ** 2
        assert power[missing].mean() < 0.2 * power[~missing].mean()


def test_synthetic_classes_differ_in_size():
    """Classes with larger radii give more voxels above half the maximum density."""
    generator = SubtomogramGenerator(box=32, voxel_size=10.0)
    rng = np.random.default_rng(0)
    sizes = {}
    for name in ("apo-ferritin", "ribosome"):
        density = generator.particle(rng, name)
        sizes[name] = int((density > 0.5 * density.max()).sum())
    assert sizes["ribosome"] > 2 * sizes["apo-ferritin"]


def test_synthetic_set_rejects_bad_snr():
    with pytest.raises(ValueError, match="snr must be positive"):
        make_synthetic_set(seed=0, per_class=1, snr=0.0)
    with pytest.raises(ValueError, match="snr_max 0.2 is below snr 0.5"):
        make_synthetic_set(seed=0, per_class=1, snr=0.5, snr_max=0.2)


def noisy_clean_correlations(data, label: int) -> np.ndarray:
    pairs = zip(data.noisy[data.labels == label], data.clean[data.labels == label], strict=True)
    return np.array([np.corrcoef(noisy.ravel(), clean.ravel())[0, 1] for noisy, clean in pairs])


def test_synthetic_snr_range_varies_noise():
    """Within one class, an SNR range spreads the noisy-to-clean correlation much more than one SNR."""
    fixed = make_synthetic_set(seed=0, per_class=6, box=16, voxel_size=20.0, snr=1.0)
    ranged = make_synthetic_set(seed=0, per_class=6, box=16, voxel_size=20.0, snr=0.1, snr_max=10.0)

    fixed_spread = np.ptp(noisy_clean_correlations(fixed, label=0))
    ranged_spread = np.ptp(noisy_clean_correlations(ranged, label=0))

    assert ranged_spread > 3 * fixed_spread
    assert ranged.parameters["snr_max"] == 10.0
    assert "snr_max" not in fixed.parameters


def test_quick_training_beats_chance(tmp_path):
    config = TrainConfig(
        output=str(tmp_path / "aptvit-tiny.pt"),
        data="shapes",
        box_size=16,
        voxel_size=20.0,
        patch_size=4,
        dim=32,
        depth=2,
        heads=2,
        snr=1.0,
        train_per_class=40,
        validation_per_class=20,
        pretrain_steps=30,
        finetune_steps=150,
        queue_size=256,
        validate_rotation_average=False,
    )
    reporter = RecordingReporter()

    path = train(config, reporter)

    checkpoint = read_checkpoint(path)
    metrics = checkpoint["metrics"]
    assert checkpoint["architecture"] == "aptvit"
    assert checkpoint["class_names"] == list(TRAINING_CLASS_NAMES)
    assert checkpoint["config"]["patch_size"] == 4
    assert checkpoint["config"]["voxel_size"] == 20.0
    assert metrics["finetune_loss"]["last_mean"] < 0.8 * metrics["finetune_loss"]["first_mean"]
    chance = 1 / len(TRAINING_CLASS_NAMES)
    assert metrics["validation"]["accuracy"] > chance + 0.2
    assert set(metrics["validation"]["per_class_accuracy"]) == set(TRAINING_CLASS_NAMES)
    assert len(metrics["training_data_sha256"]) == 64
    assert metrics["generator_version"] == GENERATOR_VERSION
    assert {stage for stage, _, _ in reporter.reports} == {"generate", "pretrain", "finetune", "evaluate"}


def test_training_rejects_unknown_setting():
    with pytest.raises(ValueError, match="Unknown APT-ViT training setting"):
        train({"output": "unused.pt", "epochs": 3})


def test_training_on_tomogram_crops(tmp_path):
    config = TrainConfig(
        output=str(tmp_path / "aptvit-tomograms.pt"),
        data="tomograms",
        tomograms=1,
        validation_tomograms=1,
        tomogram_shape=(48, 96, 96),
        snrs=(1.0,),
        box_size=16,
        voxel_size=20.0,
        patch_size=4,
        dim=32,
        depth=2,
        heads=2,
        pretrain_steps=20,
        finetune_steps=120,
        queue_size=128,
        validate_rotation_average=False,
    )

    path = train(config, RecordingReporter())

    checkpoint = read_checkpoint(path)
    metrics = checkpoint["metrics"]
    assert metrics["generator_version"] == TOMOGRAM_GENERATOR_VERSION
    assert tuple(checkpoint["config"]["training"]["tomogram_shape"]) == (48, 96, 96)
    assert metrics["training_samples"] > 20
    assert metrics["finetune_loss"]["last_mean"] < metrics["finetune_loss"]["first_mean"]
    assert "background" in metrics["validation"]["per_class_accuracy"]


def test_training_rejects_unknown_data():
    with pytest.raises(ValueError, match="Unknown training data 'cubes'"):
        TrainConfig(data="cubes")
