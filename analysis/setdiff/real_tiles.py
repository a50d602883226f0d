"""Tile groups cut from real microscopy images, split by an attribute measured from annotations.

Sources, read from installed or downloaded PyPI packages, never committed:

- the fluorescence nuclei image and its instance mask from stardist's ``data/images``
  (``img2d.tif``, ``mask2d.tif``: 2018 Data Science Bowl, Caicedo et al., Nature Methods 2019).
  Tiles are split into many against few nuclei, and large against small nuclei, by the mask.
- scikit-image's ``ihc`` image (immunohistochemistry, DAB and haematoxylin). Tiles are split
  into much against little DAB by colour deconvolution (``skimage.color.rgb2hed``); there is no
  annotation, so this grouping is a measurement, not ground truth.

Tiles overlap by half a tile, so neighbouring tiles share pixels and are not independent.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.setdiff.ingest import scale_to_uint8

STARDIST_IMAGE = "stardist/data/images/img2d.tif"
STARDIST_MASK = "stardist/data/images/mask2d.tif"


@dataclass
class TilePair:
    name: str
    a: list[np.ndarray]
    b: list[np.ndarray]
    true_description: str
    accepted: dict[str, int]
    values_a: list[float]
    values_b: list[float]


def read_stardist_nuclei(source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the 2D nuclei image and mask from a stardist wheel or an unpacked package folder."""
    import tifffile

    source = Path(source)
    if source.is_dir():
        base = source / "stardist" if (source / "stardist").is_dir() else source.parent
        return tifffile.imread(base.parent / STARDIST_IMAGE), tifffile.imread(base.parent / STARDIST_MASK)
    with zipfile.ZipFile(source) as wheel:
        image = tifffile.imread(io.BytesIO(wheel.read(STARDIST_IMAGE)))
        mask = tifffile.imread(io.BytesIO(wheel.read(STARDIST_MASK)))
    return image, mask


def _tile_origins(shape: tuple[int, int], tile: int) -> list[tuple[int, int]]:
    step = tile // 2
    return [(y, x) for y in range(0, shape[0] - tile + 1, step) for x in range(0, shape[1] - tile + 1, step)]


def _split_by(values: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the highest and the lowest ``fraction`` of values."""
    order = np.argsort(values, kind="stable")
    count = max(2, int(round(len(values) * fraction)))
    return order[-count:], order[:count]


def nuclei_tile_pairs(image: np.ndarray, mask: np.ndarray, tile: int = 96, fraction: float = 0.3) -> list[TilePair]:
    """Split tiles by the number of nuclei centred in them and by their median nucleus area."""
    from skimage import measure

    gray, _ = scale_to_uint8(image)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    regions = measure.regionprops(mask.astype(np.int32))
    centroids = np.array([region.centroid for region in regions])
    areas = np.array([region.area for region in regions], np.float64)
    tiles, counts, median_areas = [], [], []
    for y, x in _tile_origins(mask.shape, tile):
        inside = (
            (centroids[:, 0] >= y)
            & (centroids[:, 0] < y + tile)
            & (centroids[:, 1] >= x)
            & (centroids[:, 1] < x + tile)
        )
        tiles.append(rgb[y : y + tile, x : x + tile])
        counts.append(int(inside.sum()))
        median_areas.append(float(np.median(areas[inside])) if inside.any() else np.nan)
    counts_array = np.array(counts, np.float64)
    pairs = []
    many, few = _split_by(counts_array, fraction)
    pairs.append(
        TilePair(
            "nuclei count",
            [tiles[i] for i in many],
            [tiles[i] for i in few],
            "more nuclei per tile",
            {"object_count": 1},
            counts_array[many].tolist(),
            counts_array[few].tolist(),
        )
    )
    with_nuclei = np.flatnonzero(counts_array >= 2)
    large, small = _split_by(np.array(median_areas)[with_nuclei], fraction)
    large, small = with_nuclei[large], with_nuclei[small]
    pairs.append(
        TilePair(
            "nucleus size",
            [tiles[i] for i in large],
            [tiles[i] for i in small],
            "larger nuclei",
            {"object_area": 1, "object_perimeter": 1},
            [median_areas[i] for i in large],
            [median_areas[i] for i in small],
        )
    )
    return pairs


def ihc_tile_pair(tile: int = 64, fraction: float = 0.3) -> TilePair:
    """Split tiles of scikit-image's IHC image by their mean DAB concentration."""
    from skimage import color, data

    rgb = data.immunohistochemistry()
    dab = color.rgb2hed(rgb)[..., 2]
    origins = _tile_origins(rgb.shape[:2], tile)
    amounts = np.array([dab[y : y + tile, x : x + tile].mean() for y, x in origins])
    high, low = _split_by(amounts, fraction)
    tiles = [rgb[y : y + tile, x : x + tile] for y, x in origins]
    return TilePair(
        "IHC DAB stain",
        [tiles[i] for i in high],
        [tiles[i] for i in low],
        "more brown DAB stain",
        # DAB is brown: more red, less blue, more saturated than the haematoxylin counterstain.
        {"red_fraction": 1, "blue_fraction": -1, "saturation": 1},
        amounts[high].tolist(),
        amounts[low].tolist(),
    )
