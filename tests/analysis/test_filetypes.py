"""Content sniffing, extension checks and metadata readers, on small files made in each test."""

import gzip
import io
import json
import struct
import tarfile
import zipfile
import zlib
from fractions import Fraction

import av
import mrcfile
import numpy as np
import pytest
import tifffile
from PIL import Image

from analysis import file_metadata, filetypes
from analysis.filetypes import FileCheckError, identify, inspect_file, sniff

LIMIT = 100_000_000


def inspect(path, name=None, limit=LIMIT):
    return inspect_file(path, name or path.name, max_image_pixels=limit)


def write_image(path, size=(32, 24), mode="RGB", **save_options):
    Image.new(mode, size, color=7 if mode in ("L", "1", "P") else (10, 20, 30)).save(path, **save_options)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_png(path, width, height):
    """A well-formed PNG whose header claims ``width`` × ``height`` but whose data is tiny."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00")) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def write_mrc(path, data, voxel_size=None):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if voxel_size is not None:
            mrc.voxel_size = voxel_size
    return path


def write_video(path, codec, frames=6, size=(64, 48), rotation=None, container_format=None):
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(25, 1))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(frames):
            array = np.full((size[1], size[0], 3), index * 20 % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --- Images -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "save_options", "expected_type", "expected_format"),
    [
        ("a.png", {}, "png", "PNG"),
        ("a.jpg", {}, "jpeg", "JPEG"),
        ("a.gif", {}, "gif", "GIF"),
        ("a.bmp", {}, "bmp", "BMP"),
        ("a.webp", {}, "webp", "WEBP"),
    ],
)
def test_pillow_images(tmp_path, name, save_options, expected_type, expected_format):
    path = write_image(tmp_path / name, **save_options)
    result = inspect(path)
    assert result.file_type.name == expected_type
    assert result.file_type.kind == "image"
    assert result.metadata["format"] == expected_format
    assert result.metadata["width"] == 32
    assert result.metadata["height"] == 24
    assert result.metadata["frames"] == 1
    assert result.metadata["mode"] == "RGB" or expected_type == "gif"


def test_multi_frame_gif_counts_frames(tmp_path):
    frames = [Image.new("L", (16, 16), color=value) for value in (0, 90, 180)]
    path = tmp_path / "movie.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert inspect(path).metadata["frames"] == 3


def test_jpeg_exif_orientation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write_image(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert inspect(path).metadata["exif_orientation"] == 6


def test_tiff_stack_and_bigtiff(tmp_path):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((5, 20, 30), np.uint16), photometric="minisblack")
    metadata = inspect(stack).metadata
    assert metadata["width"] == 30
    assert metadata["height"] == 20
    assert metadata["frames"] == 5
    assert metadata["dtype"] == "uint16"
    assert metadata["bigtiff"] is False

    big = tmp_path / "big.tiff"
    tifffile.imwrite(big, np.zeros((8, 9), np.float32), bigtiff=True)
    assert big.read_bytes()[:4] == b"II+\x00"
    result = inspect(big)
    assert result.file_type.name == "tiff"
    assert result.metadata["bigtiff"] is True
    assert result.metadata["dtype"] == "float32"


def test_image_over_pixel_limit_rejected(tmp_path):
    path = write_image(tmp_path / "a.png", size=(100, 100))
    with pytest.raises(FileCheckError) as error:
        inspect(path, limit=9_999)
    assert error.value.code == "too_many_pixels"
    assert "a.png" in str(error.value)
    assert "100 × 100" in str(error.value)


def test_decompression_bomb_header_rejected(tmp_path):
    # 100000 × 100000 one-bit pixels in a file of a few dozen bytes.
    path = crafted_png(tmp_path / "bomb.png", 100_000, 100_000)
    assert path.stat().st_size < 100
    with pytest.raises(FileCheckError) as error:
        inspect(path, limit=400_000_000)
    assert error.value.code == "too_many_pixels"


def test_pixel_limit_above_pillow_default_honoured(tmp_path):
    # 15000² = 225 M pixels: above twice Pillow's default limit, below the configured one.
    path = crafted_png(tmp_path / "large.png", 15_000, 15_000)
    saved_limit = Image.MAX_IMAGE_PIXELS
    metadata = inspect(path, limit=400_000_000).metadata
    assert metadata["width"] == 15_000
    assert Image.MAX_IMAGE_PIXELS == saved_limit


def test_truncated_png_rejected(tmp_path):
    path = write_image(tmp_path / "cut.png", size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert error.value.code == "unreadable"
    assert "cut.png" in str(error.value)


# --- Videos -----------------------------------------------------------------------------


def test_mp4_metadata_with_rotation(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "libx264", frames=10, rotation=90)
    result = inspect(path)
    metadata = result.metadata
    assert result.file_type.name == "mp4"
    assert result.file_type.kind == "video"
    assert result.content_type == "video/mp4"
    assert metadata["codec"] == "h264"
    assert (metadata["width"], metadata["height"]) == (64, 48)
    assert metadata["frame_rate"] == 25.0
    assert metadata["frame_count"] == 10
    assert metadata["duration_seconds"] == pytest.approx(0.4, abs=0.05)
    assert metadata["rotation_degrees"] == 90
    assert metadata["rotation_source"] == "display_matrix"


def test_mp4_without_rotation(tmp_path):
    path = write_video(tmp_path / "plain.mov", "libx264", frames=4)
    result = inspect(path)
    assert result.content_type == "video/quicktime"
    assert result.metadata["rotation_degrees"] == 0
    assert result.metadata["rotation_source"] is None


def test_matroska_frames_counted_from_packets(tmp_path):
    path = write_video(tmp_path / "clip.webm", "libvpx", frames=7, container_format="webm")
    result = inspect(path)
    assert result.file_type.name == "matroska"
    assert result.content_type == "video/webm"
    assert result.metadata["codec"] == "vp8"
    assert result.metadata["frame_count"] == 7
    assert result.metadata["frame_count_source"] in ("header", "packets")


def test_avi_detected(tmp_path):
    path = write_video(tmp_path / "clip.avi", "mpeg4", frames=5)
    result = inspect(path)
    assert result.file_type.name == "avi"
    assert result.metadata["frame_count"] == 5


def test_video_over_pixel_limit_rejected(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "libx264", frames=2)
    with pytest.raises(FileCheckError) as error:
        inspect(path, limit=1000)
    assert error.value.code == "too_many_pixels"


def test_truncated_video_rejected(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "libx264", frames=4)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert "clip.mp4" in str(error.value)


# --- MRC volumes --------------------------------------------------------------------------


def test_mrc_metadata(tmp_path):
    path = write_mrc(tmp_path / "tomo.mrc", np.zeros((4, 5, 6), np.float32), voxel_size=(2.5, 2.5, 3.0))
    result = inspect(path)
    metadata = result.metadata
    assert result.file_type.name == "mrc"
    assert result.file_type.kind == "volume"
    assert metadata["shape"] == [4, 5, 6]
    assert metadata["mode"] == 2
    assert metadata["voxel_size_angstrom"] == {"x": 2.5, "y": 2.5, "z": 3.0}
    assert metadata["mrc2014"] is True
    assert metadata["warnings"] == []
    json.dumps(metadata)


@pytest.mark.parametrize(("voxel_size", "phrase"), [(None, "is 0 (not set)"), (1.0, "placeholder")])
def test_mrc_unset_voxel_size_warns(tmp_path, voxel_size, phrase):
    path = write_mrc(tmp_path / "v.mrc", np.zeros((2, 3, 4), np.int8), voxel_size=voxel_size)
    metadata = inspect(path).metadata
    assert metadata["voxel_size_angstrom"] is None
    assert any(phrase in warning for warning in metadata["warnings"])


@pytest.mark.parametrize("extension", [".mrcs", ".map", ".rec", ".st", ".ali"])
def test_mrc_extensions_accepted(tmp_path, extension):
    path = write_mrc(tmp_path / f"v{extension}", np.zeros((2, 3, 4), np.int16), voxel_size=4.0)
    assert inspect(path).metadata["mode"] == 1


def test_truncated_mrc_rejected(tmp_path):
    path = write_mrc(tmp_path / "cut.mrc", np.zeros((4, 5, 6), np.float32), voxel_size=2.0)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert error.value.code == "truncated"
    assert "cut.mrc" in str(error.value)


def test_mrc_without_map_id_needs_exact_size(tmp_path):
    path = write_mrc(tmp_path / "old.mrc", np.zeros((3, 4, 5), np.float32), voxel_size=3.0)
    data = bytearray(path.read_bytes())
    data[208:212] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(data))
    metadata = inspect(path).metadata
    assert metadata["mrc2014"] is False
    assert any("MAP" in warning for warning in metadata["warnings"])

    path.write_bytes(bytes(data) + b"\x00" * 8)
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert error.value.code == "type_mismatch"
    assert "does not match" in str(error.value)


def test_text_named_mrc_not_told_to_rename(tmp_path):
    path = tmp_path / "scan.mrc"
    path.write_text("this is not a tomogram\n")
    with pytest.raises(FileCheckError) as error:
        identify(path, "scan.mrc")
    message = str(error.value)
    assert error.value.code == "type_mismatch"
    assert "Rename the file to end in .txt" not in message
    assert "upload the MRC volume file itself" in message


def test_mrc_invalid_mode_named_in_error(tmp_path):
    path = write_mrc(tmp_path / "bad.mrc", np.zeros((2, 3, 4), np.float32))
    data = bytearray(path.read_bytes())
    data[12:16] = struct.pack("<i", 9)
    path.write_bytes(bytes(data))
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert "mode 9" in str(error.value)


def test_big_endian_mrc_detected(tmp_path):
    header = bytearray(1024)
    header[0:16] = struct.pack(">4i", 4, 3, 2, 2)
    header[208:212] = b"MAP "
    header[212:214] = b"\x11\x11"
    path = tmp_path / "be.mrc"
    path.write_bytes(bytes(header) + b"\x00" * (4 * 3 * 2 * 4))
    assert sniff(path) is filetypes.MRC


# --- Content against extension -------------------------------------------------------------


def test_png_named_mrc_rejected(tmp_path):
    path = write_image(tmp_path / "scan.mrc", format="PNG")
    with pytest.raises(FileCheckError) as error:
        identify(path, "scan.mrc")
    message = str(error.value)
    assert error.value.code == "type_mismatch"
    assert "scan.mrc" in message
    assert "PNG" in message
    assert ".mrc" in message
    assert ".png" in message


def test_text_named_png_rejected(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just some notes\n")
    with pytest.raises(FileCheckError) as error:
        identify(path, "notes.png")
    assert "text" in str(error.value)


def test_binary_named_csv_rejected(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FileCheckError) as error:
        identify(path, "table.csv")
    assert "UTF-8" in str(error.value)


def test_unknown_binary_accepted_under_unclaimed_extension(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(bytes(range(256)) * 4)
    result = inspect(path)
    assert result.file_type is filetypes.BINARY
    assert result.file_type.kind == "other"
    assert result.content_type == "application/octet-stream"


def test_png_without_extension_accepted(tmp_path):
    path = write_image(tmp_path / "image_no_suffix", format="PNG")
    assert identify(path, "image_no_suffix") is filetypes.PNG


# --- Other binary formats ----------------------------------------------------------------------


def test_dicom_detected(tmp_path):
    path = tmp_path / "slice.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\x00\x00\x00\x00")
    result = inspect(path)
    assert result.file_type.name == "dicom"
    assert result.file_type.kind == "image"


def test_npy_metadata(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((3, 4), np.float32))
    result = inspect(path)
    assert result.file_type.name == "npy"
    assert result.metadata == {"shape": [3, 4], "dtype": "float32", "fortran_order": False}


def test_npy_object_array_rejected(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert error.value.code == "unsafe"


def test_npy_truncated_rejected(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((30, 40), np.float64))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert error.value.code == "truncated"


def test_npz_lists_arrays(tmp_path):
    path = tmp_path / "arrays.npz"
    np.savez(path, coords=np.zeros((10, 3)), labels=np.zeros(10, np.int32))
    result = inspect(path)
    assert result.file_type.name == "npz"
    assert result.metadata["arrays"]["coords"] == {"shape": [10, 3], "dtype": "float64"}
    assert result.metadata["arrays"]["labels"]["dtype"] == "int32"


def test_zip_gzip_tar_archives(tmp_path):
    zip_path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("a.txt", "hello")
        archive.writestr("b.txt", "world!")
    result = inspect(zip_path)
    assert result.file_type.kind == "archive"
    assert result.metadata == {"entries": 2, "uncompressed_bytes": 11}

    gz_path = tmp_path / "tomo.mrc.gz"
    gz_path.write_bytes(gzip.compress(b"x" * 100))
    assert inspect(gz_path).file_type.name == "gzip"

    tar_path = tmp_path / "bundle.tar"
    with tarfile.open(tar_path, "w") as archive:
        info = tarfile.TarInfo("a.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    assert inspect(tar_path).file_type.name == "tar"


def test_hdf5_signature_detected(tmp_path):
    path = tmp_path / "data.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    assert inspect(path).file_type.name == "hdf5"


# --- Text tables -------------------------------------------------------------------------------


def test_csv_columns_and_rows(tmp_path):
    path = tmp_path / "cells.csv"
    path.write_text('id,"area, um2",label\n1,3.5,a\n2,4.0,b\n\n3,1.0,c\n', encoding="utf-8")
    result = inspect(path)
    assert result.file_type.name == "csv"
    assert result.file_type.kind == "table"
    assert result.metadata["columns"] == ["id", "area, um2", "label"]
    assert result.metadata["rows"] == 3


def test_tsv_with_bom(tmp_path):
    path = tmp_path / "cells.tsv"
    path.write_bytes("\ufeffx\ty\n1\t2\n".encode())
    metadata = inspect(path).metadata
    assert metadata["columns"] == ["x", "y"]
    assert metadata["rows"] == 1


def test_star_blocks_and_loops(tmp_path):
    path = tmp_path / "particles.star"
    path.write_text(
        "# RELION\ndata_optics\n_rlnVoltage 300\n\ndata_particles\nloop_\n"
        "_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20\n30 40\n50 60\n"
    )
    metadata = inspect(path).metadata
    assert metadata["block_count"] == 2
    optics, particles = metadata["blocks"]
    assert optics["name"] == "optics"
    assert optics["loop"] is False
    assert particles["columns"] == ["_rlnCoordinateX", "_rlnCoordinateY"]
    assert particles["rows"] == 3


def test_star_without_data_block_rejected(tmp_path):
    path = tmp_path / "bad.star"
    path.write_text("no blocks here\n")
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert "data_" in str(error.value)


def test_json_valid_and_invalid(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a": 1, "b": [1, 2]}))
    metadata = inspect(good).metadata
    assert metadata["top_level"] == "dict"
    assert metadata["keys"] == ["a", "b"]

    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(FileCheckError) as error:
        inspect(bad)
    assert "line 2" in str(error.value)
    assert error.value.code == "invalid_text"


def test_invalid_utf8_after_head_rejected(tmp_path):
    path = tmp_path / "latin.csv"
    text = "a,b\n" + "1,2\n" * 20_000
    path.write_bytes(text.encode() + "é,3\n".encode("latin-1"))
    with pytest.raises(FileCheckError) as error:
        inspect(path)
    assert error.value.code == "invalid_text"
    assert "line 20002" in str(error.value)


def test_plain_text_for_unknown_extension(tmp_path):
    path = tmp_path / "script.py"
    path.write_text("print('hi')\n")
    result = inspect(path)
    assert result.file_type is filetypes.PLAIN_TEXT
    assert result.metadata == {"encoding": "utf-8", "lines": 1}


def test_over_long_line_checked_to_its_end(tmp_path):
    long_line = "x" * (file_metadata.TEXT_MAX_LINE_BYTES * 2 + 10)
    good = tmp_path / "long.txt"
    good.write_text(f"first\n{long_line}\nlast\n")
    assert inspect(good).metadata["lines"] == 3

    bad = tmp_path / "long_bad.txt"
    bad.write_bytes(f"first\n{long_line}".encode() + b"\xff\nlast\n")
    with pytest.raises(FileCheckError) as error:
        inspect(bad)
    assert "line 2" in str(error.value)
