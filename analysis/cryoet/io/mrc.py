"""Read and write MRC volumes as float32 arrays indexed (z, y, x), with the header facts that
matter for particle coordinates: voxel size, origin and start indices.

Reading handles the quirks of files found in practice: float16 (mode 12) with voxels that
overflowed to inf, signed bytes flagged by IMOD, non-standard axis order (MAPC/MAPR/MAPS), extended headers, big-endian files, a
missing or placeholder voxel size, and truncated files.
"""

from __future__ import annotations

import logging
import os
import warnings as python_warnings
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

logger = logging.getLogger(__name__)

HEADER_BYTES = 1024
# IMOD writes this stamp ("DFGI" read as a little-endian int32) at byte 152 and its flags at
# byte 156. Flag bit 0 set means mode 0 bytes are signed.
IMOD_STAMP = 1146047817
IMOD_STAMP_OFFSET = 152
IMOD_FLAGS_OFFSET = 156
# Bytes per value for the MRC2014 modes that mrcfile 1.5 reads. Modes 3 (complex int16) and
# 101 (4-bit) have no NumPy type, and mode 4 (complex float32) is a Fourier transform, not a
# tomogram, so those three are rejected.
MODE_ITEM_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}
# Files larger than this are memory-mapped and converted to float32 one slab at a time, so
# peak memory is the float32 result plus one slab rather than two whole copies.
MMAP_THRESHOLD_BYTES = 256 * 1024**2
SLAB_BYTES = 64 * 1024**2


class MrcError(ValueError):
    """An MRC file that cannot be read: truncated, an unsupported mode, or a broken header."""


@dataclass
class Volume:
    """A volume as float32 (z, y, x) and the header facts needed to place particles in it."""

    data: np.ndarray
    # Angstroms per voxel along x, y, z, or None when the header gives no usable size.
    voxel_size: tuple[float, float, float] | None
    # Header origin in angstroms, x, y, z.
    origin: tuple[float, float, float]
    # Index of the first column, row and section (NXSTART, NYSTART, NZSTART), x, y, z.
    nstart: tuple[int, int, int]
    mode: int
    # Other header facts: grid size, cell size over sampling as stored (also when voxel_size is
    # None), axis order, byte order, extended header type and size, labels.
    header: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)


def _parse_header(path: Path, raw: bytes) -> tuple[np.void, str]:
    """Parse the 1024-byte header, choosing the byte order from the machine stamp.

    Files with a zero or unknown machine stamp are parsed little-endian unless that gives an
    impossible mode and big-endian does not.
    """
    if len(raw) < HEADER_BYTES:
        raise MrcError(f"{path}: file is {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte MRC header")
    machine_stamp = raw[212:214]
    if machine_stamp[:1] == b"\x11":
        order = ">"
    elif machine_stamp[:1] == b"\x44":
        order = "<"
    else:
        little_mode = int(np.frombuffer(raw, "<i4", 1, 12)[0])
        order = "<" if 0 <= little_mode <= 200 else ">"
    return np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(order), count=1)[0], order


def _expected_size(path: Path, header) -> tuple[int, int, tuple[int, int, int]]:
    mode = int(header["mode"])
    if mode not in MODE_ITEM_BYTES:
        raise MrcError(
            f"{path}: MRC mode {mode} is not supported; expected one of {sorted(MODE_ITEM_BYTES)} "
            "(8/16-bit integers, float32 or float16)"
        )
    shape = (int(header["nx"]), int(header["ny"]), int(header["nz"]))
    if min(shape) < 1:
        raise MrcError(f"{path}: header gives grid size {shape} (NX, NY, NZ); every size must be at least 1")
    extended_bytes = int(header["nsymbt"])
    if extended_bytes < 0:
        raise MrcError(f"{path}: header gives a negative extended header size ({extended_bytes} bytes)")
    data_bytes = shape[0] * shape[1] * shape[2] * MODE_ITEM_BYTES[mode]
    return HEADER_BYTES + extended_bytes + data_bytes, extended_bytes, shape


def _axis_order(path: Path, header) -> tuple[int, int, int]:
    """Return the permutation that turns the stored (section, row, column) array into (z, y, x)."""
    stored_axes = (int(header["maps"]), int(header["mapr"]), int(header["mapc"]))
    if sorted(stored_axes) != [1, 2, 3]:
        raise MrcError(f"{path}: MAPC, MAPR, MAPS are {stored_axes[::-1]}; they must be a permutation of 1, 2, 3")
    return tuple(stored_axes.index(axis) for axis in (3, 2, 1))


def _cell_over_sampling(header) -> tuple[float, float, float]:
    """Return cell size over sampling per axis as stored, with 0.0 where either is zero."""
    cell = (float(header["cella"]["x"]), float(header["cella"]["y"]), float(header["cella"]["z"]))
    sampling = (int(header["mx"]), int(header["my"]), int(header["mz"]))
    return tuple(c / m if m > 0 else 0.0 for c, m in zip(cell, sampling, strict=True))


def _voxel_size(header, warnings: list[str]) -> tuple[float, float, float] | None:
    cell = (float(header["cella"]["x"]), float(header["cella"]["y"]), float(header["cella"]["z"]))
    sampling = (int(header["mx"]), int(header["my"]), int(header["mz"]))
    if min(sampling) <= 0 or not all(np.isfinite(cell)) or min(cell) <= 0:
        warnings.append(
            f"voxel size unknown: cell size {cell} Å over grid sampling {sampling} (MX, MY, MZ) "
            "has a zero or invalid entry; pass the voxel size explicitly"
        )
        return None
    size = tuple(c / m for c, m in zip(cell, sampling, strict=True))
    if all(abs(s - 1.0) < 1e-6 for s in size):
        warnings.append(
            "voxel size unknown: the header gives 1.0 Å, which programs write as a placeholder "
            "when they do not know it; pass the voxel size explicitly"
        )
        return None
    return size


def _check_int8_signedness(byte_order: str, raw: bytes, warnings: list[str]) -> None:
    """Warn when IMOD's header flags mark mode 0 bytes as unsigned.

    mrcfile 1.5 always reads mode 0 as int8, as MRC2014 specifies. IMOD marks signed bytes
    with its stamp and flag bit 0, and older IMOD files with the stamp but not the flag contain
    unsigned bytes. This reader follows mrcfile (signed) in every case and records a warning
    when IMOD's flags mark the bytes as unsigned.
    """
    stamp = int(np.frombuffer(raw, byte_order + "i4", 1, IMOD_STAMP_OFFSET)[0])
    flags = int(np.frombuffer(raw, byte_order + "i4", 1, IMOD_FLAGS_OFFSET)[0])
    if stamp == IMOD_STAMP and not flags & 1:
        warnings.append(
            "mode 0 read as signed bytes as MRC2014 and mrcfile do, but the IMOD stamp without "
            "the signed flag means IMOD wrote unsigned bytes (0 to 255)"
        )


def _replace_non_finite(path: Path, data: np.ndarray, warnings: list[str]) -> None:
    """Replace inf and NaN voxels in place, and record how many there were and where the first was.

    float16 (mode 12) overflows to inf above 65504, and one such voxel turns every mean and
    normalisation of the volume into inf or NaN. +inf becomes the largest finite value, -inf
    the smallest, and NaN the mean of the finite voxels. Raises MrcError when no voxel is finite.
    """
    finite = np.isfinite(data)
    bad_count = int(data.size - np.count_nonzero(finite))
    if bad_count == 0:
        return
    if bad_count == data.size:
        raise MrcError(f"{path}: every voxel is inf or NaN, so the volume contains no usable data")
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    first_value = float(data[first])
    finite_values = data[finite]
    low, high, mean = float(finite_values.min()), float(finite_values.max()), float(finite_values.mean())
    data[np.isposinf(data)] = high
    data[np.isneginf(data)] = low
    data[np.isnan(data)] = mean
    warnings.append(
        f"{bad_count} voxel(s) are inf or NaN, the first at (z, y, x) {first} with value {first_value}; "
        f"float16 overflows to inf above 65504. They were replaced: +inf by the largest finite value {high:g}, "
        f"-inf by the smallest {low:g}, NaN by the mean {mean:g}"
    )


def _to_float32(stored: np.ndarray, order: tuple[int, int, int], sliced: bool) -> np.ndarray:
    """Convert the stored array to native float32 (z, y, x), one slab at a time when ``sliced``."""
    if not sliced:
        return np.ascontiguousarray(np.transpose(stored, order), dtype=np.float32)
    result = np.empty(tuple(stored.shape[axis] for axis in order), dtype=np.float32)
    # Slabs along the stored slowest axis read contiguous bytes from the memory map.
    slowest_in_result = order.index(0)
    plane_bytes = stored[0].nbytes
    step = max(1, SLAB_BYTES // max(1, plane_bytes))
    for start in range(0, stored.shape[0], step):
        slab = np.asarray(stored[start : start + step], dtype=np.float32)
        index = [slice(None)] * 3
        index[slowest_in_result] = slice(start, start + slab.shape[0])
        result[tuple(index)] = np.transpose(slab, order)
    return result


def read_volume(path: str | os.PathLike, mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> Volume:
    """Read an MRC file as a float32 (z, y, x) volume.

    Raises ``MrcError`` for a truncated file (before mrcfile reads it), an unsupported mode or
    an invalid axis order. Files over ``mmap_threshold`` bytes are memory-mapped and converted
    in slabs.
    """
    path = Path(path)
    actual_size = path.stat().st_size
    with path.open("rb") as handle:
        raw = handle.read(HEADER_BYTES)
    header, byte_order = _parse_header(path, raw)
    expected_size, extended_bytes, grid = _expected_size(path, header)
    if actual_size < expected_size and extended_bytes and actual_size >= expected_size - extended_bytes:
        raise MrcError(
            f"{path}: the header declares a {extended_bytes}-byte extended header (NSYMBT), but the file "
            f"has {actual_size} bytes, which leaves no room for it before the "
            f"{expected_size - HEADER_BYTES - extended_bytes} bytes of data; the extended header is missing "
            "or NSYMBT is wrong, so fix the header (for example with IMOD's alterheader)"
        )
    if actual_size < expected_size:
        raise MrcError(
            f"{path}: file is truncated: the header ({grid[0]}x{grid[1]}x{grid[2]} voxels, mode "
            f"{int(header['mode'])}, {extended_bytes}-byte extended header) needs {expected_size} bytes "
            f"but the file has {actual_size}"
        )
    warnings: list[str] = []
    if actual_size > expected_size:
        warnings.append(f"file has {actual_size - expected_size} bytes after the data; they were ignored")
    order = _axis_order(path, header)
    if order != (0, 1, 2):
        warnings.append(
            f"axis order MAPC, MAPR, MAPS = {int(header['mapc'])}, {int(header['mapr'])}, "
            f"{int(header['maps'])}; data transposed to (z, y, x)"
        )
    mode = int(header["mode"])
    if mode == 0:
        _check_int8_signedness(byte_order, raw, warnings)

    use_mmap = actual_size > mmap_threshold
    opener = mrcfile.mmap if use_mmap else mrcfile.open
    # permissive=True lets mrcfile open files with a wrong MAP field or other header slips that
    # this reader has already checked or reports as warnings.
    with (
        python_warnings.catch_warnings(record=True) as mrcfile_warnings,
        opener(path, mode="r", permissive=True) as mrc,
    ):
        python_warnings.simplefilter("always")
        if mrc.data is None:
            raise MrcError(f"{path}: mrcfile could not read the data block; check the header for errors")
        # mrcfile returns 2-D arrays for single images; restore the (section, row, column) shape.
        stored = mrc.data.reshape(grid[2], grid[1], grid[0])
        data = _to_float32(stored, order, sliced=use_mmap)
        extended_type = mrc.header.exttyp.item().decode("ascii", "replace").strip("\x00 ")
        labels = [
            label.decode("ascii", "replace").strip()
            for label in mrc.header.label[: max(0, min(10, int(mrc.header.nlabl)))]
        ]

    if mode in (2, 12):
        _replace_non_finite(path, data, warnings)
    for caught in mrcfile_warnings:
        # The size check above already reports trailing bytes.
        if "larger than expected" not in str(caught.message):
            warnings.append(f"mrcfile: {caught.message}")
    voxel_size = _voxel_size(header, warnings)
    for message in warnings:
        logger.info("%s: %s", path, message)
    return Volume(
        data=data,
        voxel_size=voxel_size,
        origin=(float(header["origin"]["x"]), float(header["origin"]["y"]), float(header["origin"]["z"])),
        nstart=(int(header["nxstart"]), int(header["nystart"]), int(header["nzstart"])),
        mode=mode,
        header={
            "grid_size": grid,
            "cell_voxel_size": _cell_over_sampling(header),
            "axis_order": (int(header["mapc"]), int(header["mapr"]), int(header["maps"])),
            "byte_order": "big" if byte_order == ">" else "little",
            "extended_header_type": extended_type,
            "extended_header_bytes": extended_bytes,
            "space_group": int(header["ispg"]),
            "labels": labels,
            "memory_mapped": use_mmap,
        },
        warnings=warnings,
    )


def write_volume(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size: float | tuple[float, float, float],
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Path:
    """Write a (z, y, x) array as a float32 MRC2014 file with the given voxel size in angstroms."""
    path = Path(path)
    array = np.asarray(data)
    if array.ndim != 3:
        raise ValueError(f"write_volume expects a 3-D (z, y, x) array, got shape {array.shape}")
    sizes = (voxel_size,) * 3 if np.isscalar(voxel_size) else tuple(voxel_size)
    if len(sizes) != 3 or min(sizes) <= 0:
        raise ValueError(f"voxel size must be positive angstroms, got {voxel_size!r}")
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(array, dtype=np.float32))
        mrc.voxel_size = tuple(float(s) for s in sizes)
        mrc.header.origin = tuple(float(o) for o in origin)
    return path
