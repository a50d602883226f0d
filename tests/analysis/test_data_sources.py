"""Data files read from wheels and from installed packages through ``analysis.data``."""

import dataclasses

import pytest

from analysis import data


def test_wheel_member_extracted(tmp_path):
    try:
        cached = data.fetch("stardist-histology.jpg")
    except data.DataFetchError as error:
        pytest.skip(f"cannot fetch the stardist wheel from PyPI: {error}")
    wheel = sorted((cached.parent / "cache").glob(data.SOURCES["stardist-histology.jpg"].wheel_pattern))[0]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / wheel.name).symlink_to(wheel)

    path = data.fetch("stardist-histology.jpg", tmp_path)

    assert path == tmp_path / "stardist-histology.jpg"
    assert path.read_bytes()[:2] == b"\xff\xd8"  # JPEG start-of-image marker
    assert data.sha256_of(path) == data.SOURCES["stardist-histology.jpg"].sha256


def test_installed_file_verified():
    path = data.fetch("skimage-cell.png")
    assert path.name == "cell.png"
    assert "site-packages" in str(path)
    assert data.sha256_of(path) == data.SOURCES["skimage-cell.png"].sha256


def test_installed_file_wrong_digest(monkeypatch):
    wrong = dataclasses.replace(data.SOURCES["skimage-cell.png"], sha256="0" * 64)
    monkeypatch.setitem(data.SOURCES, "skimage-cell.png", wrong)
    with pytest.raises(data.DataFetchError, match="expected 0000"):
        data.fetch("skimage-cell.png")


def test_installed_file_other_version(monkeypatch):
    other = dataclasses.replace(data.SOURCES["skimage-cell.png"], version="0.1")
    monkeypatch.setitem(data.SOURCES, "skimage-cell.png", other)
    with pytest.raises(data.DataFetchError, match="the table records 0.1"):
        data.fetch("skimage-cell.png")


def test_installed_package_missing(monkeypatch):
    missing = dataclasses.replace(data.SOURCES["skimage-cell.png"], package="no-such-package-for-biovlm")
    monkeypatch.setitem(data.SOURCES, "skimage-cell.png", missing)
    with pytest.raises(data.DataFetchError, match="is not installed"):
        data.fetch("skimage-cell.png")


@pytest.mark.parametrize("name", ["smollm2.gguf", "all-minilm-l6-v2.safetensors"])
def test_model_weights_verified(name):
    try:
        path = data.fetch(name)
    except data.DataFetchError as error:
        pytest.skip(f"requirements-models.txt is not installed: {error}")
    assert path.stat().st_size > 50_000_000
