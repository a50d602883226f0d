"""Read the header metadata that the platform stores for each file on arrival.

Readers look at headers only, so image and volume pixels are never decoded, and for
videos at most the first frame is decoded. Each reader checks the pixel limit before
any decoding, so a decompression bomb is rejected cheaply. Use ``read_metadata`` on a
file that ``analysis.filetypes.identify`` has already typed.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import math
import struct
import threading
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

from analysis.filetypes import (
    AVI,
    BMP,
    CSV,
    GIF,
    GZIP,
    JPEG,
    JSON,
    MATROSKA,
    MP4,
    MRC,
    MRC_HEADER_BYTES,
    NDJSON,
    NPY,
    NPZ,
    PLAIN_TEXT,
    PNG,
    POINT_LIST,
    STAR,
    TAR,
    TIFF,
    TSV,
    WEBP,
    ZIP,
    FileCheckError,
    FileType,
    check_archive_members,
    check_expansion,
    mrc_data_bytes,
    mrc_dimension_problem,
    tar_members,
    zip_members,
)

# JSON files up to this size are parsed on arrival to check them. Larger ones are only checked as UTF-8.
JSON_PARSE_MAX_BYTES = 8 * 1024 * 1024
TEXT_MAX_LINE_BYTES = 1024 * 1024
MAX_LISTED_COLUMNS = 200
MAX_LISTED_ARRAYS = 100


def read_metadata(path: str | Path, file_type: FileType, filename: str, *, max_image_pixels: int) -> dict:
    """Read the header metadata of a file already identified as ``file_type``.

    Returns a JSON-ready dict. Its ``warnings`` list, when present, contains problems
    worth showing that did not reject the file. ``max_image_pixels`` bounds width times height
    of any image, image page or video frame, checked before pixels are decoded.
    Raises FileCheckError for files that cannot be read or break the limit.
    """
    path = Path(path)
    reader = _METADATA_READERS.get(file_type.name)
    if reader is None:
        return {}
    return reader(path, filename, max_image_pixels)


def _too_many_pixels(filename: str, width: int, height: int, max_pixels: int) -> FileCheckError:
    return FileCheckError(
        f"{filename}: the image is {width} × {height} = {width * height} pixels, over the limit of {max_pixels} "
        "pixels that protects the server from decompression bombs. Split or downscale the image, or ask an "
        "administrator to raise UPLOAD_MAX_IMAGE_PIXELS.",
        "too_many_pixels",
    )


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextmanager
def pillow_own_pixel_check():
    """Switch off Pillow's global decompression-bomb limit while the caller applies its own.

    Pillow's limit (``Image.MAX_IMAGE_PIXELS``) is process-wide and would reject images
    below the caller's configured limit, so it is set to None under a lock and restored.
    """
    from PIL import Image

    # NOTE: other threads that open images during this window run without Pillow's limit.
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield Image
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_pillow_image(path: Path, filename: str, max_pixels: int) -> dict:
    with pillow_own_pixel_check() as Image:
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _too_many_pixels(filename, width, height, max_pixels)
                metadata = {
                    "format": image.format,
                    "width": width,
                    "height": height,
                    "mode": image.mode,
                    "frames": int(getattr(image, "n_frames", 1)),
                }
                if image.format == "JPEG":
                    # Only JPEG keeps EXIF in a header segment; Pillow decodes a PNG to find its EXIF.
                    orientation = image.getexif().get(0x0112)
                    if orientation and orientation != 1:
                        metadata["exif_orientation"] = int(orientation)
                # verify() checks chunk structure and checksums without decoding pixels.
                image.verify()
        except FileCheckError:
            raise
        except (OSError, SyntaxError, ValueError, struct.error) as error:
            raise FileCheckError(
                f"{filename}: the image could not be read ({error}). Check that the file is complete and upload it again.",
                "unreadable",
            ) from error
    return metadata


def _read_tiff(path: Path, filename: str, max_pixels: int) -> dict:
    # tifffile reads the scientific TIFF variants (BigTIFF, float and multi-channel pages,
    # OME and ImageJ stacks) whose headers Pillow cannot parse.
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            first = tiff.pages.first
            width, height = int(first.imagewidth), int(first.imagelength)
            if width * height > max_pixels:
                raise _too_many_pixels(filename, width, height, max_pixels)
            series = tiff.series[0] if tiff.series else None
            metadata = {
                "format": "TIFF",
                "width": width,
                "height": height,
                "frames": len(tiff.pages),
                "dtype": str(first.dtype) if first.dtype is not None else None,
                "samples_per_pixel": int(first.samplesperpixel),
                "bigtiff": bool(tiff.is_bigtiff),
            }
            if series is not None:
                metadata["shape"] = [int(n) for n in series.shape]
                metadata["axes"] = series.axes
                # NOTE: only the first page and the first series are checked against the pixel
                # limit. A later page that is larger than the first is not caught here.
                if "Y" in series.axes and "X" in series.axes:
                    series_height = series.shape[series.axes.index("Y")]
                    series_width = series.shape[series.axes.index("X")]
                    if series_width * series_height > max_pixels:
                        raise _too_many_pixels(filename, series_width, series_height, max_pixels)
            if tiff.is_ome:
                metadata["ome"] = True
            if tiff.is_imagej:
                metadata["imagej"] = True
    except FileCheckError:
        raise
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, struct.error) as error:
        raise FileCheckError(
            f"{filename}: the TIFF file could not be read ({error}). Check that the file is complete and upload it again.",
            "unreadable",
        ) from error
    return metadata


def _read_video(path: Path, filename: str, max_pixels: int) -> dict:
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as error:
        # FFmpeg's message ends with the server-side path, so only its reason is shown.
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise FileCheckError(
            f"{filename}: the video could not be opened ({reason}). The file is damaged, cut short (an MP4 "
            "whose index was not written) or not a video. Check that the file is complete and upload it again.",
            "unreadable",
        ) from error
    with container:
        if not container.streams.video:
            raise FileCheckError(
                f"{filename}: the file has no video stream. Upload a video file, or use an audio-free container.",
                "unreadable",
            )
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if width * height > max_pixels:
            raise _too_many_pixels(filename, width, height, max_pixels)
        metadata = {
            "container": container.format.name,
            "codec": stream.codec_context.name,
            "width": width,
            "height": height,
            "pixel_format": stream.codec_context.format.name if stream.codec_context.format else None,
            "frame_rate": _finite_float(stream.average_rate or stream.guessed_rate),
            "duration_seconds": _video_duration(container, stream),
        }
        warnings_found: list[str] = []
        metadata["rotation_degrees"], metadata["rotation_source"] = _video_rotation(container, stream, warnings_found)
        # The frame size as players show it, after the display rotation.
        quarter_turn = metadata["rotation_degrees"] in (90, 270)
        metadata["display_width"], metadata["display_height"] = (height, width) if quarter_turn else (width, height)

    frame_count, source = _video_frame_count(path, stream.frames)
    metadata["frame_count"] = frame_count
    metadata["frame_count_source"] = source
    if warnings_found:
        metadata["warnings"] = warnings_found
    return metadata


def _video_duration(container, stream) -> float | None:
    import av

    if stream.duration is not None and stream.time_base is not None:
        return _finite_float(stream.duration * stream.time_base)
    if container.duration is not None:
        return _finite_float(Fraction(container.duration, av.time_base))
    return None


def _video_rotation(container, stream, warnings_found: list[str]) -> tuple[int, str | None]:
    """Return the display rotation in degrees counter-clockwise, in [0, 360), and its source.

    The display matrix that decoders attach to frames takes precedence. Without one, the
    legacy ``rotate`` tag, which counts clockwise, is converted.
    """
    import av

    try:
        for frame in container.decode(stream):
            rotation = frame.rotation
            if rotation:
                return int(round(rotation)) % 360, "display_matrix"
            break
    except (av.FFmpegError, ValueError) as error:
        warnings_found.append(f"The first frame could not be decoded ({error}); rotation comes from tags only.")
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return int(round(-float(tag))) % 360, "rotate_tag"
        except ValueError:
            warnings_found.append(f"The rotate tag {tag!r} is not a number and was ignored.")
    return 0, None


def _video_frame_count(path: Path, header_frames: int) -> tuple[int | None, str]:
    """Return the number of frames from the header, or by counting packets when the header has none."""
    import av

    if header_frames:
        return int(header_frames), "header"
    # Demuxing without decoding reads the file once; each video packet contains one frame.
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, ValueError):
        return None, "unknown"
    return count, "packets"


def _read_mrc(path: Path, filename: str, max_pixels: int) -> dict:
    import mrcfile

    file_size = path.stat().st_size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, header_only=True, permissive=True) as mrc:
                header = mrc.header
                voxel_size = mrc.voxel_size
        except (OSError, ValueError) as error:
            raise FileCheckError(
                f"{filename}: the MRC header could not be read ({error}). Check the file and upload it again.",
                "unreadable",
            ) from error
    nx, ny, nz, mode = int(header.nx), int(header.ny), int(header.nz), int(header.mode)
    nsymbt = int(header.nsymbt)
    problem = mrc_dimension_problem(nx, ny, nz, mode, nsymbt)
    if problem is not None:
        raise FileCheckError(f"{filename}: not a valid MRC file: {problem}.", "unreadable")

    messages = [str(warning.message) for warning in caught]
    data_bytes = mrc_data_bytes(nx, ny, nz, mode)
    available = file_size - MRC_HEADER_BYTES - nsymbt
    if available < data_bytes and nsymbt and file_size - MRC_HEADER_BYTES >= data_bytes:
        raise FileCheckError(
            f"{filename}: the header declares a {nsymbt}-byte extended header, but the file has only "
            f"{file_size - MRC_HEADER_BYTES} bytes after the main header, enough for the {data_bytes} bytes of "
            f"data alone. The extended header is missing or NSYMBT (bytes 93 to 96) is wrong; fix the header "
            "(for example with IMOD's alterheader) and upload the file again.",
            "truncated",
        )
    if available < data_bytes:
        raise FileCheckError(
            f"{filename}: the file is truncated: its header describes {nx} × {ny} × {nz} voxels of mode {mode} "
            f"({data_bytes} bytes of data), but only {max(available, 0)} bytes follow the headers. "
            "Upload the complete file.",
            "truncated",
        )
    if available > data_bytes:
        messages.append(f"The file has {available - data_bytes} bytes after the data that the header describes.")
    if header.map != b"MAP ":
        messages.append("There is no 'MAP ' identifier at byte 208; the file predates MRC2014 or was written loosely.")
    statistics = {"minimum": header.dmin, "maximum": header.dmax, "mean": header.dmean}
    not_finite = [name for name, value in statistics.items() if not math.isfinite(float(value))]
    if not_finite:
        messages.append(
            f"The header's {' and '.join(not_finite)} {'are' if len(not_finite) > 1 else 'is'} not finite, "
            "so the data likely holds inf or NaN "
            "voxels (float16 overflows to inf above 65504). Such voxels are replaced when the volume is read."
        )
    if mode in (3, 101):
        messages.append(f"Mode {mode} is rare; some tools, mrcfile among them, cannot read its data.")

    voxel, voxel_message = _mrc_voxel_size(voxel_size)
    if voxel_message:
        messages.append(voxel_message)
    metadata = {
        "shape": [nz, ny, nx],
        "mode": mode,
        "voxel_size_angstrom": voxel,
        "space_group": int(header.ispg),
        "extended_header_bytes": nsymbt,
        "mrc2014": bool(header.map == b"MAP "),
        "header_min": _finite_float(header.dmin),
        "header_max": _finite_float(header.dmax),
        "header_mean": _finite_float(header.dmean),
    }
    exttyp = bytes(header.exttyp).decode("ascii", "replace").strip("\x00 ")
    if exttyp:
        metadata["extended_header_type"] = exttyp
    metadata["warnings"] = messages
    return metadata


def _mrc_voxel_size(voxel_size) -> tuple[dict | None, str | None]:
    values = {"x": float(voxel_size.x), "y": float(voxel_size.y), "z": float(voxel_size.z)}
    if not all(math.isfinite(value) for value in values.values()):
        return None, "The voxel size in the header is not a finite number; set the pixel size before analysis."
    if all(value == 0 for value in values.values()):
        return None, "The voxel size in the header is 0 (not set); set the pixel size in angstroms before analysis."
    if all(abs(value - 1.0) < 1e-6 for value in values.values()):
        return None, (
            "The voxel size in the header is 1.0 Å, the placeholder many tools write; "
            "it is treated as unknown. Set the real pixel size in angstroms before analysis."
        )
    return {axis: round(value, 6) for axis, value in values.items()}, None


def _read_npy(path: Path, filename: str, max_pixels: int) -> dict:
    with path.open("rb") as handle:
        return _npy_header(handle, filename, total_bytes=path.stat().st_size)


def _npy_header(handle, filename: str, total_bytes: int | None) -> dict:
    import numpy as np

    try:
        version = np.lib.format.read_magic(handle)
        # Version 3.0 differs from 2.0 only in the header's text encoding (UTF-8, not Latin-1).
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
    except (ValueError, OSError, SyntaxError, struct.error) as error:
        raise FileCheckError(
            f"{filename}: the NumPy header could not be read ({error}). Save the array with numpy.save and upload it again.",
            "unreadable",
        ) from error
    if dtype.hasobject:
        raise FileCheckError(
            f"{filename}: the array stores Python objects (dtype {dtype}), which cannot be loaded without running "
            "pickled code. Save a numeric array instead.",
            "unsafe",
        )
    metadata = {"shape": [int(n) for n in shape], "dtype": str(dtype), "fortran_order": bool(fortran_order)}
    if total_bytes is not None:
        data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        available = total_bytes - handle.tell()
        if available < data_bytes:
            raise FileCheckError(
                f"{filename}: the file is truncated: the array {tuple(shape)} of {dtype} needs {data_bytes} bytes, "
                f"but only {available} follow the header. Upload the complete file.",
                "truncated",
            )
        if available > data_bytes:
            metadata["warnings"] = [f"The file has {available - data_bytes} bytes after the array data."]
    return metadata


def _zip_entries(path: Path, filename: str) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise FileCheckError(
            f"{filename}: the ZIP archive could not be read ({error}). Check that it is complete and upload it again.",
            "unreadable",
        ) from error


def _zip_summary(entries: list[zipfile.ZipInfo]) -> dict:
    return {"entries": len(entries), "uncompressed_bytes": sum(entry.file_size for entry in entries)}


def _read_zip(path: Path, filename: str, max_pixels: int) -> dict:
    entries = _zip_entries(path, filename)
    check_archive_members(filename, zip_members(entries))
    return _zip_summary(entries)


def _read_tar(path: Path, filename: str, max_pixels: int) -> dict:
    import tarfile

    try:
        with tarfile.open(path) as archive:
            entries = archive.getmembers()
    except (tarfile.TarError, OSError) as error:
        raise FileCheckError(
            f"{filename}: the tar archive could not be read ({error}). Check that it is complete and upload it again.",
            "unreadable",
        ) from error
    check_archive_members(filename, tar_members(entries))
    return {"entries": len(entries), "uncompressed_bytes": sum(entry.size for entry in entries)}


def _read_gzip(path: Path, filename: str, max_pixels: int) -> dict:
    # The gzip trailer's last 4 bytes (ISIZE) give the uncompressed size modulo 2^32 (RFC 1952).
    # NOTE: a stream over 4 GiB wraps ISIZE around, so such a bomb can pass this check.
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(size - 4, 0))
        expanded = struct.unpack("<I", handle.read(4).rjust(4, b"\0"))[0]
    check_expansion(filename, size, expanded)
    return {"uncompressed_bytes_mod_4gib": expanded}


def _read_npz(path: Path, filename: str, max_pixels: int) -> dict:
    # NumPy reads members into memory and never extracts them, so their names and ratios are not checked.
    metadata = _zip_summary(_zip_entries(path, filename))
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for entry in archive.infolist()[:MAX_LISTED_ARRAYS]:
            with archive.open(entry) as member:
                header = _npy_header(member, f"{filename} ({entry.filename})", total_bytes=None)
            arrays[entry.filename.removesuffix(".npy")] = {"shape": header["shape"], "dtype": header["dtype"]}
    metadata["arrays"] = arrays
    return metadata


def _iter_text_lines(path: Path, filename: str) -> Iterator[str]:
    """Yield the lines of a UTF-8 file without line endings, each cut at TEXT_MAX_LINE_BYTES.

    Lines are read as bytes and decoded one at a time, so a decoding error names the exact
    line. Raises FileCheckError at the first line that is not UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        for line_number in itertools.count(1):
            piece = handle.readline(TEXT_MAX_LINE_BYTES)
            if not piece:
                return
            decoder.reset()
            try:
                text = decoder.decode(piece, final=piece.endswith(b"\n"))
                # An over-long line: check the rest of it as UTF-8 but keep only its start.
                while not piece.endswith(b"\n"):
                    piece = handle.readline(TEXT_MAX_LINE_BYTES)
                    decoder.decode(piece, final=not piece or piece.endswith(b"\n"))
                    if not piece:
                        break
            except UnicodeDecodeError as error:
                raise FileCheckError(
                    f"{filename}: line {line_number} is not valid UTF-8 ({error.reason}). "
                    "Save the file as UTF-8 and upload it again.",
                    "invalid_text",
                ) from error
            if line_number == 1:
                text = text.removeprefix("\ufeff")
            yield text.removesuffix("\n").removesuffix("\r")


def _read_delimited(path: Path, filename: str, delimiter: str) -> dict:
    columns: list[str] | None = None
    rows = 0
    lines = 0
    for line in _iter_text_lines(path, filename):
        lines += 1
        if columns is None:
            if line.strip():
                columns = next(csv.reader(io.StringIO(line), delimiter=delimiter), [])
            continue
        if line.strip():
            rows += 1
    columns = columns or []
    metadata = {
        "encoding": "utf-8",
        "lines": lines,
        "rows": rows,
        "column_count": len(columns),
        "columns": [name[:100] for name in columns[:MAX_LISTED_COLUMNS]],
    }
    return metadata


def _read_csv(path: Path, filename: str, max_pixels: int) -> dict:
    return _read_delimited(path, filename, ",")


def _read_tsv(path: Path, filename: str, max_pixels: int) -> dict:
    return _read_delimited(path, filename, "\t")


def _read_star(path: Path, filename: str, max_pixels: int) -> dict:
    """Read the data blocks of a STAR file (RELION particle lists and similar) and their loops."""
    blocks: list[dict] = []
    current: dict | None = None
    in_loop_header = False
    lines = 0
    for raw_line in _iter_text_lines(path, filename):
        lines += 1
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("data_"):
            current = {"name": line[5:][:100], "loop": False, "columns": [], "rows": 0}
            blocks.append(current)
            in_loop_header = False
        elif current is None:
            continue
        elif line == "loop_":
            current["loop"] = True
            in_loop_header = True
        elif line.startswith("_"):
            if in_loop_header or not current["loop"]:
                current["columns"].append(line.split()[0][:100])
        elif current["loop"]:
            in_loop_header = False
            current["rows"] += 1
    if not blocks:
        raise FileCheckError(
            f"{filename}: no data block (a line starting with data_) was found, so this is not a STAR file. "
            "Check the file or rename it to .txt.",
            "invalid_text",
        )
    for block in blocks:
        block["columns"] = block["columns"][:MAX_LISTED_COLUMNS]
    return {"encoding": "utf-8", "lines": lines, "blocks": blocks[:50], "block_count": len(blocks)}


def _read_json(path: Path, filename: str, max_pixels: int) -> dict:
    size = path.stat().st_size
    if size > JSON_PARSE_MAX_BYTES:
        # Still check that every byte is UTF-8 without holding the document in memory.
        lines = sum(1 for _ in _iter_text_lines(path, filename))
        return {
            "encoding": "utf-8",
            "lines": lines,
            "warnings": [f"The document is larger than {JSON_PARSE_MAX_BYTES} bytes and was not parsed on arrival."],
        }
    try:
        with path.open("r", encoding="utf-8-sig", errors="strict") as handle:
            document = json.load(handle)
    except UnicodeDecodeError as error:
        raise FileCheckError(
            f"{filename}: the file is not valid UTF-8 ({error.reason}). Save it as UTF-8 and upload it again.",
            "invalid_text",
        ) from error
    except json.JSONDecodeError as error:
        raise FileCheckError(
            f"{filename}: not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}. "
            "Fix the document and upload it again.",
            "invalid_text",
        ) from error
    metadata: dict = {"encoding": "utf-8", "top_level": type(document).__name__}
    if isinstance(document, dict | list):
        metadata["length"] = len(document)
    if isinstance(document, dict):
        metadata["keys"] = [str(key)[:100] for key in list(document)[:MAX_LISTED_COLUMNS]]
    return metadata


def _read_plain_text(path: Path, filename: str, max_pixels: int) -> dict:
    return {"encoding": "utf-8", "lines": sum(1 for _ in _iter_text_lines(path, filename))}


def _finite_float(value) -> float | None:
    """Convert a number (Fraction, NumPy scalar) to a float, or None when it is missing or not finite."""
    if value is None:
        return None
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None


_METADATA_READERS = {
    PNG.name: _read_pillow_image,
    JPEG.name: _read_pillow_image,
    GIF.name: _read_pillow_image,
    BMP.name: _read_pillow_image,
    WEBP.name: _read_pillow_image,
    TIFF.name: _read_tiff,
    MP4.name: _read_video,
    AVI.name: _read_video,
    MATROSKA.name: _read_video,
    MRC.name: _read_mrc,
    NPY.name: _read_npy,
    NPZ.name: _read_npz,
    ZIP.name: _read_zip,
    TAR.name: _read_tar,
    GZIP.name: _read_gzip,
    CSV.name: _read_csv,
    TSV.name: _read_tsv,
    STAR.name: _read_star,
    JSON.name: _read_json,
    PLAIN_TEXT.name: _read_plain_text,
    NDJSON.name: _read_plain_text,
    POINT_LIST.name: _read_plain_text,
}
