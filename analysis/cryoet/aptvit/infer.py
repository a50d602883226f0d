"""Run a trained APT-ViT on subtomograms cut from a tomogram around picks."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from analysis.cryoet.aptvit.model import APTViT, rotation_averaged
from analysis.cryoet.io.coordinates import angstrom_to_indices


def _standardise(volume: np.ndarray) -> np.ndarray:
    std = float(volume.std())
    return (volume - volume.mean()) / (std if std > 0 else 1.0)


def extract_subtomograms(
    volume: np.ndarray, voxel_size: float, positions: np.ndarray, box: int, box_voxel_size: float | None = None
) -> np.ndarray:
    """Cut a (box, box, box) float32 subtomogram centred on each position and standardise it.

    ``volume`` is indexed (z, y, x) with ``voxel_size`` Å per voxel, and ``positions`` are (n, 3)
    x, y, z in Å with voxel index 0 at 0 Å. ``box_voxel_size`` is the sampling of the subtomogram
    (the model's voxel size). When it differs from ``voxel_size`` the crop is resampled by
    trilinear interpolation. Voxels outside the tomogram take the mean of the crop's voxels that
    lie inside it, and each crop is then scaled to mean 0 and standard deviation 1, as in training.
    """
    if volume.ndim != 3:
        raise ValueError(f"The tomogram must be a 3D (z, y, x) array, got shape {volume.shape}.")
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be a positive number of angstroms, got {voxel_size!r}.")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"Picks must be an (n, 3) array of x, y, z in angstroms, got shape {positions.shape}.")
    if not np.all(np.isfinite(positions)):
        raise ValueError("Picks contain NaN or infinite coordinates; remove them before classifying.")
    box_voxel_size = voxel_size if box_voxel_size is None else box_voxel_size
    step = box_voxel_size / voxel_size
    same_sampling = abs(step - 1.0) < 1e-6
    shape = np.array(volume.shape)

    centres = angstrom_to_indices(positions, voxel_size)
    outside = np.any((centres < -0.5) | (centres > shape - 0.5), axis=1)
    if np.any(outside):
        first = int(np.argmax(outside))
        extent = ", ".join(f"{size * voxel_size:g}" for size in shape[::-1])
        raise ValueError(
            f"{int(outside.sum())} pick(s) lie outside the tomogram, the first at x, y, z = "
            f"{positions[first].tolist()} Å, while the tomogram spans 0 to ({extent}) Å. "
            "Check that the picks are in angstroms and that the voxel size is right."
        )
    # Offsets of the crop's voxels from its centre, in tomogram voxels. The pick lands on index
    # box // 2 of the crop, while training particles lie within about a voxel of the box centre.
    offsets = (np.arange(box) - box // 2) * step
    crops = np.empty((len(positions), box, box, box), dtype=np.float32)
    for index, centre in enumerate(centres):
        if same_sampling:
            centre = np.round(centre)
        coordinates = centre[:, None] + offsets[None, :]
        low = np.floor(coordinates.min(axis=1)).astype(int)
        high = np.ceil(coordinates.max(axis=1)).astype(int) + 1
        clipped_low = np.clip(low, 0, shape)
        clipped_high = np.clip(high, 0, shape)
        block = np.asarray(
            volume[
                clipped_low[0] : clipped_high[0],
                clipped_low[1] : clipped_high[1],
                clipped_low[2] : clipped_high[2],
            ],
            dtype=np.float32,
        )
        fill = float(block.mean())
        local = [coordinates[axis] - clipped_low[axis] for axis in range(3)]
        grid = np.meshgrid(*local, indexing="ij")
        crop = ndimage.map_coordinates(block, grid, order=1, mode="constant", cval=fill)
        crops[index] = _standardise(crop)
    return crops


@torch.no_grad()
def predict_subtomograms(
    model: APTViT, subtomograms: np.ndarray, batch_size: int = 32, rotation_average: bool = True, progress=None
) -> tuple[np.ndarray, np.ndarray]:
    """Return class probabilities (n, classes) and embeddings (n, dim) as float32 arrays.

    With ``rotation_average`` the logits and embeddings are averaged over the 24 cube rotations,
    which costs 24 forward passes per subtomogram. ``progress(done, total)`` is called per batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    model.eval()
    parameter = next(model.parameters())
    probabilities = []
    embeddings = []
    total = len(subtomograms)
    for start in range(0, total, batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(subtomograms[start : start + batch_size]))
        batch = batch.to(device=parameter.device, dtype=parameter.dtype)
        if rotation_average:
            logits, embedding = rotation_averaged(model, batch)
        else:
            logits, embedding = model.forward_with_embedding(batch)
        probabilities.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        embeddings.append(embedding.float().cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, total), total)
    if not probabilities:
        classes = model.config.num_classes
        return np.zeros((0, classes), dtype=np.float32), np.zeros((0, model.config.dim), dtype=np.float32)
    return np.concatenate(probabilities), np.concatenate(embeddings)
