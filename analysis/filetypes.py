"""Identify files by their content and check the content against the file's extension.

Detection reads magic bytes and header structure, never libmagic and never the extension
alone. ``identify`` then checks the extension against the detected type, so a PNG named
``scan.mrc`` is rejected instead of being stored as a volume. ``inspect_file`` adds the
header metadata that ``analysis.file_metadata`` reads.

Every rejection raises ``FileCheckError``. Its message names the file, the problem and
the fix. This module is plain Python: it takes paths and returns plain data, so it works
from a notebook as well as from the web app.
"""

from __future__ import annotations

import codecs
import struct
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 64 * 1024
MRC_HEADER_BYTES = 1024
# MRC2014 data modes and their bytes per voxel; mode 101 packs two 4-bit voxels per byte.
MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}
MRC_MAX_DIMENSION = 1 << 24
# An archive member that expands more than ARCHIVE_MAX_RATIO times and to more than
# ARCHIVE_RATIO_MIN_BYTES is rejected as a decompression bomb. Both limits are estimates:
# image and video data rarely compress 100:1, and below the byte floor a high ratio is harmless.
ARCHIVE_MAX_RATIO = 100
ARCHIVE_RATIO_MIN_BYTES = 16 * 1024 * 1024


class Kind:
    """Broad file categories; the values match the web app's DataFile.Kind choices."""

    IMAGE = "image"
    VIDEO = "video"
    VOLUME = "volume"
    TABLE = "table"
    ARCHIVE = "archive"
    OTHER = "other"


@dataclass(frozen=True)
class FileType:
    name: str
    label: str
    kind: str
    content_type: str
    extensions: tuple[str, ...] = ()

    def content_type_for(self, extension: str) -> str:
        """Return the media type for a file of this type that carries ``extension``."""
        return _CONTENT_TYPE_BY_EXTENSION.get(extension, self.content_type)


class FileCheckError(ValueError):
    """A rejected file. The message names the file, the problem and the fix.

    ``code`` is a short machine-readable reason: ``type_mismatch``, ``unreadable``,
    ``truncated``, ``too_many_pixels``, ``invalid_text`` or ``unsafe``.
    """

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.code = code


PNG = FileType("png", "PNG image", Kind.IMAGE, "image/png", (".png",))
JPEG = FileType("jpeg", "JPEG image", Kind.IMAGE, "image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif"))
TIFF = FileType(
    "tiff", "TIFF image", Kind.IMAGE, "image/tiff", (".tif", ".tiff", ".btf", ".tf8", ".eer", ".svs", ".ndpi")
)
GIF = FileType("gif", "GIF image", Kind.IMAGE, "image/gif", (".gif",))
BMP = FileType("bmp", "BMP image", Kind.IMAGE, "image/bmp", (".bmp", ".dib"))
WEBP = FileType("webp", "WebP image", Kind.IMAGE, "image/webp", (".webp",))
DICOM = FileType("dicom", "DICOM file", Kind.IMAGE, "application/dicom", (".dcm", ".dicom"))
MP4 = FileType("mp4", "MP4/QuickTime video", Kind.VIDEO, "video/mp4", (".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2"))
AVI = FileType("avi", "AVI video", Kind.VIDEO, "video/x-msvideo", (".avi",))
MATROSKA = FileType("matroska", "Matroska/WebM video", Kind.VIDEO, "video/x-matroska", (".mkv", ".webm"))
MRC = FileType(
    "mrc",
    "MRC volume",
    Kind.VOLUME,
    "application/octet-stream",
    (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".preali", ".ccp4"),
)
NPY = FileType("npy", "NumPy array", Kind.OTHER, "application/octet-stream", (".npy",))
NPZ = FileType("npz", "NumPy array archive", Kind.OTHER, "application/zip", (".npz",))
HDF5 = FileType("hdf5", "HDF5 file", Kind.OTHER, "application/x-hdf5", (".h5", ".hdf5", ".hdf", ".he5", ".ims"))
ZIP = FileType("zip", "ZIP archive", Kind.ARCHIVE, "application/zip", (".zip",))
GZIP = FileType("gzip", "gzip archive", Kind.ARCHIVE, "application/gzip", (".gz", ".tgz"))
TAR = FileType("tar", "tar archive", Kind.ARCHIVE, "application/x-tar", (".tar",))
CSV = FileType("csv", "CSV table", Kind.TABLE, "text/csv", (".csv",))
TSV = FileType("tsv", "TSV table", Kind.TABLE, "text/tab-separated-values", (".tsv", ".tab"))
STAR = FileType("star", "STAR file", Kind.TABLE, "text/plain", (".star",))
JSON = FileType("json", "JSON document", Kind.TABLE, "application/json", (".json",))
# One JSON object a line, as the CryoET Data Portal stores point annotations.
NDJSON = FileType("ndjson", "NDJSON document", Kind.TABLE, "application/x-ndjson", (".ndjson", ".jsonl"))
# Rows of 3 to 5 numbers (``x y z``, optionally after object and contour numbers), as IMOD's
# model2point writes them. A .txt file is this type only when its content has that shape.
POINT_LIST = FileType("point_list", "point list (IMOD model2point text)", Kind.TABLE, "text/plain", (".pts",))
PLAIN_TEXT = FileType(
    "text", "plain text", Kind.OTHER, "text/plain", (".txt", ".text", ".log", ".md", ".tlt", ".rawtlt", ".xf")
)
# Content that no detector recognises; accepted only under an extension no known type claims.
BINARY = FileType("binary", "binary data", Kind.OTHER, "application/octet-stream")

KNOWN_TYPES: tuple[FileType, ...] = (
    PNG, JPEG, TIFF, GIF, BMP, WEBP, DICOM, MP4, AVI, MATROSKA, MRC, NPY, NPZ, HDF5, ZIP, GZIP, TAR,
    CSV, TSV, STAR, JSON, NDJSON, POINT_LIST, PLAIN_TEXT,
)  # fmt: skip
TEXT_TYPES = (CSV, TSV, STAR, JSON, NDJSON, POINT_LIST, PLAIN_TEXT)
POINT_LIST_MAX_COLUMNS = 5
_CONTENT_TYPE_BY_EXTENSION = {
    ".mov": "video/quicktime",
    ".qt": "video/quicktime",
    ".3gp": "video/3gpp",
    ".3g2": "video/3gpp2",
    ".webm": "video/webm",
}
# ISO base media brands of still images (HEIF, AVIF); these are not videos.
_STILL_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}


def types_for_extension(extension: str) -> list[FileType]:
    """Return the known types that list ``extension`` (lowercase, with the dot)."""
    return [file_type for file_type in KNOWN_TYPES if extension in file_type.extensions]


def file_extension(filename: str) -> str:
    """Return the lowercase last suffix of ``filename`` with its dot, or '' when it has none."""
    suffix = Path(filename).suffix.lower()
    return suffix if len(suffix) > 1 else ""


# --- Detection from content -------------------------------------------------------------


def sniff(path: str | Path) -> FileType | None:
    """Detect a file's type from its content.

    Returns one of the binary types, ``PLAIN_TEXT`` for any UTF-8 text (``identify`` picks
    CSV, STAR and so on by extension), or None for content no detector recognises.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    detected = _sniff_binary(head, size, path)
    if detected is not None:
        return detected
    if _looks_like_text(head):
        return PLAIN_TEXT
    return None


def _sniff_binary(head: bytes, size: int, path: Path) -> FileType | None:
    # Images
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[:4] in (b"II+\x00", b"MM\x00+") and len(head) >= 8:
        # BigTIFF: the offset byte size at bytes 4-5 is always 8.
        byte_size = struct.unpack("<H" if head[:2] == b"II" else ">H", head[4:6])[0]
        return TIFF if byte_size == 8 else None
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:2] == b"BM" and _is_bmp(head):
        return BMP
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM

    # Videos
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return AVI
    if head[4:8] == b"ftyp":
        return None if head[8:12] in _STILL_IMAGE_BRANDS else MP4
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return MATROSKA

    # Arrays and archives
    if head.startswith(b"\x93NUMPY"):
        return NPY
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return HDF5
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return NPZ if _is_npz(path) else ZIP
    if head[:2] == b"\x1f\x8b":
        return GZIP
    if len(head) >= 262 and head[257:262] == b"ustar":
        return TAR

    # MRC has no magic number at offset 0, so it is checked last, by header structure.
    if mrc_header_problem(head, size) is None:
        return MRC
    return None


def _is_bmp(head: bytes) -> bool:
    if len(head) < 18:
        return False
    dib_header_size = struct.unpack("<I", head[14:18])[0]
    return dib_header_size in (12, 40, 52, 56, 64, 108, 124)


def _is_npz(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def _looks_like_text(head: bytes) -> bool:
    """Return whether ``head`` is UTF-8 text without NUL or other binary control characters."""
    if not head:
        return False
    try:
        # A multi-byte character may be cut at the end of the head; the final=False decode allows that.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    allowed = {"\t", "\n", "\r", "\f", "\v", "\x1b"}
    return not any(ord(char) < 32 and char not in allowed for char in text)


def mrc_header_problem(head: bytes, file_size: int) -> str | None:
    """Return why ``head`` is not a plausible MRC header, or None when it is one.

    With the MRC2014 ``MAP `` identifier at byte 208, valid dimensions and mode suffice.
    Older MRC variants lack the identifier, which is the format's only strong signature,
    so for them the file size must also equal the size that the header implies.
    """
    if len(head) < MRC_HEADER_BYTES:
        return f"it has {len(head)} bytes, fewer than the {MRC_HEADER_BYTES}-byte MRC header"
    has_map_id = head[208:212] == b"MAP "
    problems = []
    for order in _mrc_byte_orders(head):
        nx, ny, nz, mode = struct.unpack(order + "4i", head[:16])
        nsymbt = struct.unpack(order + "i", head[92:96])[0]
        problem = mrc_dimension_problem(nx, ny, nz, mode, nsymbt)
        if problem is None and not has_map_id:
            expected = MRC_HEADER_BYTES + nsymbt + mrc_data_bytes(nx, ny, nz, mode)
            if expected != file_size:
                problem = (
                    f"there is no 'MAP ' identifier at byte 208 and the file size ({file_size} bytes) does not match "
                    f"the {expected} bytes that its header implies"
                )
        if problem is None:
            return None
        problems.append(problem)
    return problems[0]


def _mrc_byte_orders(head: bytes) -> list[str]:
    stamp = head[212:214]
    if stamp in (b"\x44\x44", b"\x44\x41"):
        return ["<"]
    if stamp == b"\x11\x11":
        return [">"]
    return ["<", ">"]  # Older writers leave the machine stamp empty.


def mrc_dimension_problem(nx: int, ny: int, nz: int, mode: int, nsymbt: int) -> str | None:
    if min(nx, ny, nz) <= 0 or max(nx, ny, nz) > MRC_MAX_DIMENSION:
        return f"the header dimensions nx={nx}, ny={ny}, nz={nz} are not positive numbers below {MRC_MAX_DIMENSION}"
    if mode not in MRC_MODE_BYTES:
        known = ", ".join(str(known_mode) for known_mode in MRC_MODE_BYTES)
        return f"the header's data mode {mode} is not one of the MRC modes {known}"
    if nsymbt < 0:
        return f"the extended header size {nsymbt} is negative"
    return None


def mrc_data_bytes(nx: int, ny: int, nz: int, mode: int) -> int:
    """Return the size in bytes of an MRC data block; mode 101 pads each row to whole bytes."""
    if mode == 101:
        return (nx + 1) // 2 * ny * nz
    return int(nx * ny * nz * MRC_MODE_BYTES[mode])


# --- Type resolution: content against extension -------------------------------------------


def identify(path: str | Path, filename: str) -> FileType:
    """Return the type of the file at ``path`` whose display name is ``filename``.

    The content decides the type. The extension must belong to that type, except that an
    extension no known type claims (or no extension) is accepted for any content.
    Raises FileCheckError when the content contradicts the extension.
    """
    extension = file_extension(filename)
    claimed = types_for_extension(extension)
    detected = sniff(path)

    if detected is PLAIN_TEXT:
        return _resolve_text(path, filename, extension, claimed)
    if detected is not None:
        if extension in detected.extensions or not claimed:
            return detected
        raise FileCheckError(_mismatch_message(filename, detected, extension, claimed[0]), "type_mismatch")
    if not claimed:
        return BINARY
    raise FileCheckError(_unrecognised_message(path, filename, extension, claimed[0]), "type_mismatch")


def _resolve_text(path: Path, filename: str, extension: str, claimed: list[FileType]) -> FileType:
    text_types = [file_type for file_type in claimed if file_type in TEXT_TYPES]
    if text_types == [PLAIN_TEXT] and extension == ".txt" and _looks_like_point_list(path):
        return POINT_LIST
    if text_types:
        return text_types[0]
    if claimed:
        raise FileCheckError(_mismatch_message(filename, PLAIN_TEXT, extension, claimed[0]), "type_mismatch")
    return PLAIN_TEXT


def _looks_like_point_list(path: Path) -> bool:
    """Return whether the first lines of a text file are all rows of 3 to 5 numbers."""
    with Path(path).open("rb") as handle:
        head = handle.read(HEAD_BYTES)
        complete = handle.read(1) == b""
    lines = head.decode("utf-8", "replace").splitlines()
    if not complete and lines:
        lines = lines[:-1]  # the last line may be cut at HEAD_BYTES
    rows = [line.split() for line in lines if line.strip()]
    if not rows:
        return False
    for fields in rows:
        if not 3 <= len(fields) <= POINT_LIST_MAX_COLUMNS:
            return False
        try:
            [float(value) for value in fields]
        except ValueError:
            return False
    return True


def _mismatch_message(filename: str, detected: FileType, extension: str, claimed: FileType) -> str:
    if detected in TEXT_TYPES and claimed not in TEXT_TYPES:
        # Renaming cannot turn text into binary data, so the advice is to pick the real file.
        return (
            f"{filename}: the content is text ({detected.label}), but the extension {extension} is for "
            f"{claimed.label} files. Text cannot be read as {claimed.label} data, so upload the {claimed.label} "
            "file itself. Renaming this file will not help."
        )
    if detected.extensions:
        fix = f"Rename the file to end in {detected.extensions[0]}"
    else:
        fix = "Rename the file"
    return (
        f"{filename}: the content is {detected.label} data, but the extension {extension} is for {claimed.label} "
        f"files. {fix}, or check that you picked the right file."
    )


def _unrecognised_message(path: Path, filename: str, extension: str, claimed: FileType) -> str:
    reason = ""
    if claimed is MRC:
        with Path(path).open("rb") as handle:
            head = handle.read(MRC_HEADER_BYTES)
        reason = f": {mrc_header_problem(head, Path(path).stat().st_size)}"
    elif claimed in TEXT_TYPES:
        reason = ": it is not UTF-8 text, so save it as UTF-8"
    return (
        f"{filename}: the extension {extension} is for {claimed.label} files, but the content is not in that "
        f"format{reason}. Check that the file is complete and in the format its name says, then upload it again."
    )


@dataclass(frozen=True)
class Inspection:
    file_type: FileType
    content_type: str
    metadata: dict


def inspect_file(path: str | Path, filename: str, *, max_image_pixels: int) -> Inspection:
    """Identify a file by content, check its extension and read its metadata.

    ``filename`` is the display name: its extension is checked and it appears in error
    messages. Raises FileCheckError when the file is rejected.
    """
    from analysis.file_metadata import read_metadata

    file_type = identify(path, filename)
    metadata = read_metadata(path, file_type, filename, max_image_pixels=max_image_pixels)
    return Inspection(file_type, file_type.content_type_for(file_extension(filename)), metadata)


# --- Archive members ------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveMember:
    """One file in an archive: its stored name and its sizes in bytes."""

    name: str
    size: int
    compressed_size: int


def zip_members(entries: Iterable[zipfile.ZipInfo]) -> list[ArchiveMember]:
    return [ArchiveMember(info.filename, info.file_size, info.compress_size) for info in entries]


def tar_members(entries: Iterable[tarfile.TarInfo]) -> list[ArchiveMember]:
    """Describe tar members, each uncompressed. A link is listed a second time under its target."""
    members = []
    for info in entries:
        members.append(ArchiveMember(info.name, info.size, info.size))
        if info.issym() or info.islnk():
            members.append(ArchiveMember(info.linkname, 0, 0))
    return members


def unsafe_member_name(name: str) -> bool:
    """Return whether an archive member name is absolute or climbs out of the archive with ``..``."""
    normalised = name.replace("\\", "/")
    absolute = normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":")
    return absolute or ".." in normalised.split("/")


def check_archive_members(filename: str, members: Iterable[ArchiveMember], archive_bytes: int | None = None) -> None:
    """Reject an archive whose member names or sizes are unsafe, before any member is extracted.

    Raises FileCheckError (code ``unsafe``) for a member named with an absolute path or a
    ``..`` component, and for a member whose expansion ratio marks a decompression bomb.
    With ``archive_bytes``, the size of the whole archive file, the members' total size is
    checked against it the same way, for compressed tar files whose members have no
    compressed size of their own.
    """
    members = list(members)
    for member in members:
        if unsafe_member_name(member.name):
            raise FileCheckError(
                f"{filename}: the archive member {member.name!r} has an absolute path or a '..' component, "
                "so extracting it would write outside the target folder. Recreate the archive with relative "
                "paths inside one folder.",
                "unsafe",
            )
        ratio = member.size / max(member.compressed_size, 1)
        if member.size > ARCHIVE_RATIO_MIN_BYTES and ratio > ARCHIVE_MAX_RATIO:
            raise FileCheckError(
                f"{filename}: the archive member {member.name!r} expands from {member.compressed_size} to "
                f"{member.size} bytes, a ratio of {ratio:.0f} to 1, over the limit of {ARCHIVE_MAX_RATIO} to 1 "
                "that protects the server from decompression bombs. Upload the files without the archive.",
                "unsafe",
            )
    if archive_bytes is not None:
        check_expansion(filename, archive_bytes, sum(member.size for member in members))


def check_expansion(filename: str, archive_bytes: int, expanded_bytes: int) -> None:
    """Reject a whole archive that expands from ``archive_bytes`` to ``expanded_bytes`` like a decompression bomb."""
    ratio = expanded_bytes / max(archive_bytes, 1)
    if expanded_bytes > ARCHIVE_RATIO_MIN_BYTES and ratio > ARCHIVE_MAX_RATIO:
        raise FileCheckError(
            f"{filename}: the archive expands from {archive_bytes} to {expanded_bytes} bytes, a ratio of "
            f"{ratio:.0f} to 1, over the limit of {ARCHIVE_MAX_RATIO} to 1 that protects the server from "
            "decompression bombs. Upload the files without the archive.",
            "unsafe",
        )
