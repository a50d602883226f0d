"""Local copies of stored files, and 8-bit previews of tomograms for slices and subtomograms.

The slice viewer and the particle panel read a uint8 copy of the tomogram, scaled so that the
0.5th and 99.5th percentiles map to 0 and 255. It is written once per tomogram to
``VAR_DIR/cache/tomograms/`` as a .npy file and memory-mapped for each request, so showing a
slice never reads the whole MRC file again. The cache is derived data and may be deleted.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from analysis.cryoet.io import read_volume

logger = logging.getLogger(__name__)

PREVIEW_LOW_PERCENTILE = 0.5
PREVIEW_HIGH_PERCENTILE = 99.5
# Voxels sampled to estimate the percentiles of large volumes.
PERCENTILE_SAMPLE = 2_000_000
# Extra voxels around a particle's radius in the subtomogram box.
SUBTOMOGRAM_MARGIN = 4


@contextmanager
def local_path(field_file):
    """Yield a local path of a stored file: its own path on disk, or a temporary copy from object storage.

    The copy keeps the stored name's extension, because the particle readers choose the format from it.
    """
    try:
        yield Path(field_file.path)
        return
    except NotImplementedError:
        pass
    suffix = Path(field_file.name).suffix
    handle, name = tempfile.mkstemp(suffix=suffix, dir=settings.UPLOAD_TEMP_DIR)
    try:
        with os.fdopen(handle, "wb") as target, field_file.open("rb") as source:
            shutil.copyfileobj(source, target, 1024 * 1024)
        yield Path(name)
    finally:
        os.unlink(name)


def cache_dir() -> Path:
    directory = Path(settings.VAR_DIR) / "cache" / "tomograms"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def to_uint8(data: np.ndarray) -> np.ndarray:
    """Scale a volume to uint8 between its 0.5th and 99.5th percentiles."""
    flat = data.reshape(-1)
    if flat.size > PERCENTILE_SAMPLE:
        flat = flat[:: flat.size // PERCENTILE_SAMPLE]
    low, high = np.percentile(flat, [PREVIEW_LOW_PERCENTILE, PREVIEW_HIGH_PERCENTILE])
    if not high > low:
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = (data - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def preview(tomogram) -> np.ndarray:
    """Return the tomogram's uint8 (z, y, x) preview, memory-mapped, writing it on first use.

    NOTE: the first view reads the whole MRC file as float32 in the web process, which for a
    multi-gigabyte tomogram takes seconds and that much memory once per web server.
    """
    path = cache_dir() / f"{tomogram.uuid}-{tomogram.volume.sha256[:16]}.npy"
    if not path.exists():
        with local_path(tomogram.volume.file) as volume_path:
            volume = read_volume(volume_path)
        scaled = to_uint8(volume.data)
        # Written under a temporary name and renamed, so a concurrent request never maps a partial file.
        handle, temporary = tempfile.mkstemp(suffix=".npy", dir=path.parent)
        with os.fdopen(handle, "wb") as target:
            np.save(target, scaled)
        os.replace(temporary, path)
        logger.info("Wrote the preview of tomogram %s to %s", tomogram.uuid, path)
    return np.load(path, mmap_mode="r")


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def slice_png(tomogram, z: int) -> bytes:
    """Return section ``z`` of the preview as a PNG, x to the right and y down."""
    return png_bytes(preview(tomogram)[z])


def subtomogram_slices(tomogram, position_angstrom, radius_angstrom: float, voxel_size: float) -> dict:
    """Return the central xy, xz and yz slices of the box around a particle as PNG data URLs.

    The box is centred on the particle's voxel, with half side the particle radius plus a small
    margin, and clipped at the tomogram's edges.
    """
    volume = preview(tomogram)
    centre = np.rint(np.asarray(position_angstrom, dtype=float)[::-1] / voxel_size).astype(int)  # z, y, x
    centre = np.clip(centre, 0, np.array(volume.shape) - 1)
    half = int(np.ceil(radius_angstrom / voxel_size)) + SUBTOMOGRAM_MARGIN
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, volume.shape)
    box = np.asarray(volume[low[0] : high[0], low[1] : high[1], low[2] : high[2]])
    local = centre - low
    planes = {"xy": box[local[0]], "xz": box[:, local[1], :], "yz": box[:, :, local[2]]}
    return {
        "box_start_voxel": {"z": int(low[0]), "y": int(low[1]), "x": int(low[2])},
        "box_shape_voxels": [int(size) for size in box.shape],
        "slices": {
            name: "data:image/png;base64," + base64.b64encode(png_bytes(plane)).decode("ascii")
            for name, plane in planes.items()
        },
    }
