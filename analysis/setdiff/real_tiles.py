"""Tile groups cut from real microscopy images, split by an attribute measured from annotations
or from the image itself.

Sources, read from installed or downloaded PyPI packages, never committed:

- the fluorescence nuclei image and its instance mask from stardist's ``data/images``
  (``img2d.tif``, ``mask2d.tif``: 2018 Data Science Bowl, Caicedo et al., Nature Methods 2019).
  Tiles are split into many against few nuclei, and large against small nuclei, by the mask.
- stardist's H&E image (``histo.jpg``). Tiles are split into much against little
  haematoxylin by colour deconvolution (``skimage.color.rgb2hed``).
- scikit-image's ``ihc`` image (immunohistochemistry, DAB and haematoxylin). Tiles are split
  into much against little DAB by colour deconvolution.
- scikit-image's ``cell`` image (one cell on a grey background). Tiles are split into those
  the cell covers against background tiles by an Otsu threshold of the whole image.
- scikit-image's ``retina`` image (a fundus photograph). Tiles inside the field of view are
  split into many against few vessels by a Sato ridge filter on the green channel.

Only the nuclei split comes from an annotation. The others are measurements, so they are not
ground truth. Tiles overlap by half a tile, so neighbouring tiles share pixels and are not
independent.
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
STARDIST_HISTOLOGY = "stardist/data/images/histo.jpg"


@dataclass
class TilePair:
    name: str
    a: list[np.ndarray]
    b: list[np.ndarray]
    true_description: str
    accepted: dict[str, int]
    values_a: list[float]
    values_b: list[float]


def _read_stardist_member(source: str | Path, member: str) -> bytes:
    """Read a file of the stardist package from its wheel, or from a folder that contains the
    ``stardist`` package (or is the package folder)."""
    source = Path(source)
    if source.is_dir():
        root = source if (source / "stardist").is_dir() else source.parent
        return (root / member).read_bytes()
    with zipfile.ZipFile(source) as wheel:
        return wheel.read(member)


def read_stardist_nuclei(source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read the 2D nuclei image and mask from a stardist wheel or an unpacked package folder."""
    import tifffile

    image = tifffile.imread(io.BytesIO(_read_stardist_member(source, STARDIST_IMAGE)))
    mask = tifffile.imread(io.BytesIO(_read_stardist_member(source, STARDIST_MASK)))
    return image, mask


def read_stardist_histology(source: str | Path) -> np.ndarray:
    """Read the H&E image (RGB, uint8) from a stardist wheel or an unpacked package folder."""
    from PIL import Image

    with Image.open(io.BytesIO(_read_stardist_member(source, STARDIST_HISTOLOGY))) as image:
        return np.asarray(image.convert("RGB"))


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


def _pair_from_amounts(
    name: str,
    tiles: list[np.ndarray],
    amounts: np.ndarray,
    fraction: float,
    true_description: str,
    accepted: dict[str, int],
) -> TilePair:
    high, low = _split_by(amounts, fraction)
    return TilePair(
        name,
        [tiles[i] for i in high],
        [tiles[i] for i in low],
        true_description,
        accepted,
        amounts[high].tolist(),
        amounts[low].tolist(),
    )


def haematoxylin_tile_pair(rgb: np.ndarray, tile: int = 64, fraction: float = 0.3) -> TilePair:
    """Split tiles of an H&E image by their mean haematoxylin concentration."""
    from skimage import color

    haematoxylin = color.rgb2hed(rgb)[..., 0]
    origins = _tile_origins(rgb.shape[:2], tile)
    amounts = np.array([haematoxylin[y : y + tile, x : x + tile].mean() for y, x in origins])
    tiles = [rgb[y : y + tile, x : x + tile] for y, x in origins]
    # Haematoxylin stains nuclei blue-purple against the pink eosin, and absorbs more light.
    accepted = {"blue_fraction": 1, "red_fraction": -1, "mean_intensity": -1}
    return _pair_from_amounts("H&E haematoxylin", tiles, amounts, fraction, "more haematoxylin", accepted)


def cell_tile_pair(gray: np.ndarray, tile: int = 64, min_cover: float = 0.1) -> TilePair:
    """Split tiles of a grey image of a few bright cells into tiles the cells cover and tiles
    of background.

    The cells are the bright side of an Otsu threshold of the smoothed whole image. A tiles are
    those at least ``min_cover`` covered, and B tiles are as many of the least covered ones,
    taken evenly across the image.
    """
    from skimage import filters

    gray, _ = scale_to_uint8(gray)
    smooth = filters.gaussian(gray, sigma=2.0, preserve_range=True)
    cells = smooth > filters.threshold_otsu(smooth)
    # On an image of noise alone, Otsu still splits the pixels in two. A cell must stand out
    # from the background by more than 3 background standard deviations of the raw pixels.
    background = gray[~cells].astype(np.float64)
    if not cells.any() or gray[cells].mean() - background.mean() < 3 * background.std():
        raise ValueError("no bright cell stands out from the background; use an image with cells brighter than it")
    origins = _tile_origins(gray.shape, tile)
    cover = np.array([cells[y : y + tile, x : x + tile].mean() for y, x in origins])
    covered = np.flatnonzero(cover >= min_cover)
    if len(covered) < 2:
        raise ValueError(
            f"only {len(covered)} tiles of {tile} pixels are at least {min_cover:.0%} covered by cells; "
            "use a smaller tile or a lower min_cover"
        )
    empty = np.flatnonzero(cover == 0)
    if len(empty) < len(covered):
        raise ValueError(f"only {len(empty)} background tiles for {len(covered)} cell tiles; use a smaller tile")
    background = empty[np.linspace(0, len(empty) - 1, len(covered)).round().astype(int)]
    rgb = np.repeat(gray[..., None], 3, axis=2)
    tiles = [rgb[y : y + tile, x : x + tile] for y, x in origins]
    return TilePair(
        "cell against background",
        [tiles[i] for i in covered],
        [tiles[i] for i in background],
        "a bright cell in the tile",
        # A bright cell raises the mean and the spread of intensities, and is a larger object
        # than the specks that the segmentation finds in background tiles.
        {"mean_intensity": 1, "contrast": 1, "object_area": 1},
        cover[covered].tolist(),
        cover[background].tolist(),
    )


def retina_tile_pair(rgb: np.ndarray, tile: int = 96, fraction: float = 0.3, downscale: int = 2) -> TilePair:
    """Split tiles inside the field of view of a fundus photograph by their vessel fraction.

    The image is first reduced ``downscale`` times by block means. Vessels are the pixels whose
    Sato ridge response (dark ridges, sigmas 1 to 3 pixels) on the green channel exceeds its
    90th percentile inside the field of view, which is where the red channel is above 20 of 255.
    """
    from skimage import filters, transform

    small = transform.downscale_local_mean(rgb.astype(np.float64), (downscale, downscale, 1))
    small = np.clip(small, 0, 255).astype(np.uint8)
    inside = small[..., 0] > 20
    ridges = filters.sato(small[..., 1] / 255.0, sigmas=(1, 2, 3), black_ridges=True)
    vessels = inside & (ridges > np.percentile(ridges[inside], 90))
    origins = [(y, x) for y, x in _tile_origins(small.shape[:2], tile) if inside[y : y + tile, x : x + tile].all()]
    if len(origins) < 4:
        raise ValueError(f"only {len(origins)} tiles of {tile} pixels lie inside the field of view; use a smaller tile")
    amounts = np.array([vessels[y : y + tile, x : x + tile].mean() for y, x in origins])
    tiles = [small[y : y + tile, x : x + tile] for y, x in origins]
    # Vessels are dark, thin lines: they add edges and intensity spread, and when they are the
    # minority side of the threshold the segmentation covers more of the tile.
    accepted = {"edge_density": 1, "contrast": 1, "foreground_fraction": 1}
    return _pair_from_amounts("retina vessels", tiles, amounts, fraction, "more blood vessels", accepted)
