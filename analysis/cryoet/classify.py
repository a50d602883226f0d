"""Classify picked particles in a tomogram with a trained APT-ViT checkpoint."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from analysis.backends.checkpoint import load_checkpoint
from analysis.backends.registry import ModelRegistry
from analysis.backends.roles import CheckpointModel
from analysis.cryoet.aptvit.infer import extract_subtomograms, predict_subtomograms
from analysis.cryoet.aptvit.model import APTViT
from analysis.progress import NullReporter, ProgressReporter

logger = logging.getLogger(__name__)

STAGE = "classify"


@dataclass
class Classification:
    """Per-pick results, in the order of the picks.

    ``probabilities`` is (n, len(class_names)) float32 and ``embeddings`` is (n, dim) float32. A
    pick whose best class is "background" is most likely a false pick.
    """

    positions: np.ndarray
    class_names: list[str]
    class_indices: np.ndarray
    probabilities: np.ndarray
    embeddings: np.ndarray
    rotation_average: bool
    model_source: str

    @property
    def labels(self) -> list[str]:
        return [self.class_names[index] for index in self.class_indices]

    @property
    def confidences(self) -> np.ndarray:
        return self.probabilities[np.arange(len(self.class_indices)), self.class_indices]

    def to_dict(self) -> dict:
        """Return JSON-ready data: one record per particle plus the class names and model source."""
        particles = [
            {
                "x": float(position[0]),
                "y": float(position[1]),
                "z": float(position[2]),
                "class_name": self.class_names[index],
                "confidence": float(probabilities[index]),
                "probabilities": {
                    name: float(value) for name, value in zip(self.class_names, probabilities, strict=True)
                },
            }
            for position, index, probabilities in zip(
                self.positions, self.class_indices, self.probabilities, strict=True
            )
        ]
        return {
            "class_names": list(self.class_names),
            "rotation_average": self.rotation_average,
            "model_source": self.model_source,
            "particles": particles,
        }


def _resolve_model(checkpoint_or_registry) -> CheckpointModel:
    if isinstance(checkpoint_or_registry, CheckpointModel):
        return checkpoint_or_registry
    if isinstance(checkpoint_or_registry, ModelRegistry):
        return checkpoint_or_registry.get("aptvit")
    if isinstance(checkpoint_or_registry, str | os.PathLike):
        return load_checkpoint(checkpoint_or_registry)
    raise TypeError(
        "checkpoint_or_registry must be a checkpoint path, a ModelRegistry or a loaded APT-ViT model, "
        f"got {type(checkpoint_or_registry).__name__}."
    )


def _pick_positions(picks) -> np.ndarray:
    """Accept an (n, 3) array of x, y, z in Å or an object with such a ``positions`` array."""
    positions = np.asarray(getattr(picks, "positions", picks), dtype=np.float64)
    if positions.size == 0:
        return positions.reshape(0, 3)
    return positions


def classify(
    volume: np.ndarray,
    voxel_size: float,
    picks,
    checkpoint_or_registry,
    reporter: ProgressReporter | None = None,
    batch_size: int = 32,
    rotation_average: bool = True,
) -> Classification:
    """Classify each pick as one of the checkpoint's classes, "background" included.

    ``volume`` is a (z, y, x) tomogram at ``voxel_size`` Å per voxel. ``picks`` is an (n, 3) array
    of x, y, z in Å or a ``ParticleList``. ``checkpoint_or_registry`` is a checkpoint path, a
    ``ModelRegistry`` whose "aptvit" role is configured, or an already loaded model. Subtomograms
    are resampled to the model's voxel size when the tomogram's differs. Rotation averaging over
    the 24 cube rotations makes inference 24 times slower, so set ``rotation_average=False`` for a
    quick pass.
    """
    reporter = reporter or NullReporter()
    positions = _pick_positions(picks)
    loaded = _resolve_model(checkpoint_or_registry)
    module = loaded.module
    if not isinstance(module, APTViT):
        raise TypeError(f"The aptvit model from {loaded.info.source} is a {type(module).__name__}, not an APT-ViT.")
    config = module.config
    if len(loaded.class_names) != config.num_classes:
        raise ValueError(
            f"The checkpoint {loaded.info.source} names {len(loaded.class_names)} classes but its model "
            f"has {config.num_classes} outputs; the checkpoint is inconsistent, so retrain or re-save it."
        )

    reporter.report(STAGE, 0.0, f"cutting {len(positions)} subtomograms of {config.box_size}³ voxels")
    subtomograms = extract_subtomograms(volume, voxel_size, positions, config.box_size, config.voxel_size)

    def progress(done: int, total: int) -> None:
        reporter.report(STAGE, done / total, f"classified {done} of {total} particles")

    probabilities, embeddings = predict_subtomograms(
        module, subtomograms, batch_size=batch_size, rotation_average=rotation_average, progress=progress
    )
    class_indices = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    reporter.report(STAGE, 1.0, f"classified {len(positions)} particles")
    logger.info("Classified %d picks with %s", len(positions), loaded.info.source)
    return Classification(
        positions=positions,
        class_names=list(loaded.class_names),
        class_indices=class_indices.astype(np.int64),
        probabilities=probabilities,
        embeddings=embeddings,
        rotation_average=rotation_average,
        model_source=loaded.info.source,
    )
