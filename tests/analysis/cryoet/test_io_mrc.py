"""MRC reading on small generated files, one per header quirk.

Each file is written with mrcfile and, where mrcfile cannot produce the quirk, patched with
NumPy at the byte offsets MRC2014 and IMOD define.
"""

import mrcfile
import numpy as np
import pytest

from analysis.cryoet.io.mrc import IMOD_STAMP, MrcError, read_volume, write_volume


def ramp(shape=(4, 5, 6), dtype=np.float32):
    return np.arange(np.prod(shape)).reshape(shape).astype(dtype)


def patch_int32(path, offset, value, order="<"):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(np.array([value], dtype=order + "i4").tobytes())


def test_write_read_round_trip(tmp_path):
    data = ramp()
    path = write_volume(tmp_path / "ramp.mrc", data, 10.0, origin=(1.0, 2.0, 3.0))
    volume = read_volume(path)
    assert volume.data.dtype == np.float32
    assert volume.shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size == pytest.approx((10.0, 10.0, 10.0))
    assert volume.origin == (1.0, 2.0, 3.0)
    assert volume.mode == 2
    assert volume.warnings == []


def test_anisotropic_voxel_size(tmp_path):
    path = write_volume(tmp_path / "aniso.mrc", ramp(), (10.0, 11.0, 12.5))
    assert read_volume(path).voxel_size == pytest.approx((10.0, 11.0, 12.5))


@pytest.mark.parametrize(("dtype", "mode"), [(np.float16, 12), (np.int16, 1), (np.uint16, 6), (np.int8, 0)])
def test_modes_convert_to_float32(tmp_path, dtype, mode):
    data = ramp((2, 3, 4)).astype(dtype) if dtype != np.int8 else (ramp((2, 3, 4)) - 12).astype(np.int8)
    path = tmp_path / f"mode{mode}.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 5.0
    volume = read_volume(path)
    assert volume.mode == mode
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, data.astype(np.float32))


def test_imod_signed_flag_reads_negative_bytes(tmp_path):
    data = np.array([-128, -1, 0, 127], dtype=np.int8).reshape(1, 1, 4)
    path = tmp_path / "imod_signed.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 5.0
    patch_int32(path, 152, IMOD_STAMP)
    patch_int32(path, 156, 1)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data.ravel(), [-128, -1, 0, 127])
    assert volume.warnings == []


def test_imod_unsigned_flag_warns(tmp_path):
    data = np.array([-128, -1, 0, 127], dtype=np.int8).reshape(1, 1, 4)
    path = tmp_path / "imod_unsigned.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 5.0
    patch_int32(path, 152, IMOD_STAMP)
    patch_int32(path, 156, 0)
    volume = read_volume(path)
    # mrcfile's reading (signed) is kept, and the conflict with IMOD's flag is reported.
    np.testing.assert_array_equal(volume.data.ravel(), [-128, -1, 0, 127])
    assert any("unsigned" in message for message in volume.warnings)


@pytest.mark.parametrize("threshold", [None, 0])
def test_axis_order_transposed(tmp_path, threshold):
    # Stored with columns along z, rows along y and sections along x.
    stored = ramp((6, 5, 4))
    path = tmp_path / "zyx_swapped.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored)
        mrc.voxel_size = 7.0
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    volume = read_volume(path, **({} if threshold is None else {"mmap_threshold": threshold}))
    expected = np.transpose(stored, (2, 1, 0))
    assert volume.shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.data, expected)
    assert any("axis order" in message for message in volume.warnings)


def test_invalid_axis_order_rejected(tmp_path):
    path = write_volume(tmp_path / "bad_axes.mrc", ramp(), 10.0)
    patch_int32(path, 64, 1)
    patch_int32(path, 68, 1)
    with pytest.raises(MrcError, match="permutation"):
        read_volume(path)


def test_zero_cell_size_gives_none(tmp_path):
    path = write_volume(tmp_path / "zero_cell.mrc", ramp(), 10.0)
    with open(path, "r+b") as handle:
        handle.seek(40)
        handle.write(np.zeros(3, dtype="<f4").tobytes())
    volume = read_volume(path)
    assert volume.voxel_size is None
    assert any("voxel size unknown" in message for message in volume.warnings)


def test_zero_sampling_gives_none(tmp_path):
    path = write_volume(tmp_path / "zero_mx.mrc", ramp(), 10.0)
    patch_int32(path, 28, 0)
    volume = read_volume(path)
    assert volume.voxel_size is None


def test_placeholder_voxel_size_gives_none(tmp_path):
    path = tmp_path / "placeholder.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(ramp())
        mrc.voxel_size = 1.0
    volume = read_volume(path)
    assert volume.voxel_size is None
    assert any("placeholder" in message for message in volume.warnings)


def test_extended_header_skipped(tmp_path):
    data = ramp()
    path = tmp_path / "extended.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 10.0
        mrc.set_extended_header(np.arange(256, dtype=np.uint8))
        mrc.header.exttyp = b"SERI"
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, data)
    assert volume.header["extended_header_bytes"] == 256
    assert volume.header["extended_header_type"] == "SERI"


def test_big_endian_file(tmp_path):
    data = ramp()
    path = tmp_path / "big_endian.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data.astype(">f4"))
        mrc.voxel_size = 4.0
    assert open(path, "rb").read()[212] == 0x11
    volume = read_volume(path)
    assert volume.header["byte_order"] == "big"
    assert volume.data.dtype == np.dtype("float32")
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size == pytest.approx((4.0, 4.0, 4.0))


def test_memory_mapped_read_matches(tmp_path):
    data = np.random.default_rng(0).normal(size=(9, 8, 7)).astype(np.float32)
    path = write_volume(tmp_path / "mapped.mrc", data, 10.0)
    volume = read_volume(path, mmap_threshold=0)
    assert volume.header["memory_mapped"] is True
    np.testing.assert_array_equal(volume.data, data)


def test_truncated_file_rejected(tmp_path):
    path = write_volume(tmp_path / "truncated.mrc", ramp(), 10.0)
    expected_size = 1024 + 4 * 5 * 6 * 4
    assert path.stat().st_size == expected_size
    with open(path, "r+b") as handle:
        handle.truncate(expected_size - 10)
    with pytest.raises(MrcError) as error:
        read_volume(path)
    message = str(error.value)
    assert "truncated.mrc" in message
    assert str(expected_size) in message
    assert str(expected_size - 10) in message


def test_header_only_file_rejected(tmp_path):
    path = tmp_path / "short.mrc"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(MrcError, match="shorter than"):
        read_volume(path)


def test_complex_mode_rejected(tmp_path):
    path = tmp_path / "complex.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((2, 2, 2), dtype=np.complex64))
    with pytest.raises(MrcError, match="mode 4"):
        read_volume(path)


def test_trailing_bytes_warn(tmp_path):
    path = write_volume(tmp_path / "trailing.mrc", ramp(), 10.0)
    with open(path, "ab") as handle:
        handle.write(b"\0" * 8)
    volume = read_volume(path)
    assert any("8 bytes after the data" in message for message in volume.warnings)


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="3-D"):
        write_volume(tmp_path / "flat.mrc", np.zeros((3, 3)), 10.0)
    with pytest.raises(ValueError, match="positive"):
        write_volume(tmp_path / "zero.mrc", np.zeros((3, 3, 3)), 0.0)


def test_slab_conversion_many_slabs(tmp_path, monkeypatch):
    from analysis.cryoet.io import mrc

    stored = np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float32)
    path = tmp_path / "slabs.mrc"
    with mrcfile.new(path) as handle:
        handle.set_data(stored)
        handle.voxel_size = 7.0
        handle.header.mapc, handle.header.mapr, handle.header.maps = 2, 3, 1
    # One 5x4 float32 plane is 80 bytes, so every section becomes its own slab.
    monkeypatch.setattr(mrc, "SLAB_BYTES", 80)
    volume = read_volume(path, mmap_threshold=0)
    # Sections along x, rows along z, columns along y.
    np.testing.assert_array_equal(volume.data, np.transpose(stored, (1, 2, 0)))
    assert volume.shape == (5, 4, 6)


def test_big_endian_without_machine_stamp(tmp_path):
    data = ramp()
    path = tmp_path / "no_stamp.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data.astype(">f4"))
        mrc.voxel_size = 4.0
    with open(path, "r+b") as handle:
        handle.seek(212)
        handle.write(b"\0\0\0\0")
    volume = read_volume(path)
    assert volume.header["byte_order"] == "big"
    np.testing.assert_array_equal(volume.data, data)
