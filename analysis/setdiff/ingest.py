"""Read two image groups and normalise every image once, to 8-bit RGB.

A group comes from a folder (searched recursively), a text file listing one image path per
line, a list of paths, a ZIP or tar archive, or a VisDiff CSV with ``path,group_name``
columns. Normalisation applies the EXIF orientation once, scales 16-bit, 32-bit and float
pixels from the range they use, flattens alpha onto a stated background, converts palette,
grayscale and CMYK images to RGB, reads each page of a multi-page TIFF or OME-TIFF and each
frame of a DICOM file as its own image, and leaves out any image that cannot be decoded or
whose pixel count is over the limit, naming it in ``Groups.skipped``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from analysis.file_metadata import pillow_own_pixel_check
from analysis.filetypes import ArchiveMember, FileCheckError, check_archive_members, tar_members, zip_members

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".dcm", ".dicom"}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
TIFF_SUFFIXES = {".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_BACKGROUND = (255, 255, 255)


class IngestError(ValueError):
    """Input groups that cannot be used, with the file or value at fault and what to do."""


@dataclass
class ImageRecord:
    """One normalised image: ``pixels`` is uint8 RGB of shape (height, width, 3)."""

    name: str
    group: str
    pixels: np.ndarray
    sha256: str
    # How the stored values were mapped to 0-255, such as "uint16 / 4095 (12 bits used)".
    scaling: str = "uint8"

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.pixels, mode="RGB")

    @property
    def gray(self) -> np.ndarray:
        """Luminance in [0, 1] (ITU-R BT.601 weights, as PIL's "L" mode uses)."""
        return self.pixels.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0


@dataclass
class Groups:
    a: list[ImageRecord]
    b: list[ImageRecord]
    name_a: str = "A"
    name_b: str = "B"
    # (image name, reason) for every image left out.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images(self) -> list[ImageRecord]:
        return self.a + self.b


@dataclass
class IngestOptions:
    max_pixels: int = DEFAULT_MAX_PIXELS
    background: tuple[int, int, int] = DEFAULT_BACKGROUND
    min_images: int = 2


# --- pixel normalisation -------------------------------------------------------------


def _bits_used(maximum: int, stored_bits: int | None) -> int:
    """The bit depth the data occupies: the stored bit count when the file gives one, else
    the smallest of 8, 10, 12, 14 or 16 bits that holds the maximum value."""
    if stored_bits:
        return int(stored_bits)
    for bits in (8, 10, 12, 14, 16, 24, 32):
        if maximum < 2**bits:
            return bits
    return 32


def scale_to_uint8(values: np.ndarray, stored_bits: int | None = None) -> tuple[np.ndarray, str]:
    """Scale integer or float pixels to uint8 from the range they use, and say how.

    Unsigned integers wider than 8 bits are divided by the largest value of the bit depth in
    use (12-bit camera data in a 16-bit file maps 4095 to 255), so brightness stays
    comparable between images. Floats inside [0, 1] are multiplied by 255. Signed integers
    with negative values and floats outside [0, 1] are stretched from their own minimum to
    maximum, because they have no fixed full scale.
    """
    if values.dtype == np.uint8:
        return values, "uint8"
    if values.dtype == bool:
        return values.astype(np.uint8) * 255, "bool"
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(values.shape, np.uint8), f"{values.dtype} with no finite values, set to 0"
    data = np.where(finite, data, 0.0)
    low, high = float(data[finite].min()), float(data[finite].max())
    if np.issubdtype(values.dtype, np.unsignedinteger) or (np.issubdtype(values.dtype, np.integer) and low >= 0):
        bits = _bits_used(int(high), stored_bits)
        full = float(2**bits - 1)
        scaled, how = data / full, f"{values.dtype} / {int(full)} ({bits} bits used)"
    elif np.issubdtype(values.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        scaled, how = data, f"{values.dtype} in [0, 1]"
    else:
        span = high - low
        scaled = (data - low) / span if span > 0 else np.zeros_like(data)
        how = f"{values.dtype} stretched from [{low:g}, {high:g}]"
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8), how


def flatten_alpha(rgb: np.ndarray, alpha: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Composite uint8 ``rgb`` with uint8 ``alpha`` over a solid ``background`` colour."""
    weight = alpha.astype(np.float32)[..., None] / 255.0
    base = np.asarray(background, np.float32)
    return np.round(rgb.astype(np.float32) * weight + base * (1.0 - weight)).astype(np.uint8)


def array_to_rgb(
    array: np.ndarray, background: tuple[int, int, int], stored_bits: int | None = None
) -> tuple[np.ndarray, str]:
    """Turn a (h, w), (h, w, 1..4) or (c, h, w) array into uint8 RGB, with alpha flattened."""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[2] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (channels first) to interleaved
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        gray, how = scale_to_uint8(array, stored_bits)
        return np.repeat(gray[..., None], 3, axis=2), how
    if array.ndim != 3 or array.shape[2] not in (2, 3, 4):
        raise ValueError(f"pixel array of shape {array.shape} is not a grayscale, RGB or RGBA image")
    scaled, how = scale_to_uint8(array, stored_bits)
    if scaled.shape[2] == 2:  # gray + alpha
        rgb = np.repeat(scaled[..., :1], 3, axis=2)
        return flatten_alpha(rgb, scaled[..., 1], background), how + ", alpha flattened"
    if scaled.shape[2] == 4:
        return flatten_alpha(scaled[..., :3], scaled[..., 3], background), how + ", alpha flattened"
    return scaled, how


def pil_to_rgb(image: Image.Image, background: tuple[int, int, int]) -> tuple[np.ndarray, str]:
    """Convert an opened PIL image (any mode) to uint8 RGB; EXIF orientation applied here, once."""
    # exif_transpose returns a copy without the orientation tag, so a second call is a no-op.
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return array_to_rgb(np.asarray(image), background)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        image = image.convert("RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode == "L":
        return array_to_rgb(np.asarray(image), background)[0], "uint8 grayscale"
    if image.mode in ("LA", "RGBA"):
        return array_to_rgb(np.asarray(image), background)[0], f"uint8 {image.mode}, alpha flattened"
    return np.asarray(image.convert("RGB")), "uint8"


# --- decoding files -------------------------------------------------------------------


def _check_pixels(name: str, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ValueError(
            f"{width}x{height} = {height * width} pixels is over the limit of {max_pixels} pixels per image, "
            "which protects against decompression bombs; downscale or split the image"
        )


def _decode_tiff(name: str, data: bytes, options: IngestOptions) -> Iterator[tuple[str, np.ndarray, str]]:
    import tifffile

    # NOTE: tifffile returns pixels in stored order, so a TIFF Orientation tag other than 1 is not applied.
    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        pages = list(tiff.pages)
        for index, page in enumerate(pages):
            shape = page.shape
            height, width = (shape[1], shape[2]) if page.planarconfig == 2 and len(shape) == 3 else shape[:2]
            _check_pixels(name, height, width, options.max_pixels)
            array = page.asarray()
            # A 12-bit TIFF read into uint16 states its depth; a full 16-bit one says nothing about the bits used.
            container_bits = array.dtype.itemsize * 8
            bits = page.bitspersample if array.dtype.kind == "u" and page.bitspersample < container_bits else None
            if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
                array = array.max() - array if array.dtype.kind in "ui" else 1.0 - array
            if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
                colormap = np.asarray(page.colormap)  # (3, 2**bits), 16-bit values
                array = np.moveaxis(colormap[:, array], 0, -1)
                bits = 16
            if page.photometric == tifffile.PHOTOMETRIC.SEPARATED:  # CMYK
                pixels = np.asarray(Image.fromarray(array.astype(np.uint8), mode="CMYK").convert("RGB"))
                how = "uint8 CMYK"
            else:
                pixels, how = array_to_rgb(array, options.background, bits)
            label = f"{name}#page{index + 1}" if len(pages) > 1 else name
            yield label, pixels, how


def _decode_dicom(name: str, data: bytes, options: IngestOptions) -> Iterator[tuple[str, np.ndarray, str]]:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    dataset = pydicom.dcmread(io.BytesIO(data))
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    _check_pixels(name, rows, columns, options.max_pixels)
    pixels = dataset.pixel_array
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2"))
    stack = pixels if frames > 1 else pixels[None]
    for index, frame in enumerate(stack):
        if samples == 1:
            values = apply_modality_lut(frame, dataset)  # rescale slope and intercept
            if photometric == "MONOCHROME1":  # 0 is white in MONOCHROME1
                values = values.max() - values
            stored_bits = int(getattr(dataset, "BitsStored", 0) or 0)
            keep_bits = stored_bits if values.dtype.kind == "u" and np.array_equal(values, frame) else None
            rgb, how = array_to_rgb(np.asarray(values), options.background, keep_bits)
        else:
            rgb, how = array_to_rgb(np.asarray(frame), options.background)
            if photometric.startswith("YBR"):
                from pydicom.pixels import convert_color_space

                rgb = convert_color_space(rgb, photometric, "RGB")
        label = f"{name}#frame{index + 1}" if frames > 1 else name
        yield label, rgb, f"DICOM {photometric}, {how}"


def _open_checked(name: str, data: bytes, max_pixels: int) -> Image.Image:
    """Open an image with Pillow's global limit off and check ``max_pixels`` before any decoding."""
    with pillow_own_pixel_check():
        image = Image.open(io.BytesIO(data))
    width, height = image.size
    try:
        _check_pixels(name, height, width, max_pixels)
    except ValueError:
        image.close()
        raise
    return image


def _decode_pil(name: str, data: bytes, options: IngestOptions) -> Iterator[tuple[str, np.ndarray, str]]:
    # NOTE: Pillow applies its own limit again when it seeks to a later GIF frame, so an animated
    # GIF larger than Image.MAX_IMAGE_PIXELS is reported as undecodable even below max_pixels.
    with _open_checked(name, data, options.max_pixels) as image:
        frames = getattr(image, "n_frames", 1)
        if frames > 1 and image.format in ("GIF", "WEBP", "PNG"):
            frames = 1  # animations: the first frame stands for the image
        for index in range(frames):
            image.seek(index)
            image.load()
            pixels, how = pil_to_rgb(image, options.background)
            yield (f"{name}#page{index + 1}" if frames > 1 else name), pixels, how


def _is_dicom(name: str, data: bytes) -> bool:
    return Path(name).suffix.lower() in DICOM_SUFFIXES or data[128:132] == b"DICM"


def _is_tiff(name: str, data: bytes) -> bool:
    return Path(name).suffix.lower() in TIFF_SUFFIXES or data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def decode_image_bytes(name: str, data: bytes, options: IngestOptions) -> list[tuple[str, np.ndarray, str]]:
    """Decode one file into (name, uint8 RGB, scaling) triples, one per page or frame."""
    if _is_dicom(name, data):
        return list(_decode_dicom(name, data, options))
    if _is_tiff(name, data):
        return list(_decode_tiff(name, data, options))
    return list(_decode_pil(name, data, options))


# --- finding files ----------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _has_image_suffix(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def iter_source_files(source: str | Path | Iterable[str | Path]) -> Iterator[tuple[str, bytes | None, str]]:
    """Yield (name, bytes or None, problem) for each file of a group source.

    ``source`` is a folder, an archive, a text file of paths, one image file, or a list of
    paths. A listed file that cannot be read yields ``None`` bytes and the reason.
    """
    if not isinstance(source, str | Path):
        for item in source:
            yield from iter_source_files(item)
        return
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _has_image_suffix(p.name))
        if not files:
            raise IngestError(f"{path}: the folder contains no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        for file in files:
            yield str(file), file.read_bytes(), ""
        return
    if not path.exists():
        raise IngestError(f"{path}: no such file or folder.")
    if _is_archive(path):
        yield from _iter_archive(path)
        return
    if path.suffix.lower() in (".txt", ".lst", ".list"):
        base = path.parent
        for line in path.read_text().splitlines():
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            listed = Path(entry) if Path(entry).is_absolute() else base / entry
            if listed.is_file():
                yield str(listed), listed.read_bytes(), ""
            else:
                yield str(listed), None, f"listed in {path} but not found"
        return
    yield str(path), path.read_bytes(), ""


def _check_members(path: Path, members: list[ArchiveMember], archive_bytes: int | None = None) -> None:
    try:
        check_archive_members(str(path), members, archive_bytes)
    except FileCheckError as error:
        raise IngestError(str(error)) from error


def _iter_archive(path: Path) -> Iterator[tuple[str, bytes | None, str]]:
    """Yield the images of an archive after checking every member's name and expansion ratio.

    Raises IngestError for an unreadable archive, a member named with an absolute path or
    ``..``, or a ZIP member or a whole compressed tar that expands like a decompression bomb.
    """
    if path.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                _check_members(path, zip_members(archive.infolist()))
                for info in sorted(archive.infolist(), key=lambda item: item.filename):
                    if not info.is_dir() and _has_image_suffix(info.filename):
                        yield f"{path}:{info.filename}", archive.read(info), ""
        except zipfile.BadZipFile as error:
            raise IngestError(f"{path}: not a readable ZIP archive ({error}).") from error
        return
    try:
        with tarfile.open(path) as archive:
            # Listing a compressed tar decompresses it once, in blocks, before any member is read.
            members = archive.getmembers()
            _check_members(path, tar_members(members), path.stat().st_size)
            for member in sorted(members, key=lambda item: item.name):
                # Only regular files are read, so links in the archive cannot point elsewhere.
                if member.isfile() and _has_image_suffix(member.name):
                    handle = archive.extractfile(member)
                    yield f"{path}:{member.name}", handle.read() if handle else b"", ""
    except tarfile.TarError as error:
        raise IngestError(f"{path}: not a readable tar archive ({error}).") from error


def read_visdiff_csv(path: str | Path) -> dict[str, list[Path]]:
    """Read a VisDiff CSV (``path,group_name`` columns) into image paths per group name.

    Relative paths are taken from the CSV's own folder.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        if not {"path", "group_name"} <= columns:
            raise IngestError(
                f"{path}: a VisDiff CSV needs the columns path and group_name; it has {', '.join(sorted(columns)) or 'none'}."
            )
        groups: dict[str, list[Path]] = {}
        for row in reader:
            image = Path(row["path"].strip())
            groups.setdefault(row["group_name"].strip(), []).append(
                image if image.is_absolute() else path.parent / image
            )
    return groups


# --- loading groups ---------------------------------------------------------------------


NOT_AN_IMAGE = "the content is not in an image format that Pillow, tifffile or pydicom can read"


def decode_failure_reason(error: Exception) -> str:
    """Return why ``decode_image_bytes`` failed, in words for the person who uploaded the file.

    Pillow's UnidentifiedImageError names an in-memory buffer object (``<_io.BytesIO object at
    0x...>``), which means nothing to a user, so it is replaced by NOT_AN_IMAGE. Errors of
    other libraries keep their type name, because their text alone can be terse.
    """
    if isinstance(error, UnidentifiedImageError):
        return NOT_AN_IMAGE
    if isinstance(error, OSError | ValueError | Image.DecompressionBombError | SyntaxError):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def load_group(
    source, group: str, options: IngestOptions, skipped: list[tuple[str, str]], seen: set[str] | None = None
) -> list[ImageRecord]:
    records: list[ImageRecord] = []
    for name, data, problem in iter_source_files(source):
        if data is None:
            skipped.append((name, problem))
            continue
        try:
            decoded = decode_image_bytes(name, data, options)
        except Exception as error:  # pydicom and tifffile raise their own error types on damaged files
            reason = decode_failure_reason(error)
            skipped.append((name, f"cannot be decoded: {reason}"))
            logger.warning("Left out %s: %s", name, reason)
            continue
        for label, pixels, how in decoded:
            digest = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
            records.append(ImageRecord(label, group, np.ascontiguousarray(pixels), digest, how))
    return records


def load_groups(
    source_a,
    source_b,
    options: IngestOptions | None = None,
    name_a: str = "A",
    name_b: str = "B",
) -> Groups:
    """Load and normalise both groups; raise IngestError when a group has too few usable images."""
    options = options or IngestOptions()
    skipped: list[tuple[str, str]] = []
    a = load_group(source_a, name_a, options, skipped)
    b = load_group(source_b, name_b, options, skipped)
    for name, records in ((name_a, a), (name_b, b)):
        if len(records) < options.min_images:
            detail = "; ".join(f"{file}: {reason}" for file, reason in skipped[:5])
            raise IngestError(
                f"Group {name} has {len(records)} usable image(s); at least {options.min_images} are needed."
                + (f" Left out: {detail}" if detail else "")
            )
    return Groups(a, b, name_a, name_b, skipped)


def load_visdiff_groups(
    csv_path: str | Path, group_a: str, group_b: str, options: IngestOptions | None = None
) -> Groups:
    """Load the two named groups of a VisDiff CSV."""
    groups = read_visdiff_csv(csv_path)
    for name in (group_a, group_b):
        if name not in groups:
            raise IngestError(
                f"{csv_path}: no rows with group_name {name!r}; the groups are {', '.join(sorted(groups))}."
            )
    return load_groups(groups[group_a], groups[group_b], options, group_a, group_b)
