"""APT-ViT subtomogram classifier: model, synthetic training data, training and inference.

Importing this package registers the "aptvit" architecture with
``analysis.backends.checkpoint``, so ``local:`` checkpoints of the aptvit role load through
``ModelRegistry``.
"""

from analysis.backends.checkpoint import register_architecture
from analysis.cryoet.aptvit.model import (
    CUBE_ROTATIONS,
    APTViT,
    APTViTConfig,
    apply_rotation,
    build_aptvit,
    rotation_averaged,
)

ARCHITECTURE = "aptvit"
register_architecture(ARCHITECTURE, build_aptvit)

__all__ = [
    "APTViT",
    "APTViTConfig",
    "ARCHITECTURE",
    "CUBE_ROTATIONS",
    "apply_rotation",
    "build_aptvit",
    "rotation_averaged",
]
