"""Tile groups cut from larger images and split by a measured attribute."""

from __future__ import annotations

import numpy as np
from skimage.draw import disk

from analysis.setdiff.real_tiles import ihc_tile_pair, nuclei_tile_pairs


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
