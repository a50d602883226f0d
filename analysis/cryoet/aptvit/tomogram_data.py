"""Training subtomograms cut from simulated tomograms around the pipeline's own picks.

Each training tomogram is simulated once without noise, then noise is added at several SNRs.
In each noisy copy the pipeline's picker proposes candidates, and every candidate becomes one
sample: the crop of the noisy tomogram (the query view for contrastive pretraining and the input
for fine-tuning) and the crop of the clean tomogram at the same place (the key view). A candidate
within half a radius of a true particle takes that particle's class, as the benchmark's matching
rule would count it, and every other candidate is "background". So the classifier learns from the
same crops, centring errors and false picks that it sees in use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from analysis.cryoet.aptvit.data import BACKGROUND, TRAINING_CLASS_NAMES, SyntheticSet
from analysis.cryoet.aptvit.infer import extract_subtomograms
from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES
from analysis.cryoet.pick import find_candidates
from analysis.cryoet.simulate import add_noise, simulate_clean_tomogram
from analysis.progress import NullReporter, ProgressReporter

logger = logging.getLogger(__name__)

# Part of the training-data hash: change it whenever this generator's output changes.
TOMOGRAM_GENERATOR_VERSION = "aptvit-tomogram-crops-1"
# A quarter of the default tomogram's area at its full depth, with more of the rare classes.
DEFAULT_TRAINING_SHAPE = (184, 320, 320)
DEFAULT_TRAINING_COUNTS = {name: 8 for name in CLASS_NAMES}
DEFAULT_TRAINING_SNRS = (0.05, 0.1, 0.2)
# Candidates are picked with a low score threshold, so the set has many hard false picks.
CANDIDATE_MIN_SCORE = 5.0


def label_candidates(candidates: np.ndarray, positions: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Return, per candidate, the index into TRAINING_CLASS_NAMES of the particle it would match.

    A candidate matches the nearest true particle when it lies within half that particle's
    radius, and is background otherwise.
    """
    labels = np.full(len(candidates), TRAINING_CLASS_NAMES.index(BACKGROUND), dtype=np.int64)
    if len(candidates) == 0 or len(positions) == 0:
        return labels
    distances, nearest = cKDTree(positions).query(candidates)
    radii = np.array([CLASS_BY_NAME[str(name)].radius_angstrom for name in names])
    matched = distances <= radii[nearest] / 2
    class_index = np.array([TRAINING_CLASS_NAMES.index(str(name)) for name in names])
    labels[matched] = class_index[nearest[matched]]
    return labels


def make_tomogram_set(
    seed: int,
    tomograms: int,
    shape: tuple[int, int, int] = DEFAULT_TRAINING_SHAPE,
    counts: dict[str, int] | None = None,
    snrs: Sequence[float] = DEFAULT_TRAINING_SNRS,
    box: int = 32,
    voxel_size: float = 10.0,
    background_ratio: float = 2.0,
    ribosome_models: Sequence[str | None] = ("auto", None),
    reporter: ProgressReporter | None = None,
) -> SyntheticSet:
    """Simulate ``tomograms`` tomograms and return the labelled crops around their candidates.

    Tomogram i uses seed ``seed * 1000 + i`` and ribosome model ``ribosome_models[i % len]``, so
    with the default both the 6ZU5 atomic model (when fetched) and the parametric ribosome are
    seen. At most ``background_ratio`` background crops per particle crop are kept from each noisy
    copy, drawn at random.
    """
    if tomograms < 1:
        raise ValueError(f"tomograms must be at least 1, got {tomograms}.")
    if not snrs or min(snrs) <= 0:
        raise ValueError(f"snrs must be positive numbers, got {list(snrs)}.")
    counts = dict(DEFAULT_TRAINING_COUNTS if counts is None else counts)
    reporter = reporter or NullReporter()
    rng = np.random.default_rng(seed)
    background = TRAINING_CLASS_NAMES.index(BACKGROUND)
    noisy_parts, clean_parts, label_parts = [], [], []
    steps = tomograms * len(snrs)
    for number in range(tomograms):
        model = ribosome_models[number % len(ribosome_models)]
        clean, particles = simulate_clean_tomogram(
            shape, voxel_size, counts, seed=seed * 1000 + number, ribosome_model=model
        )
        names = particles.class_names.astype(str)
        for snr_number, snr in enumerate(snrs):
            noisy = add_noise(clean, snr, rng)
            candidates = find_candidates(noisy, voxel_size, min_score=CANDIDATE_MIN_SCORE).positions
            labels = label_candidates(candidates, particles.positions, names)
            is_background = labels == background
            limit = int(np.ceil(background_ratio * max(1, int((~is_background).sum()))))
            background_indices = np.flatnonzero(is_background)
            if len(background_indices) > limit:
                background_indices = rng.choice(background_indices, limit, replace=False)
            keep = np.sort(np.concatenate([np.flatnonzero(~is_background), background_indices]))
            noisy_parts.append(extract_subtomograms(noisy, voxel_size, candidates[keep], box))
            clean_parts.append(extract_subtomograms(clean, voxel_size, candidates[keep], box))
            label_parts.append(labels[keep])
            del noisy
            done = number * len(snrs) + snr_number + 1
            reporter.report(
                "generate", done / steps, f"tomogram {number + 1} of {tomograms} at SNR {snr:g}: {len(keep)} crops"
            )
    labels = np.concatenate(label_parts)
    parameters = {
        "generator": TOMOGRAM_GENERATOR_VERSION,
        "seed": seed,
        "tomograms": tomograms,
        "shape": list(shape),
        "counts": counts,
        "snrs": list(snrs),
        "box": box,
        "voxel_size": voxel_size,
        "background_ratio": background_ratio,
        "ribosome_models": [str(model) for model in ribosome_models],
    }
    logger.info("Cut %d training crops from %d simulated tomograms", len(labels), tomograms)
    return SyntheticSet(
        np.concatenate(noisy_parts), np.concatenate(clean_parts), labels, TRAINING_CLASS_NAMES, parameters
    )
