"""The cryo-ET pipeline: read a tomogram, pick particles, classify them with APT-ViT, build a map.

``run_pipeline`` is what the web worker and ``python -m analysis cryoet run`` call. It reports
progress in four stages (read, pick, classify, map) and returns plain data: the kept picks with
classes, probabilities and embeddings, a ``SpatialMap``, seconds per stage, and a line naming the
path that produced the result.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES, DEFAULT_VOXEL_SIZE
from analysis.cryoet.io import ParticleList, Volume, read_volume
from analysis.cryoet.metrics import PickScore, score_picks
from analysis.cryoet.pick import find_candidates, pick, suppress_non_maxima
from analysis.cryoet.simulate import parametric_template, render_particle
from analysis.cryoet.spatial import SpatialMap
from analysis.progress import NullReporter, ProgressReporter, Subtask

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "aptvit" / "checkpoints" / "aptvit-small.pt"
BACKGROUND = "background"
PICKERS = ("dog", "template")
# Range of the overall progress fraction that each stage reports into.
# Defaults tuned by bench/cryoet.py on a simulated tomogram other than the one it scores.
DEFAULT_SCORE_THRESHOLD = 10.0
DEFAULT_MIN_PROBABILITY = 0.2
STAGE_SPANS = {"read": (0.0, 0.05), "pick": (0.05, 0.45), "classify": (0.45, 0.95), "map": (0.95, 1.0)}


@dataclass
class PipelineResult:
    """Kept picks with their classes, probabilities and embeddings, the spatial map and run facts.

    ``picks`` contains the picks that APT-ViT gave a particle class, with that class's
    probability as score. ``probabilities`` (n, len(probability_classes)) and ``embeddings``
    (n, d) follow the order of ``picks``. ``rejected_count`` counts the picks called background.
    """

    picks: ParticleList
    probabilities: np.ndarray
    probability_classes: list[str]
    embeddings: np.ndarray
    spatial_map: SpatialMap
    voxel_size: float
    shape: tuple[int, int, int]
    picked_count: int
    rejected_count: int
    # Picks dropped because a more probable pick of the same class lies within the class radius.
    merged_count: int = 0
    # Seconds spent in each stage, in run order.
    timings: dict[str, float] = field(default_factory=dict)
    # Which picker and model produced the result, e.g. "DoG + APT-ViT (aptvit-small, sha256 1a2b…)".
    produced_by: str = ""
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Return JSON-ready run facts: counts per class, timings and the producing path."""
        names, counts = np.unique(self.picks.class_names.astype(str), return_counts=True)
        return {
            "produced_by": self.produced_by,
            "shape_zyx": list(self.shape),
            "voxel_size_angstrom": self.voxel_size,
            "picked": self.picked_count,
            "rejected_as_background": self.rejected_count,
            "merged_duplicates": self.merged_count,
            "kept": len(self.picks),
            "counts": {str(name): int(count) for name, count in zip(names, counts, strict=True)},
            "timings_seconds": {stage: round(seconds, 3) for stage, seconds in self.timings.items()},
            "warnings": list(self.warnings),
        }


def _load_volume(volume_or_path, voxel_size: float | None) -> tuple[np.ndarray, float, list[str]]:
    """Return the (z, y, x) data, the voxel size in Å and any header warnings."""
    warnings: list[str] = []
    if isinstance(volume_or_path, str | os.PathLike):
        volume_or_path = read_volume(volume_or_path)
    if isinstance(volume_or_path, Volume):
        warnings.extend(volume_or_path.warnings)
        header_size = volume_or_path.voxel_size
        if voxel_size is None and header_size is not None:
            if len(set(header_size)) != 1:
                warnings.append(f"Voxel size differs by axis {header_size}; using x ({header_size[0]} Å).")
            voxel_size = float(header_size[0])
        data = volume_or_path.data
    else:
        data = np.asarray(volume_or_path)
    if voxel_size is None:
        voxel_size = DEFAULT_VOXEL_SIZE
        warnings.append(f"The volume gives no voxel size; assuming {DEFAULT_VOXEL_SIZE} Å, so pass voxel_size.")
    if data.ndim != 3:
        raise ValueError(f"Expected a 3D volume indexed (z, y, x), got shape {data.shape}.")
    return data, float(voxel_size), warnings


# Same-class candidates within this fraction of the class radius of a kept pick set its position.
MERGE_FRACTION = 0.75


def assign_classes(classification, positions: np.ndarray, min_probability: float):
    """Label each candidate with its most probable particle class and choose which to keep.

    Candidates whose best particle class has a probability under ``min_probability`` are
    background. Of the rest, greedy non-maximum suppression keeps the most probable candidate of
    each class within the class radius. A kept pick moves to the probability-weighted mean of the
    candidates of its class within ``MERGE_FRACTION`` of the radius, because the picker
    proposes several candidates around a large particle and their mean lies closer to its centre
    than the best of them. Returns the labels, their probabilities, a boolean keep mask, the
    positions (moved for kept picks) and the number of candidates merged into a kept pick.
    """
    names = list(classification.class_names)
    unknown = sorted(set(names) - set(CLASS_NAMES) - {BACKGROUND})
    if unknown:
        raise ValueError(f"The checkpoint predicts classes outside the six particle classes: {unknown}.")
    particle_columns = [names.index(name) for name in CLASS_NAMES if name in names]
    particle_names = np.array([names[column] for column in particle_columns], dtype=object)
    probabilities = classification.probabilities[:, particle_columns]
    best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    labels = particle_names[best] if len(best) else np.array([], dtype=object)
    confidences = probabilities[np.arange(len(best)), best].astype(np.float64)
    keep = confidences >= min_probability
    refined = np.array(positions, dtype=np.float64, copy=True).reshape(-1, 3)
    merged = 0
    for name in particle_names:
        members = np.flatnonzero(keep & (labels == name))
        if len(members) == 0:
            continue
        radius = CLASS_BY_NAME[name].radius_angstrom
        member_positions = refined[members].copy()
        member_confidences = confidences[members]
        survivors = suppress_non_maxima(member_positions, member_confidences, radius)
        tree = cKDTree(member_positions)
        for survivor in survivors:
            near = tree.query_ball_point(member_positions[survivor], MERGE_FRACTION * radius)
            weights = member_confidences[near]
            refined[members[survivor]] = weights @ member_positions[near] / weights.sum()
        dropped = np.setdiff1d(members, members[survivors])
        keep[dropped] = False
        merged += len(dropped)
    return labels, confidences, keep, refined, merged


def _describe_path(picker: str, model) -> str:
    picker_name = {"dog": "DoG", "template": "template matching"}[picker]
    name = Path(str(model.info.source).removeprefix("local:")).stem
    digest = model.info.weights_sha256 or ""
    return f"{picker_name} + APT-ViT ({name}, sha256 {digest[:12]}…)"


def run_pipeline(
    volume: str | os.PathLike | Volume | np.ndarray,
    picker: str = "dog",
    checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    reporter: ProgressReporter | None = None,
    voxel_size: float | None = None,
    rotation_average: bool = True,
    batch_size: int = 32,
    min_probability: float = DEFAULT_MIN_PROBABILITY,
    **pick_options,
) -> PipelineResult:
    """Pick and classify the particles of one tomogram and build its spatial map.

    ``volume`` is an MRC path, a ``Volume`` or a (z, y, x) array. ``voxel_size`` (Å) overrides
    the header and is needed for a bare array, else 10 Å is assumed with a warning.
    ``score_threshold`` is the picker's ``min_score``: for ``picker="dog"`` the DoG response of
    the local energy over its noise level (``pick.find_candidates``), and for
    ``picker="template"`` the normalised cross-correlation, which then needs a ``template`` in
    ``pick_options``. Each candidate takes its most probable particle class, and is kept when
    that probability is at least ``min_probability``; the rest are counted as background. Kept
    picks of one class closer than the class radius are merged into the most probable, placed at
    the probability-weighted mean of its neighbours (``assign_classes``).
    ``rotation_average`` averages APT-ViT over the 24 cube rotations, which costs 24 forward
    passes per candidate and raised the weighted F-beta in ``bench/cryoet.py``.
    """
    # PyTorch is imported here, so the command line's other commands start without it.
    from analysis.backends.checkpoint import load_checkpoint
    from analysis.cryoet.classify import classify

    if picker not in PICKERS:
        raise ValueError(f"Unknown picker {picker!r}; expected one of {', '.join(PICKERS)}.")
    reporter = reporter or NullReporter()
    timings: dict[str, float] = {}

    started = time.perf_counter()
    stage = Subtask(reporter, "read", *STAGE_SPANS["read"])
    source = f"reading {Path(volume).name}" if isinstance(volume, str | os.PathLike) else "reading volume"
    stage.report("read", 0.0, source)
    data, voxel_size, warnings = _load_volume(volume, voxel_size)
    model = load_checkpoint(checkpoint)
    stage.report("read", 1.0, f"volume {data.shape} at {voxel_size} Å per voxel")
    timings["read"] = time.perf_counter() - started

    if not 0.0 <= min_probability <= 1.0:
        raise ValueError(f"min_probability must lie between 0 and 1, got {min_probability}.")
    started = time.perf_counter()
    pick_reporter = Subtask(reporter, "pick", *STAGE_SPANS["pick"])
    if picker == "dog":
        picks = find_candidates(data, voxel_size, min_score=score_threshold, reporter=pick_reporter, **pick_options)
    else:
        picks = pick(data, voxel_size, method=picker, reporter=pick_reporter, min_score=score_threshold, **pick_options)
    timings["pick"] = time.perf_counter() - started
    reporter.log(f"Picked {len(picks)} candidates in {timings['pick']:.1f} s.")

    started = time.perf_counter()
    classification = classify(
        data,
        voxel_size,
        picks.positions,
        model,
        Subtask(reporter, "classify", *STAGE_SPANS["classify"]),
        batch_size=batch_size,
        rotation_average=rotation_average,
    )
    timings["classify"] = time.perf_counter() - started

    started = time.perf_counter()
    stage = Subtask(reporter, "map", *STAGE_SPANS["map"])
    labels, confidences, keep, positions, merged = assign_classes(classification, picks.positions, min_probability)
    rejected = int(len(picks) - keep.sum() - merged)
    kept = ParticleList(
        positions[keep],
        labels[keep],
        confidences[keep],
        np.arange(int(keep.sum())),
        tomogram=Path(volume).stem if isinstance(volume, str | os.PathLike) else None,
    )
    extent = np.array(data.shape[::-1], dtype=float) * voxel_size
    spatial_map = SpatialMap.from_particles(
        list(kept.class_names),
        kept.positions,
        np.stack([np.zeros(3), extent]),
        scores=confidences[keep],
        embeddings=classification.embeddings[keep],
    )
    stage.report("map", 1.0, f"kept {len(kept)} of {len(picks)} picks")
    timings["map"] = time.perf_counter() - started

    produced_by = _describe_path(picker, model)
    logger.info("Pipeline on %s kept %d of %d picks (%s)", data.shape, len(kept), len(picks), produced_by)
    return PipelineResult(
        picks=kept,
        probabilities=classification.probabilities[keep],
        probability_classes=list(classification.class_names),
        embeddings=classification.embeddings[keep],
        spatial_map=spatial_map,
        voxel_size=voxel_size,
        shape=tuple(int(size) for size in data.shape),
        picked_count=len(picks),
        rejected_count=rejected,
        merged_count=merged,
        timings=timings,
        produced_by=produced_by,
        warnings=warnings,
    )


def positions_by_class(particles: ParticleList) -> dict[str, np.ndarray]:
    """Return the positions of each class among the six benchmark classes, the input of ``score_picks``."""
    names = particles.class_names.astype(str)
    return {name: particles.positions[names == name] for name in CLASS_NAMES}


def evaluate(picks: ParticleList | PipelineResult, reference: ParticleList) -> PickScore:
    """Score picks against reference particles by the CZII benchmark rule (per-class and weighted F-beta).

    Reference particles of classes outside the six benchmark classes raise ``ValueError``.
    """
    if isinstance(picks, PipelineResult):
        picks = picks.picks
    unknown = sorted(set(reference.class_names.astype(str)) - set(CLASS_NAMES))
    if unknown:
        raise ValueError(f"Reference particles have unknown classes {unknown}; expected {', '.join(CLASS_NAMES)}.")
    return score_picks(positions_by_class(picks), positions_by_class(reference))


def simulator_template(class_name: str, voxel_size: float) -> np.ndarray:
    """Render the simulator's density of ``class_name`` unrotated into a (z, y, x) box at ``voxel_size`` Å.

    The box side is the class diameter plus two voxels, rounded up to an odd number of voxels. The
    ribosome uses the parametric two-lobed density, as ``simulate_tomogram`` does without a fetched
    atomic model. The density is not band-passed, so it matches the simulator's particles before
    its CTF and missing wedge.
    """
    if class_name not in CLASS_BY_NAME:
        raise ValueError(f"Unknown particle class {class_name!r}; expected one of {', '.join(CLASS_NAMES)}.")
    side = int(np.ceil(2 * CLASS_BY_NAME[class_name].radius_angstrom / voxel_size)) + 2
    side += 1 - side % 2
    box = np.zeros((side, side, side), dtype=np.float64)
    centre = np.full(3, (side - 1) / 2 * voxel_size)
    render_particle(box, parametric_template(class_name), centre, Rotation.identity(), voxel_size)
    return box.astype(np.float32)
