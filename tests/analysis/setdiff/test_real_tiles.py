"""Tile groups cut from larger images and split by a measured attribute."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from analysis.setdiff.real_tiles import (
    cell_tile_pair,
    haematoxylin_tile_pair,
    ihc_tile_pair,
    nuclei_tile_pairs,
    read_stardist_histology,
    retina_tile_pair,
)


def crowded_left_field(size: int = 256):
    """A field with many small nuclei on the left half and a few large ones on the right."""
    generator = np.random.default_rng(0)
    mask = np.zeros((size, size), np.uint16)
    label = 0
    for y in range(12, size - 12, 20):
        for x in range(12, size // 2 - 12, 20):
            label += 1
            mask[disk((y + generator.integers(-2, 3), x + generator.integers(-2, 3)), 5, shape=mask.shape)] = label
    for y in range(24, size - 24, 56):
        for x in range(size // 2 + 24, size - 24, 56):
            label += 1
            mask[disk((y, x), 12, shape=mask.shape)] = label
    image = np.where(mask > 0, 3000, 200).astype(np.uint16)
    return image, mask


def test_nuclei_tiles_split_by_mask():
    image, mask = crowded_left_field()
    count_pair, size_pair = nuclei_tile_pairs(image, mask, tile=64, fraction=0.3)
    assert min(count_pair.values_a) > max(count_pair.values_b)
    assert len(count_pair.a) == len(count_pair.b) == round(49 * 0.3)
    assert count_pair.a[0].shape == (64, 64, 3)
    assert count_pair.a[0].dtype == np.uint8
    assert min(size_pair.values_a) >= max(size_pair.values_b)
    assert size_pair.accepted == {"object_area": 1, "object_perimeter": 1}


def test_ihc_tiles_split_by_dab():
    pair = ihc_tile_pair(tile=128, fraction=0.3)
    assert min(pair.values_a) > max(pair.values_b)
    # DAB is brown, so the high-DAB tiles are redder than the haematoxylin-blue ones.
    red = [tile[..., 0].mean() - tile[..., 2].mean() for tile in pair.a]
    red_b = [tile[..., 0].mean() - tile[..., 2].mean() for tile in pair.b]
    assert np.mean(red) > np.mean(red_b)


def test_haematoxylin_tiles_from_left_half():
    """An H&E-like image, made by inverse colour deconvolution, with nuclei only on its left half."""
    from skimage import color

    generator = np.random.default_rng(1)
    stains = np.zeros((192, 256, 3))
    stains[..., 1] = 0.15  # eosin everywhere
    for _ in range(60):
        y, x = generator.integers(6, 186), generator.integers(6, 122)
        stains[..., 0][disk((y, x), 5, shape=stains.shape[:2])] = 0.6
    rgb = (np.clip(color.hed2rgb(stains), 0, 1) * 255).astype(np.uint8)
    pair = haematoxylin_tile_pair(rgb, tile=64, fraction=0.25)
    assert min(pair.values_a) > max(pair.values_b)
    assert len(pair.a) == len(pair.b) == round(35 * 0.25)
    # Haematoxylin-rich tiles are bluer and darker.
    assert np.mean([t[..., 2].mean() - t[..., 0].mean() for t in pair.a]) > np.mean(
        [t[..., 2].mean() - t[..., 0].mean() for t in pair.b]
    )
    assert np.mean([t.mean() for t in pair.a]) < np.mean([t.mean() for t in pair.b])


def test_cell_tiles_against_background():
    generator = np.random.default_rng(2)
    gray = generator.normal(90, 6, (256, 320))
    gray[disk((180, 240), 40, shape=gray.shape)] = 200
    pair = cell_tile_pair(np.clip(gray, 0, 255).astype(np.uint8), tile=64, min_cover=0.1)
    assert len(pair.a) == len(pair.b) >= 2
    assert min(pair.values_a) >= 0.1
    assert max(pair.values_b) == 0
    assert np.mean([t.mean() for t in pair.a]) > np.mean([t.mean() for t in pair.b]) + 20


def test_cell_tiles_reject_empty_image():
    gray = np.random.default_rng(3).normal(90, 6, (256, 256)).clip(0, 255).astype(np.uint8)
    with pytest.raises(ValueError, match="no bright cell stands out"):
        cell_tile_pair(gray, tile=64)


def test_retina_tiles_split_by_vessels():
    """A fundus-like disc with dark vessel lines only in its upper half."""
    from skimage.draw import line_aa

    size = 512
    rgb = np.zeros((size, size, 3), np.uint8)
    inside = disk((size // 2, size // 2), size // 2 - 2, shape=(size, size))
    rgb[inside] = (200, 120, 60)
    for offset in range(40, size - 40, 24):
        rows, columns, _ = line_aa(20, offset, size // 2 - 20, offset + 30)
        for dy in (-1, 0, 1):
            rgb[np.clip(rows + dy, 0, size - 1), columns] = (120, 40, 30)
    outside = np.ones((size, size), bool)
    outside[inside] = False
    rgb[outside] = 0
    pair = retina_tile_pair(rgb, tile=64, fraction=0.3, downscale=1)
    assert min(pair.values_a) > max(pair.values_b)
    assert all(tile.shape == (64, 64, 3) for tile in pair.a + pair.b)
    # Every tile lies inside the field of view, so none has black corners.
    assert all(tile[..., 0].min() > 20 for tile in pair.a + pair.b)


def test_stardist_histology_read_from_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "stardist" / "data" / "images"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 128, np.uint8)).save(folder / "histo.jpg")
    assert read_stardist_histology(tmp_path).shape == (20, 30, 3)
    assert read_stardist_histology(tmp_path / "stardist").shape == (20, 30, 3)
