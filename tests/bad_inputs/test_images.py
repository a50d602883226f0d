"""16-bit, alpha, palette and CMYK images, a decompression bomb and unsafe archives, through every entry point."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFile

from analysis.setdiff.ingest import IngestError, IngestOptions, decode_image_bytes, load_group
from biovlm_web.comparisons.models import ComparisonImage
from tests.bad_inputs.conftest import StoredState, assert_rejected_upload, corpus_module, run_cli, upload_file

WHITE = (255, 255, 255)
# Image files and the Pillow mode the upload must record.
MODES = {"gray16": "I;16", "alpha": "RGBA", "palette": "P", "cmyk": "CMYK"}
# Files that must be rejected, the upload's error code, and words of the message.
REJECTED = {
    "bomb": ("too_many_pixels", "10000000000 pixels"),
    "traversal_zip": ("unsafe", "'../escaped.png'"),
    "traversal_tar": ("unsafe", "'../escaped.png'"),
    "tar_bomb": ("unsafe", "archive expands from"),
    "zip_bomb": ("unsafe", "'zeros.tif' expands"),
}


def expected_rgb(case: str) -> np.ndarray:
    """The uint8 RGB pixels each image must normalise to."""
    if case == "gray16":
        gray = np.round(corpus_module.gray16_values() / corpus_module.GRAY16_MAX * 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    image = np.zeros((24, 32, 3), dtype=np.uint8)
    if case == "alpha":
        image[:, :16] = WHITE  # transparent, flattened onto the white background
        image[:, 16:] = (200, 0, 0)
    elif case == "palette":
        image[:] = (10, 120, 250)
    elif case == "cmyk":
        image[:] = (255, 0, 0)
    return image


def assert_pixels(case: str, pixels: np.ndarray) -> None:
    # JPEG, used for the CMYK file, is lossy.
    tolerance = 8 if case == "cmyk" else 0
    assert pixels.shape == (24, 32, 3)
    assert np.abs(pixels.astype(int) - expected_rgb(case).astype(int)).max() <= tolerance


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any pixel decoding by Pillow or any ZIP member read fail the test."""

    def fail_on_decoding(*args, **kwargs):
        raise AssertionError("pixels or archive members were decoded before the limits were checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", fail_on_decoding)
    monkeypatch.setattr(zipfile.ZipFile, "open", fail_on_decoding)


# --- the analysis library ---------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(MODES))
def test_decoder_normalises_to_rgb(corpus, case):
    ((name, pixels, scaling),) = decode_image_bytes(corpus[case].name, corpus[case].read_bytes(), IngestOptions())

    assert name == corpus[case].name
    assert_pixels(case, pixels)
    if case == "gray16":
        assert scaling == "uint16 / 4095 (12 bits used)"


def test_decoder_bomb_rejected_by_own_limit(corpus, no_decoding):
    options = IngestOptions()

    with pytest.raises(ValueError) as caught:
        decode_image_bytes("bomb.png", corpus["bomb"].read_bytes(), options)

    assert f"over the limit of {options.max_pixels} pixels" in str(caught.value)
    assert "10000000000 pixels" in str(caught.value)


@pytest.mark.parametrize("case", ["tar_bomb", "traversal_tar", "traversal_zip", "zip_bomb"])
def test_ingest_rejects_archive(corpus, no_decoding, case):
    with pytest.raises(IngestError) as caught:
        load_group(corpus[case], "A", IngestOptions(), [])

    assert str(caught.value).startswith(f"{corpus[case]}: ")
    assert REJECTED[case][1] in str(caught.value)


# --- the upload API ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(MODES))
def test_upload_reads_image_header(owner_client, dataset, corpus, case):
    response = upload_file(owner_client, dataset, corpus[case])

    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "image"
    metadata = response.json()["metadata"]
    assert (metadata["width"], metadata["height"], metadata["mode"]) == (32, 24, MODES[case])


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_upload_rejects(owner_client, dataset, settings, corpus, case):
    earlier = upload_file(owner_client, dataset, corpus["palette"], "stored_before.png").json()
    state = StoredState(settings)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageFile.ImageFile, "load", lambda *args: pytest.fail("the bomb's pixels were decoded"))
        response = upload_file(owner_client, dataset, corpus[case])

    code, phrase = REJECTED[case]
    assert_rejected_upload(response, corpus[case].name, phrase)
    assert response.json()["code"] == code
    state.assert_unchanged()
    assert owner_client.get(f"/api/files/{earlier['uuid']}/").json()["sha256"] == earlier["sha256"]


# --- the comparison API -----------------------------------------------------------------------


@pytest.fixture
def comparison_uuid(owner_client, personas) -> str:
    body = {"project": str(personas["project"].uuid), "name": "Bad images"}
    response = owner_client.post("/api/comparisons/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["uuid"]


def add_images(client, comparison_uuid, *paths):
    handles = [path.open("rb") for path in paths]
    try:
        return client.post(f"/api/comparisons/{comparison_uuid}/images/", {"group": "a", "file": handles})
    finally:
        for handle in handles:
            handle.close()


def test_comparison_normalises_images(owner_client, comparison_uuid, corpus):
    response = add_images(owner_client, comparison_uuid, *(corpus[case] for case in sorted(MODES)))

    assert response.status_code == 201, response.json()
    assert response.json()["skipped"] == []
    added = {item["name"]: item for item in response.json()["added"]}
    assert set(added) == {corpus[case].name for case in MODES}
    for case in MODES:
        image = ComparisonImage.objects.get(uuid=added[corpus[case].name]["uuid"])
        with image.image.open("rb") as handle:
            assert_pixels(case, np.asarray(Image.open(handle).convert("RGB")))
    assert added["gray16.png"]["scaling"] == "uint16 / 4095 (12 bits used)"


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_comparison_leaves_out(owner_client, comparison_uuid, settings, corpus, case, no_decoding):
    state = StoredState(settings)

    response = add_images(owner_client, comparison_uuid, corpus[case])

    assert response.status_code == 201, response.json()
    assert response.json()["added"] == []
    (skipped,) = response.json()["skipped"]
    assert skipped["image"] == corpus[case].name
    assert REJECTED[case][1] in skipped["reason"]
    assert "DOS attack" not in skipped["reason"]  # Pillow's own limit must not be the one that rejects
    assert ComparisonImage.objects.count() == 0
    state.assert_unchanged()


# --- the command line -------------------------------------------------------------------------


def test_cli_inspect_images(corpus):
    cases = [*sorted(MODES), *sorted(REJECTED)]
    result = run_cli("inspect", *(corpus[case] for case in cases))

    assert result.returncode == 2
    reports = {item["file"]: item["metadata"] for item in json.loads(result.stdout)}
    assert {path: metadata["mode"] for path, metadata in reports.items()} == {
        str(corpus[case]): mode for case, mode in MODES.items()
    }
    for case, (code, phrase) in REJECTED.items():
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"error: {corpus[case]}:")]
        assert len(lines) == 1, result.stderr
        assert f"rejected ({code})" in lines[0]
        assert phrase in lines[0]


def test_cli_setdiff_leaves_out_bomb(corpus, tmp_path):
    group_a, group_b = tmp_path / "A", tmp_path / "B"
    group_a.mkdir()
    group_b.mkdir()
    for case in [*MODES, "bomb"]:
        (group_a / corpus[case].name).write_bytes(corpus[case].read_bytes())
    for index in range(3):
        Image.new("RGB", (32, 24), (40 * index, 80, 80)).save(group_b / f"plain{index}.png")
    output = tmp_path / "result.json"

    result = run_cli(
        "setdiff", "run", group_a, group_b, "--resamples", 20, "--permutations", 20, "--output", output,
        "--proposers", "measured",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    document = json.loads(output.read_text())
    assert document["groups"]["a"]["images"] == len(MODES)
    (skipped,) = document["skipped"]
    assert skipped["image"] == str(group_a / "bomb.png")
    assert "over the limit of" in skipped["reason"]
    assert f"Left out {group_a / 'bomb.png'}" in result.stderr


@pytest.mark.parametrize("case", ["tar_bomb", "traversal_tar", "traversal_zip", "zip_bomb"])
def test_cli_setdiff_rejects_archive(corpus, tmp_path, case):
    output = tmp_path / "result.json"
    result = run_cli("setdiff", "run", corpus[case], corpus[case], "--output", output)

    assert result.returncode == 2
    assert f"{corpus[case]}: " in result.stderr
    assert REJECTED[case][1] in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
