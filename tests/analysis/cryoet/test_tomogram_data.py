import numpy as np
import pytest

from analysis.cryoet.aptvit.data import BACKGROUND, TRAINING_CLASS_NAMES
from analysis.cryoet.aptvit.tomogram_data import label_candidates, make_tomogram_set


def test_label_candidates_uses_half_radius():
    particles = np.array([[0.0, 0.0, 0.0], [1000.0, 0.0, 0.0]])
    names = ["ribosome", "apo-ferritin"]
    candidates = np.array(
        [
            [70.0, 0.0, 0.0],  # within 75 Å of the ribosome
            [80.0, 0.0, 0.0],  # beyond half the ribosome radius
            [1029.0, 0.0, 0.0],  # within 30 Å of apo-ferritin
            [1031.0, 0.0, 0.0],
        ]
    )
    labels = [TRAINING_CLASS_NAMES[label] for label in label_candidates(candidates, particles, names)]
    assert labels == ["ribosome", BACKGROUND, "apo-ferritin", BACKGROUND]


def test_label_candidates_without_particles():
    labels = label_candidates(np.zeros((3, 3)), np.zeros((0, 3)), [])
    assert list(labels) == [TRAINING_CLASS_NAMES.index(BACKGROUND)] * 3


def test_tomogram_set_labels_match_particles():
    counts = {"ribosome": 2, "apo-ferritin": 3}
    data = make_tomogram_set(0, 1, shape=(48, 128, 128), counts=counts, snrs=(1.0,), box=16, ribosome_models=(None,))
    assert data.noisy.shape == data.clean.shape
    assert data.noisy.shape[1:] == (16, 16, 16)
    present = {TRAINING_CLASS_NAMES[label] for label in data.labels}
    # At SNR 1 every particle is found, and the picker proposes some false picks too.
    assert {"ribosome", "apo-ferritin", BACKGROUND} <= present
    assert present <= {"ribosome", "apo-ferritin", BACKGROUND}
    background = TRAINING_CLASS_NAMES.index(BACKGROUND)
    assert (data.labels == background).sum() <= 2 * (data.labels != background).sum() + 1
    # Crops are standardised as at inference, and a clean crop is the noise-free view of its noisy one.
    assert np.allclose(data.noisy.reshape(len(data.labels), -1).std(axis=1), 1.0, atol=1e-3)
    positive = np.flatnonzero(data.labels != background)[0]
    correlation = np.corrcoef(data.noisy[positive].ravel(), data.clean[positive].ravel())[0, 1]
    assert correlation > 0.3


def test_tomogram_set_is_reproducible():
    arguments = {"shape": (48, 96, 96), "counts": {"apo-ferritin": 2}, "snrs": (0.5,), "box": 16}
    first = make_tomogram_set(3, 1, ribosome_models=(None,), **arguments)
    second = make_tomogram_set(3, 1, ribosome_models=(None,), **arguments)
    assert first.sha256() == second.sha256()


def test_tomogram_set_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tomograms must be at least 1"):
        make_tomogram_set(0, 0)
    with pytest.raises(ValueError, match="snrs must be positive"):
        make_tomogram_set(0, 1, snrs=(0.0,))
