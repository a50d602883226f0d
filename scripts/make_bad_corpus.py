"""Write a corpus of small, deliberately awkward input files for the reliability tests.

Every file is synthetic (ramps, noise and made-up particle positions), so the corpus contains
no real data. Run ``python scripts/make_bad_corpus.py [FOLDER]`` to write it, by default to
``tests/data/bad/``, or import it and call ``write_corpus(folder)``. The tests in
``tests/bad_inputs/`` write it to a temporary folder once per session, so this script is
the only source of the files.

The constants below are the values a correct reader must recover from the files.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import struct
import sys
import tarfile
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "tests" / "data" / "bad"

# Tomograms with quirks: a (z, y, x) grid with three different sizes, so an axis mix-up shows.
QUIRK_SHAPE = (6, 8, 10)
QUIRK_VOXEL_SIZE = 7.5
IMOD_STAMP = 1146047817  # "DFGI", IMOD's stamp at byte 152
FLOAT16_OVERFLOW_VALUE = 70000.0  # over float16's largest finite value, 65504, so it becomes inf
FLOAT16_OVERFLOW_INDEX = (2, 3, 4)  # (z, y, x) of the overflowed voxel
DECLARED_EXTENDED_HEADER_BYTES = 2048

# The tomogram that the coordinate files refer to: 10 Å voxels, binned 4 times from 2.5 Å
# tilt-series pixels, 24 × 32 × 40 voxels (z, y, x).
PARTICLE_TOMOGRAM_SHAPE = (24, 32, 40)
PARTICLE_VOXEL_SIZE = 10.0
TILT_SERIES_PIXEL_SIZE = 2.5
BIN_FACTOR = 4
# x, y, z in binned tomogram voxels. The x values spread over more than the tomogram's depth,
# so a z, y, x mix-up is detectable.
PARTICLE_VOXELS = np.array(
    [
        [3, 4, 2], [6, 25, 5], [9, 10, 8], [12, 28, 11], [15, 6, 14], [18, 20, 17],
        [21, 14, 20], [24, 3, 6], [27, 27, 9], [30, 12, 12], [33, 22, 15], [36, 8, 18],
    ],
    dtype=np.float64,
)  # fmt: skip
PARTICLE_ANGSTROM = PARTICLE_VOXELS * PARTICLE_VOXEL_SIZE

VIDEO_CODED_SIZE = (64, 48)  # width, height as stored
VIDEO_FRAMES = 12
BOMB_IMAGE_SIDE = 100_000  # the decompression bomb declares 100000 × 100000 = 10^10 pixels
ZIP_BOMB_MEMBER_BYTES = 64 * 1024 * 1024
GRAY16_MAX = 4095  # 12-bit camera data in a 16-bit PNG


# --- tomograms ------------------------------------------------------------------------------


def _mrc_header(
    shape_zyx,
    mode: int,
    voxel_size: float,
    byte_order: str = "<",
    extended_bytes: int = 0,
    imod_flags: int | None = None,
    data: np.ndarray | None = None,
) -> bytes:
    """Build a 1024-byte MRC2014 header by hand, so every field can be set on purpose."""
    from mrcfile.dtypes import HEADER_DTYPE

    nz, ny, nx = shape_zyx
    header = np.zeros((), dtype=HEADER_DTYPE.newbyteorder(byte_order))
    header["nx"], header["ny"], header["nz"] = nx, ny, nz
    header["mode"] = mode
    header["mx"], header["my"], header["mz"] = nx, ny, nz
    header["cella"]["x"], header["cella"]["y"], header["cella"]["z"] = nx * voxel_size, ny * voxel_size, nz * voxel_size
    header["cellb"]["alpha"] = header["cellb"]["beta"] = header["cellb"]["gamma"] = 90.0
    header["mapc"], header["mapr"], header["maps"] = 1, 2, 3
    header["ispg"] = 1
    header["nsymbt"] = extended_bytes
    header["nversion"] = 20141
    header["map"] = b"MAP "
    stamp = b"\x11\x11\x00\x00" if byte_order == ">" else b"\x44\x44\x00\x00"
    header["machst"] = np.frombuffer(stamp, dtype=np.uint8)
    if data is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            values = data.astype(np.float64)
            header["dmin"], header["dmax"], header["dmean"] = values.min(), values.max(), values.mean()
    header["nlabl"] = 1
    header["label"][0] = b"Synthetic test volume written by make_bad_corpus.py"
    raw = bytearray(header.tobytes())
    if imod_flags is not None:
        raw[152:156] = struct.pack(byte_order + "i", IMOD_STAMP)
        raw[156:160] = struct.pack(byte_order + "i", imod_flags)
    assert len(raw) == 1024
    return bytes(raw)


def write_mrc(path: Path, data: np.ndarray, mode: int, voxel_size: float, **header_options) -> Path:
    byte_order = header_options.get("byte_order", "<")
    dtype = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}[mode]
    stored = np.ascontiguousarray(data, dtype=np.dtype(dtype).newbyteorder(byte_order))
    header = _mrc_header(data.shape, mode, voxel_size, data=data, **header_options)
    path.write_bytes(header + stored.tobytes())
    return path


def ramp_volume(shape=QUIRK_SHAPE) -> np.ndarray:
    """Return a float ramp whose value at (z, y, x) is 100 z + 10 y + x, so every voxel is distinct."""
    z, y, x = np.indices(shape, dtype=np.float64)
    return 100 * z + 10 * y + x


def imod_int8_values() -> np.ndarray:
    """Signed bytes from -128 upward, so negative values catch an unsigned read."""
    count = int(np.prod(QUIRK_SHAPE))
    return (np.arange(count) % 256 - 128).astype(np.int8).reshape(QUIRK_SHAPE)


def imod_uint8_values() -> np.ndarray:
    count = int(np.prod(QUIRK_SHAPE))
    return (np.arange(count) % 256).astype(np.uint8).reshape(QUIRK_SHAPE)


def float16_values() -> np.ndarray:
    values = (ramp_volume() / 10).astype(np.float16)
    with np.errstate(over="ignore"):
        values[FLOAT16_OVERFLOW_INDEX] = np.float16(FLOAT16_OVERFLOW_VALUE)
    return values


def write_tomograms(folder: Path) -> dict[str, Path]:
    files = {}
    # IMOD's flag bit 0 marks the bytes as signed.
    files["imod_signed_int8"] = write_mrc(
        folder / "imod_signed_int8.mrc", imod_int8_values(), 0, QUIRK_VOXEL_SIZE, imod_flags=1
    )
    # IMOD's stamp without the flag: older IMOD wrote unsigned bytes (0 to 255) in mode 0.
    unsigned = imod_uint8_values()
    path = folder / "imod_unsigned_int8.mrc"
    path.write_bytes(_mrc_header(QUIRK_SHAPE, 0, QUIRK_VOXEL_SIZE, imod_flags=0) + unsigned.tobytes())
    files["imod_unsigned_int8"] = path
    files["float16_inf"] = write_mrc(folder / "float16_inf.mrc", float16_values(), 12, QUIRK_VOXEL_SIZE)
    files["voxel_size_zero"] = write_mrc(folder / "voxel_size_zero.mrc", ramp_volume(), 2, 0.0)
    files["voxel_size_placeholder"] = write_mrc(folder / "voxel_size_placeholder.mrc", ramp_volume(), 2, 1.0)
    # The header declares an extended header, but the data follows the main header directly.
    path = folder / "extended_header_missing.mrc"
    data = ramp_volume().astype("<f4")
    header = _mrc_header(QUIRK_SHAPE, 2, QUIRK_VOXEL_SIZE, extended_bytes=DECLARED_EXTENDED_HEADER_BYTES, data=data)
    path.write_bytes(header + data.tobytes())
    files["extended_header_missing"] = path
    whole = _mrc_header(QUIRK_SHAPE, 2, QUIRK_VOXEL_SIZE, data=data) + data.tobytes()
    path = folder / "truncated.mrc"
    path.write_bytes(whole[: 1024 + data.nbytes // 2])
    files["truncated"] = path
    files["big_endian"] = write_mrc(folder / "big_endian.mrc", ramp_volume(), 2, QUIRK_VOXEL_SIZE, byte_order=">")
    files["little_endian_reference"] = write_mrc(
        folder / "little_endian_reference.mrc", ramp_volume(), 2, QUIRK_VOXEL_SIZE
    )
    return files


# --- coordinates ----------------------------------------------------------------------------


def particle_tomogram_values() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-20, 20, PARTICLE_TOMOGRAM_SHAPE).astype(np.int8)


def _star_loop(name: str, columns: dict[str, list]) -> str:
    lines = [f"data_{name}", "", "loop_"]
    lines += [f"_{column} #{index}" for index, column in enumerate(columns, start=1)]
    for row in zip(*columns.values(), strict=True):
        lines.append(" ".join(str(value) for value in row))
    return "\n".join(lines) + "\n\n"


def _relion4_star(pixels: np.ndarray, pixel_column: str, pixel_size: float) -> str:
    count = len(pixels)
    optics = _star_loop(
        "optics", {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], pixel_column: [pixel_size]}
    )
    particles = _star_loop(
        "particles",
        {
            "rlnTomoName": ["TS_01"] * count,
            "rlnCoordinateX": [f"{value:.3f}" for value in pixels[:, 0]],
            "rlnCoordinateY": [f"{value:.3f}" for value in pixels[:, 1]],
            "rlnCoordinateZ": [f"{value:.3f}" for value in pixels[:, 2]],
            "rlnOpticsGroup": [1] * count,
        },
    )
    return "# version 30001\n\n" + optics + particles


def relion5_centred_angstrom() -> np.ndarray:
    """RELION 5 positions: angstroms from the tomogram centre, which lies at size / 2 voxels."""
    depth, height, width = PARTICLE_TOMOGRAM_SHAPE
    centre = np.array([width, height, depth], dtype=np.float64) / 2 * PARTICLE_VOXEL_SIZE
    return PARTICLE_ANGSTROM - centre


def _relion5_star() -> str:
    centred = relion5_centred_angstrom()
    columns = {
        "rlnTomoName": ["TS_01"] * len(centred),
        "rlnCenteredCoordinateXAngst": [f"{value:.2f}" for value in centred[:, 0]],
        "rlnCenteredCoordinateYAngst": [f"{value:.2f}" for value in centred[:, 1]],
        "rlnCenteredCoordinateZAngst": [f"{value:.2f}" for value in centred[:, 2]],
    }
    return "# version 50001\n\n" + _star_loop("particles", columns)


def _portal_ndjson_zyx() -> str:
    """Return portal points whose "x" field contains z and whose "z" field contains x."""
    records = []
    for x, y, z in PARTICLE_VOXELS:
        location = {"x": float(z), "y": float(y), "z": float(x)}
        record = {"type": "orientedPoint", "location": location, "xyz_rotation_matrix": np.eye(3).tolist()}
        records.append(json.dumps(record) + "\n")
    return "".join(records)


def write_coordinates(folder: Path) -> dict[str, Path]:
    texts = {
        # RELION 4: rlnImagePixelSize is the pixel size of the (binned) coordinates.
        "particles_binned_pixels.star": _relion4_star(PARTICLE_VOXELS, "rlnImagePixelSize", PARTICLE_VOXEL_SIZE),
        # RELION 4 tomography: coordinates in unbinned tilt-series pixels.
        "particles_unbinned_pixels.star": _relion4_star(
            PARTICLE_VOXELS * BIN_FACTOR, "rlnTomoTiltSeriesPixelSize", TILT_SERIES_PIXEL_SIZE
        ),
        "particles_relion5_centred.star": _relion5_star(),
        # Binned voxels with no unit line: the reader must not guess.
        "particles_no_unit.csv": "x,y,z,class\n"
        + "".join(f"{x:g},{y:g},{z:g},ribosome\n" for x, y, z in PARTICLE_VOXELS),
        "portal_points_zyx.ndjson": _portal_ndjson_zyx(),
        # model2point output whose pixel values were multiplied by the pixel size once too often.
        "imod_points_scaled.txt": "".join(f"1 1 {x:.2f} {y:.2f} {z:.2f}\n" for x, y, z in PARTICLE_ANGSTROM),
    }
    tomogram = write_mrc(folder / "particle_tomogram.mrc", particle_tomogram_values(), 0, PARTICLE_VOXEL_SIZE)
    files = {"particle_tomogram": tomogram}
    for filename, text in texts.items():
        path = folder / filename
        path.write_text(text)
        files[path.stem] = path
    return files


# --- videos ---------------------------------------------------------------------------------


def video_frames(count: int = VIDEO_FRAMES) -> list[np.ndarray]:
    """Frames with a red band on the left edge, so the orientation after rotation is visible."""
    width, height = VIDEO_CODED_SIZE
    frames = []
    for index in range(count):
        image = np.full((height, width, 3), 40, dtype=np.uint8)
        image[:, :16] = (230, 40, 40)
        image[: height // 4, 16:] = 15 * index % 200
        frames.append(image)
    return frames


def write_video(path: Path, frames, pix_fmt="yuv420p", rotation=None, rate=10, options=None) -> Path:
    import av

    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=rate)
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        # One thread and fixed settings keep the encoded bytes the same from run to run.
        stream.codec_context.options = {"threads": "1"}
        stream.time_base = Fraction(1, rate)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_videos(folder: Path) -> dict[str, Path]:
    files = {}
    files["rotated_90"] = write_video(folder / "rotated_90.mp4", video_frames(), rotation=90)
    files["rotated_270"] = write_video(folder / "rotated_270.mp4", video_frames(), rotation=270)
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    files["empty_video"] = path
    # The index (moov box) is written at the end, so cutting the file loses it.
    whole = write_video(folder / "whole.mp4", video_frames(40))
    data = whole.read_bytes()
    whole.unlink()
    path = folder / "truncated_no_index.mp4"
    path.write_bytes(data[: len(data) // 2])
    files["truncated_no_index"] = path
    files["ten_bit"] = write_video(folder / "ten_bit.mp4", video_frames(), pix_fmt="yuv420p10le")
    return files


# --- images and archives --------------------------------------------------------------------


def gray16_values() -> np.ndarray:
    ramp = np.linspace(0, GRAY16_MAX, 32 * 24).reshape(24, 32)
    return np.round(ramp).astype(np.uint16)


def png_bomb_bytes(side: int = BOMB_IMAGE_SIDE) -> bytes:
    """Return a PNG whose header declares side × side gray pixels, followed by a few bytes of data.

    Its header is valid, so only a pixel count check before decoding can reject it cheaply.
    """
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 4)  # the first four rows only
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def small_png_bytes(color=(30, 160, 90)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _member(name: str, compression: int = zipfile.ZIP_STORED) -> zipfile.ZipInfo:
    """Return a ZIP entry with a fixed date, so the archive's bytes are the same on every run."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    info.compress_type = compression
    return info


def write_images(folder: Path) -> dict[str, Path]:
    from PIL import Image

    files = {}
    path = folder / "gray16.png"
    Image.fromarray(gray16_values()).save(path)
    files["gray16"] = path
    rgba = np.zeros((24, 32, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent: flattened onto the white background
    rgba[:, 16:, 3] = 255  # the right half is opaque red
    path = folder / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    files["alpha"] = path
    palette = Image.new("P", (32, 24), 1)
    palette.putpalette([0, 0, 0, 10, 120, 250] + [0, 0, 0] * 254)
    path = folder / "palette.png"
    palette.save(path)
    files["palette"] = path
    path = folder / "cmyk.jpg"
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    files["cmyk"] = path
    path = folder / "bomb.png"
    path.write_bytes(png_bomb_bytes())
    files["bomb"] = path
    path = folder / "traversal.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(_member("ok.png"), small_png_bytes())
        archive.writestr(_member("../escaped.png"), small_png_bytes((200, 30, 30)))
        archive.writestr(_member("images/../../escaped_too.png"), small_png_bytes((30, 30, 200)))
    files["traversal_zip"] = path
    path = folder / "traversal.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, color in (("ok.png", (30, 160, 90)), ("../escaped.png", (200, 30, 30))):
            data = small_png_bytes(color)
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1704067200  # a fixed date keeps the bytes the same
            archive.addfile(info, io.BytesIO(data))
    files["traversal_tar"] = path
    path = folder / "tar_bomb.tar.gz"
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            info = tarfile.TarInfo("zeros.tif")
            info.size, info.mtime = ZIP_BOMB_MEMBER_BYTES, 1704067200
            archive.addfile(info, io.BytesIO(bytes(ZIP_BOMB_MEMBER_BYTES)))
    files["tar_bomb"] = path
    path = folder / "zip_bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(_member("ok.png"), small_png_bytes())
        with archive.open(_member("zeros.tif", zipfile.ZIP_DEFLATED), "w", force_zip64=False) as member:
            block = bytes(1024 * 1024)
            for _ in range(ZIP_BOMB_MEMBER_BYTES // len(block)):
                member.write(block)
    files["zip_bomb"] = path
    return files


def write_corpus(folder: str | Path = DEFAULT_FOLDER) -> dict[str, Path]:
    """Write every corpus file into ``folder`` and return the paths by case name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for writer in (write_tomograms, write_coordinates, write_videos, write_images):
        files.update(writer(folder))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="output folder")
    args = parser.parse_args(argv)
    files = write_corpus(args.folder)
    total = sum(path.stat().st_size for path in files.values())
    for name, path in sorted(files.items()):
        print(f"{path.stat().st_size:>9}  {name}: {path.name}")
    print(f"Wrote {len(files)} files, {total} bytes, to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
