"""One set of particles in several units and conventions, through the readers, the tomogram API and the command line."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.cryoet.io import ParticleFormatError, read_csv, read_particles
from biovlm_web.tomograms.models import Tomogram
from tests.bad_inputs.conftest import corpus_module, run_cli, upload_file

SHAPE = corpus_module.PARTICLE_TOMOGRAM_SHAPE
VOXEL_SIZE = corpus_module.PARTICLE_VOXEL_SIZE
EXPECTED = corpus_module.PARTICLE_ANGSTROM
# Files that give the particles' true positions, with the reader options they need.
CORRECT = {
    "particles_binned_pixels": {},
    "particles_unbinned_pixels": {},
    "particles_relion5_centred": {},
    "particles_no_unit": {"unit": "pixel"},
}
# Files whose positions are wrong in a way the checks must name, with the words of the warning.
SUSPECT = {
    "portal_points_zyx": "z and x look swapped",
    "imod_points_scaled": "converted from pixels a second time",
}
NO_UNIT_PHRASE = "states no unit"


@pytest.fixture
def stored(owner_client, dataset, corpus) -> dict[str, str]:
    """Upload the tomogram and every coordinate file; return the stored files' UUIDs by case name."""
    uuids = {}
    for case in ["particle_tomogram", *CORRECT, *SUSPECT]:
        response = upload_file(owner_client, dataset, corpus[case])
        assert response.status_code == 201, response.json()
        uuids[case] = response.json()["uuid"]
    return uuids


def create_with_references(client, personas, stored, case, **extra):
    body = {
        "project": str(personas["project"].uuid),
        "volume_file": stored["particle_tomogram"],
        "reference_files": [stored[case]],
        **extra,
    }
    return client.post("/api/tomograms/", body, format="json")


# --- the analysis library ---------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CORRECT))
def test_reader_converts_to_angstrom(corpus, case):
    particles = read_particles(corpus[case], SHAPE, VOXEL_SIZE, **CORRECT[case])

    np.testing.assert_allclose(particles.positions, EXPECTED, atol=0.01)
    assert particles.warnings == []


def test_reader_csv_without_unit_rejected(corpus):
    with pytest.raises(ParticleFormatError) as caught:
        read_particles(corpus["particles_no_unit"], SHAPE, VOXEL_SIZE)

    assert corpus["particles_no_unit"].name in str(caught.value)
    assert NO_UNIT_PHRASE in str(caught.value)


@pytest.mark.parametrize("case", sorted(SUSPECT))
def test_reader_warns_with_evidence(corpus, case):
    particles = read_particles(corpus[case], SHAPE, VOXEL_SIZE)

    warnings = [warning for warning in particles.warnings if SUSPECT[case] in warning]
    assert len(warnings) == 1, particles.warnings
    assert "100% fit" in warnings[0]
    assert "Å" in warnings[0]


# --- the tomogram API -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["particles_binned_pixels", "particles_unbinned_pixels", "particles_relion5_centred"])
def test_api_reads_references(owner_client, personas, stored, case):
    response = create_with_references(owner_client, personas, stored, case)

    assert response.status_code == 201, response.json()
    summary = response.json()["reference_summary"]
    assert summary["count"] == len(EXPECTED)
    assert not [warning for warning in summary["warnings"] if "look" in warning or "outside" in warning]


def test_api_holds_csv_until_unit_given(owner_client, personas, stored):
    rejected = create_with_references(owner_client, personas, stored, "particles_no_unit")

    assert rejected.status_code == 400
    assert "particles_no_unit.csv" in rejected.json()["detail"]
    assert NO_UNIT_PHRASE in rejected.json()["detail"]
    assert rejected.json()["field"] == "reference_files"
    assert Tomogram.objects.count() == 0

    accepted = create_with_references(owner_client, personas, stored, "particles_no_unit", reference_unit="pixel")
    assert accepted.status_code == 201, accepted.json()
    assert accepted.json()["reference_summary"]["count"] == len(EXPECTED)
    assert accepted.json()["reference_summary"]["unit"] == "pixel"
    assert Tomogram.objects.count() == 1


@pytest.mark.parametrize("case", sorted(SUSPECT))
def test_api_warns_with_evidence(owner_client, personas, stored, corpus, case):
    response = create_with_references(owner_client, personas, stored, case)

    assert response.status_code == 201, response.json()
    warnings = [warning for warning in response.json()["reference_summary"]["warnings"] if SUSPECT[case] in warning]
    assert len(warnings) == 1
    assert warnings[0].startswith(corpus[case].name)


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CORRECT))
def test_cli_convert_to_angstrom(corpus, tmp_path, case):
    output = tmp_path / "converted.csv"
    unit = ["--unit", CORRECT[case]["unit"]] if CORRECT[case] else []
    result = run_cli("cryoet", "convert", corpus[case], corpus["particle_tomogram"], *unit, "--output", output)

    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    np.testing.assert_allclose(read_csv(output).positions, EXPECTED, atol=0.01)


def test_cli_convert_csv_needs_unit(corpus, tmp_path):
    output = tmp_path / "converted.csv"
    result = run_cli("cryoet", "convert", corpus["particles_no_unit"], corpus["particle_tomogram"], "--output", output)

    assert result.returncode == 2
    assert str(corpus["particles_no_unit"]) in result.stderr
    assert NO_UNIT_PHRASE in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


@pytest.mark.parametrize("case", sorted(SUSPECT))
def test_cli_convert_warns(corpus, tmp_path, case):
    result = run_cli(
        "cryoet", "convert", corpus[case], corpus["particle_tomogram"], "--output", tmp_path / "converted.csv"
    )

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if SUSPECT[case] in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"warning: {corpus[case]}:")
