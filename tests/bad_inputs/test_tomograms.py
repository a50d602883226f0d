"""Awkward MRC tomograms through the upload API, the tomogram API and the command line."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from analysis.cryoet.io import MrcError, read_volume
from biovlm_web.tomograms.models import Tomogram
from biovlm_web.tomograms.volumes import to_uint8
from tests.bad_inputs.conftest import (
    StoredState,
    assert_rejected_upload,
    corpus_module,
    run_cli,
    upload_file,
    upload_good_volume,
)

QUIRK_VOXEL_SIZE = corpus_module.QUIRK_VOXEL_SIZE


def expected_float16_volume() -> np.ndarray:
    """The float16 ramp with its overflowed voxel replaced by the largest finite value, as the reader does."""
    values = corpus_module.float16_values().astype(np.float32)
    finite = np.isfinite(values)
    values[~finite] = values[finite].max()
    return values


# Files a reader must accept, with the float32 (z, y, x) values it must return.
READABLE = {
    "imod_signed_int8": lambda: corpus_module.imod_int8_values().astype(np.float32),
    "float16_inf": expected_float16_volume,
    "voxel_size_zero": lambda: corpus_module.ramp_volume().astype(np.float32),
    "voxel_size_placeholder": lambda: corpus_module.ramp_volume().astype(np.float32),
    "big_endian": lambda: corpus_module.ramp_volume().astype(np.float32),
}
# Files that must be rejected, with words the message must contain.
REJECTED = {
    "extended_header_missing": ("2048-byte extended header", "missing"),
    "truncated": ("truncated",),
}


def slice_array(client, tomogram_uuid, z: int) -> np.ndarray:
    response = client.get(f"/api/tomograms/{tomogram_uuid}/slices/{z}/")
    assert response.status_code == 200, response.content[:300]
    return np.asarray(Image.open(io.BytesIO(response.content)))


def create_tomogram(client, personas, file_uuid, **extra):
    body = {"project": str(personas["project"].uuid), "volume_file": file_uuid, **extra}
    return client.post("/api/tomograms/", body, format="json")


# --- the analysis library ---------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(READABLE))
def test_reader_returns_values(corpus, case):
    volume = read_volume(corpus[case])

    np.testing.assert_array_equal(volume.data, READABLE[case]())
    assert volume.data.dtype == np.float32
    assert volume.shape == corpus_module.QUIRK_SHAPE


def test_reader_big_endian_matches_little(corpus):
    big = read_volume(corpus["big_endian"])
    little = read_volume(corpus["little_endian_reference"])

    np.testing.assert_array_equal(big.data, little.data)
    assert big.header["byte_order"] == "big"
    assert big.voxel_size == little.voxel_size == (QUIRK_VOXEL_SIZE,) * 3


def test_reader_float16_inf_warns_with_position(corpus):
    volume = read_volume(corpus["float16_inf"])

    assert np.isfinite(volume.data).all()
    assert len(volume.warnings) == 1
    assert "1 voxel(s) are inf or NaN" in volume.warnings[0]
    assert f"(z, y, x) {corpus_module.FLOAT16_OVERFLOW_INDEX}" in volume.warnings[0]


@pytest.mark.parametrize(
    ("case", "reason"), [("voxel_size_zero", "zero or invalid"), ("voxel_size_placeholder", "1.0 Å")]
)
def test_reader_voxel_size_unknown(corpus, case, reason):
    volume = read_volume(corpus[case])

    assert volume.voxel_size is None
    assert any(reason in warning for warning in volume.warnings), volume.warnings


def test_reader_imod_unsigned_flag_warns(corpus):
    volume = read_volume(corpus["imod_unsigned_int8"])

    # The reader keeps mrcfile's signed reading and reports the conflict with IMOD's flags.
    assert volume.data.min() == -128
    assert any("unsigned" in warning for warning in volume.warnings)


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_reader_rejects(corpus, case):
    with pytest.raises(MrcError) as caught:
        read_volume(corpus[case])

    message = str(caught.value)
    assert corpus[case].name in message
    for phrase in REJECTED[case]:
        assert phrase in message


# --- the upload API and the tomogram API ------------------------------------------------------


@pytest.mark.parametrize("case", sorted(READABLE))
def test_upload_readable_volume(owner_client, dataset, personas, corpus, case):
    response = upload_file(owner_client, dataset, corpus[case])

    assert response.status_code == 201, response.json()
    stored = response.json()
    assert stored["kind"] == "volume"
    assert stored["metadata"]["shape"] == list(corpus_module.QUIRK_SHAPE)

    created = create_tomogram(owner_client, personas, stored["uuid"])
    assert created.status_code == 201, created.json()
    tomogram = created.json()
    expected = to_uint8(READABLE[case]())
    for z in range(corpus_module.QUIRK_SHAPE[0]):
        np.testing.assert_array_equal(slice_array(owner_client, tomogram["uuid"], z), expected[z])


def test_upload_float16_inf_warns(owner_client, dataset, personas, corpus):
    stored = upload_file(owner_client, dataset, corpus["float16_inf"]).json()

    assert stored["metadata"]["header_max"] is None
    assert any("not finite" in warning for warning in stored["metadata"]["warnings"])
    tomogram = create_tomogram(owner_client, personas, stored["uuid"]).json()
    assert any("not finite" in warning for warning in tomogram["header_warnings"])


@pytest.mark.parametrize("case", ["voxel_size_zero", "voxel_size_placeholder"])
def test_upload_voxel_size_unknown_until_set(owner_client, dataset, personas, corpus, case):
    stored = upload_file(owner_client, dataset, corpus[case]).json()

    assert stored["metadata"]["voxel_size_angstrom"] is None
    assert any("set the" in warning.lower() for warning in stored["metadata"]["warnings"])
    tomogram = create_tomogram(owner_client, personas, stored["uuid"]).json()
    assert tomogram["voxel_size_angstrom"] is None
    assert tomogram["header_voxel_size_angstrom"] is None

    corrected = owner_client.patch(
        f"/api/tomograms/{tomogram['uuid']}/", {"voxel_size_angstrom": QUIRK_VOXEL_SIZE}, format="json"
    )
    assert corrected.status_code == 200, corrected.json()
    assert corrected.json()["voxel_size_angstrom"] == QUIRK_VOXEL_SIZE


def test_upload_big_endian_matches_little(owner_client, dataset, personas, corpus):
    big = upload_file(owner_client, dataset, corpus["big_endian"]).json()
    little = upload_file(owner_client, dataset, corpus["little_endian_reference"]).json()

    for key in ("shape", "mode", "voxel_size_angstrom", "header_min", "header_max", "header_mean"):
        assert big["metadata"][key] == little["metadata"][key], key
    big_tomogram = create_tomogram(owner_client, personas, big["uuid"]).json()
    little_tomogram = create_tomogram(owner_client, personas, little["uuid"]).json()
    for z in range(corpus_module.QUIRK_SHAPE[0]):
        np.testing.assert_array_equal(
            slice_array(owner_client, big_tomogram["uuid"], z), slice_array(owner_client, little_tomogram["uuid"], z)
        )


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_upload_rejects_volume(owner_client, dataset, settings, corpus, case):
    earlier = upload_good_volume(owner_client, dataset, corpus)
    state = StoredState(settings)
    tomograms_before = Tomogram.objects.count()

    response = upload_file(owner_client, dataset, corpus[case])

    assert_rejected_upload(response, corpus[case].name, *REJECTED[case])
    assert response.status_code == 400
    assert response.json()["code"] == "truncated"
    state.assert_unchanged()
    assert Tomogram.objects.count() == tomograms_before
    upload = owner_client.get("/api/uploads/", {"dataset": str(dataset.uuid), "status": "failed"}).json()
    uploads = upload["results"] if isinstance(upload, dict) else upload
    assert [item["filename"] for item in uploads] == [corpus[case].name]
    earlier_now = owner_client.get(f"/api/files/{earlier['uuid']}/")
    assert earlier_now.status_code == 200
    assert earlier_now.json()["sha256"] == earlier["sha256"]


# --- the command line -------------------------------------------------------------------------


def test_cli_inspect_tomograms(corpus):
    cases = [*sorted(READABLE), "imod_unsigned_int8", *sorted(REJECTED)]
    result = run_cli("inspect", *(corpus[case] for case in cases))

    assert result.returncode == 2
    reports = {item["file"]: item for item in json.loads(result.stdout)}
    assert set(reports) == {str(corpus[case]) for case in [*sorted(READABLE), "imod_unsigned_int8"]}
    for case in REJECTED:
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"error: {corpus[case]}:")]
        assert len(lines) == 1, result.stderr
        for phrase in REJECTED[case]:
            assert phrase in lines[0]
    big, little = reports[str(corpus["big_endian"])], run_cli("inspect", corpus["little_endian_reference"])
    assert big["metadata"]["header_max"] == json.loads(little.stdout)[0]["metadata"]["header_max"]
    assert reports[str(corpus["voxel_size_zero"])]["metadata"]["voxel_size_angstrom"] is None
    assert reports[str(corpus["voxel_size_placeholder"])]["metadata"]["voxel_size_angstrom"] is None


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_cli_pick_rejects_volume(corpus, tmp_path, case):
    result = run_cli("cryoet", "pick", corpus[case], "--output", tmp_path / "picks.csv")

    assert result.returncode == 2
    assert str(corpus[case]) in result.stderr
    for phrase in REJECTED[case]:
        assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "picks.csv").exists()


def test_cli_pick_needs_voxel_size(corpus, tmp_path):
    output = tmp_path / "picks.csv"
    rejected = run_cli("cryoet", "pick", corpus["voxel_size_placeholder"], "--output", output)

    assert rejected.returncode == 2
    assert "no voxel size" in rejected.stderr
    assert "--voxel-size" in rejected.stderr
    assert not output.exists()

    accepted = run_cli(
        "cryoet", "pick", corpus["voxel_size_placeholder"], "--voxel-size", QUIRK_VOXEL_SIZE, "--output", output
    )
    assert accepted.returncode == 0, accepted.stderr
    assert output.read_text().startswith("# unit: angstrom")


@pytest.mark.parametrize("case", ["big_endian", "float16_inf", "imod_signed_int8"])
def test_cli_pick_reads_volume(corpus, tmp_path, case):
    output = tmp_path / "picks.csv"
    result = run_cli("cryoet", "pick", corpus[case], "--output", output)

    assert result.returncode == 0, result.stderr
    assert output.is_file()
    if case == "float16_inf":
        assert "1 voxel(s) are inf or NaN" in result.stderr
