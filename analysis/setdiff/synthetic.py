"""Synthetic fluorescence microscopy groups that differ in one known way.

Each image shows cells (a faint cytoplasm) with a bright nucleus on a dark, noisy background.
Group B uses the base parameters; group A changes one attribute (count, size, shape,
brightness, texture or clustering) by an easy, medium or hard amount. Every image also
varies at random around its group's parameters, so the hard setting overlaps between groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

ATTRIBUTES = ("count", "size", "shape", "brightness", "texture", "clustering")
DIFFICULTIES = ("easy", "medium", "hard")

# Group A's value of the changed parameter at each difficulty; group B keeps the base value.
STRENGTHS = {
    "count": {"base": 12, "easy": 22, "medium": 17, "hard": 15},
    "size": {"base": 5.0, "easy": 7.5, "medium": 6.25, "hard": 5.6},
    "shape": {"base": 1.1, "easy": 2.2, "medium": 1.6, "hard": 1.35},
    "brightness": {"base": 0.55, "easy": 0.8, "medium": 0.68, "hard": 0.62},
    "texture": {"base": 0.02, "easy": 0.2, "medium": 0.14, "hard": 0.1},
    # Standard deviation in pixels of nuclei around 2 cluster centres; base spreads them evenly.
    "clustering": {"base": None, "easy": 8.0, "medium": 14.0, "hard": 20.0},
}

# Measured features that state each true difference, with the sign of (A - B).
ACCEPTED_FEATURES = {
    "count": {"object_count": 1},
    "size": {"object_area": 1, "object_perimeter": 1, "foreground_fraction": 1},
    "shape": {"eccentricity": 1, "circularity": -1},
    "brightness": {"object_intensity": 1, "mean_intensity": 1},
    "texture": {
        "object_texture": 1,
        "glcm_contrast": 1,
        "glcm_homogeneity": -1,
        "glcm_correlation": -1,
        "lbp_entropy": 1,
    },
    "clustering": {"clark_evans_ratio": -1, "nearest_neighbour_distance": -1},
}
TRUE_DESCRIPTIONS = {
    "count": "more cells per image",
    "size": "larger nuclei",
    "shape": "more elongated nuclei",
    "brightness": "brighter nuclei",
    "texture": "more textured nuclei",
    "clustering": "more clustered cells",
}


@dataclass
class Parameters:
    count: int = 12
    radius: float = 5.0
    axis_ratio: float = 1.1
    brightness: float = 0.55
    texture: float = 0.02
    cluster_spread: float | None = None


@dataclass
class SyntheticPair:
    attribute: str
    difficulty: str
    a: list[np.ndarray]
    b: list[np.ndarray]
    true_description: str
    accepted: dict[str, int] = field(default_factory=dict)


def _centres(generator: np.random.Generator, params: Parameters, size: int, margin: float) -> np.ndarray:
    if params.cluster_spread is not None:
        hubs = generator.uniform(size * 0.3, size * 0.7, (2, 2))
        chosen = hubs[generator.integers(0, 2, params.count)]
        return np.clip(chosen + generator.normal(0, params.cluster_spread, (params.count, 2)), margin, size - margin)
    # Rejection sampling keeps nuclei apart, so that every object segments on its own.
    spacing = params.radius * max(params.axis_ratio, 1.0) * 2.4
    points: list[np.ndarray] = []
    for _ in range(params.count * 200):
        point = generator.uniform(margin, size - margin, 2)
        if all(np.hypot(*(point - other)) >= spacing for other in points):
            points.append(point)
            if len(points) == params.count:
                break
    return np.array(points).reshape(-1, 2)


def render_image(params: Parameters, size: int = 128, seed: int = 0) -> np.ndarray:
    """Draw one uint8 RGB image (nuclei in the blue and green channels, as a DAPI-like stain)."""
    generator = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float32)
    nuclei = np.zeros((size, size), np.float32)
    cytoplasm = np.zeros((size, size), np.float32)
    for centre in _centres(generator, params, size, margin=params.radius * 2):
        radius = params.radius * generator.uniform(0.9, 1.1)
        # Keep the area of the ellipse when elongating it: semi-axes r*sqrt(k) and r/sqrt(k).
        major, minor = radius * np.sqrt(params.axis_ratio), radius / np.sqrt(params.axis_ratio)
        angle = generator.uniform(0, np.pi)
        dy, dx = rows - centre[0], columns - centre[1]
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        inside = (u / major) ** 2 + (v / minor) ** 2 <= 1.0
        level = params.brightness * generator.uniform(0.92, 1.08)
        nuclei = np.maximum(nuclei, inside * level)
        cytoplasm = np.maximum(cytoplasm, ((u / (major * 2)) ** 2 + (v / (minor * 2)) ** 2 <= 1.0) * 0.12)
    speckle = ndimage.gaussian_filter(generator.normal(0, 1, (size, size)), 0.8)
    speckle /= speckle.std() + 1e-9
    nuclei = np.where(nuclei > 0, np.clip(nuclei * (1.0 + params.texture * 2.5 * speckle), 0.25, 1.0), 0.0)
    image = np.maximum(nuclei, cytoplasm) + 0.05
    image = ndimage.gaussian_filter(image, 0.7) + generator.normal(0, 0.015, image.shape)
    image = np.clip(image, 0, 1)
    rgb = np.stack([image * 0.35, image * 0.8, image], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def _jittered(base: Parameters, generator: np.random.Generator) -> Parameters:
    """Vary one image's parameters around its group's values."""
    return Parameters(
        count=max(2, int(round(base.count * generator.uniform(0.85, 1.15)))),
        radius=base.radius * generator.uniform(0.93, 1.07),
        axis_ratio=max(1.0, base.axis_ratio * generator.uniform(0.93, 1.07)),
        brightness=base.brightness * generator.uniform(0.94, 1.06),
        texture=base.texture * generator.uniform(0.8, 1.2),
        cluster_spread=None if base.cluster_spread is None else base.cluster_spread * generator.uniform(0.85, 1.15),
    )


def group_parameters(attribute: str, level: str) -> Parameters:
    """Parameters with ``attribute`` set to its value at ``level`` (``base`` for group B)."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; choose from {', '.join(ATTRIBUTES)}")
    params = Parameters()
    value = STRENGTHS[attribute][level]
    name = {
        "count": "count",
        "size": "radius",
        "shape": "axis_ratio",
        "brightness": "brightness",
        "texture": "texture",
        "clustering": "cluster_spread",
    }[attribute]
    setattr(params, name, value)
    return params


def make_pair(
    attribute: str, difficulty: str, images_per_group: int = 20, size: int = 128, seed: int = 0
) -> SyntheticPair:
    """Render groups A (changed) and B (base) for one attribute and difficulty."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r}; choose from {', '.join(DIFFICULTIES)}")
    generator = np.random.default_rng([seed, ATTRIBUTES.index(attribute), DIFFICULTIES.index(difficulty)])
    groups = []
    for level in (difficulty, "base"):
        params = group_parameters(attribute, level)
        groups.append(
            [
                render_image(_jittered(params, generator), size, int(generator.integers(2**31)))
                for _ in range(images_per_group)
            ]
        )
    return SyntheticPair(
        attribute, difficulty, groups[0], groups[1], TRUE_DESCRIPTIONS[attribute], ACCEPTED_FEATURES[attribute]
    )
