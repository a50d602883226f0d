"""The tomograms app: upload, header, voxel size, runs, particles, query tools, questions, exports."""

import io

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from PIL import Image

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.io import read_copick, read_csv, read_relion_star
from analysis.cryoet.pipeline import DEFAULT_SCORE_THRESHOLD
from biovlm_web.core.jobs import execute_job
from biovlm_web.core.models import Job, ShareLink
from biovlm_web.tomograms.ingest import start_run
from biovlm_web.tomograms.models import Tomogram, TomogramRun
from tests.conftest import start_worker
from tests.web.tomogram_data import SHAPE, VOXEL_SIZE, known_run, upload_tomogram, write_simulated_mrc, zip_names

pytestmark = pytest.mark.django_db


@pytest.fixture
def simulated(tmp_path):
    return write_simulated_mrc(tmp_path)


@pytest.fixture
def tomogram(client, personas, simulated):
    client.force_login(personas["owner"])
    response = upload_tomogram(client, personas["project"], simulated[0])
    assert response.status_code == 302, response.content
    return Tomogram.objects.get(project=personas["project"])


@pytest.fixture
def run(tomogram, personas):
    return known_run(tomogram, personas["owner"])


def api_as(api_client, user):
    api_client.force_authenticate(user)
    return api_client


# --- Upload and header --------------------------------------------------------------------------


def test_upload_shows_header(client, tomogram):
    response = client.get(reverse("tomogram-detail", args=[tomogram.uuid]))
    html = response.content.decode()
    assert tomogram.shape == SHAPE
    assert tomogram.voxel_size == VOXEL_SIZE
    assert "96 × 96 × 48 voxels" in html
    assert "<dt>Mode</dt><dd>2</dd>" in html
    assert tomogram.volume.dataset.name == "Tomograms"


def test_placeholder_voxel_size_warns(client, personas, tmp_path):
    mrc_path, _ = write_simulated_mrc(tmp_path, "placeholder.mrc", voxel_size=1.0)
    client.force_login(personas["member"])
    upload_tomogram(client, personas["project"], mrc_path)
    tomogram = Tomogram.objects.get(name="placeholder.mrc")
    assert tomogram.voxel_size is None
    html = client.get(reverse("tomogram-detail", args=[tomogram.uuid])).content.decode()
    assert "the placeholder many tools write" in html
    assert "set it below before a run" in html

    response = client.post(reverse("tomogram-voxel-size", args=[tomogram.uuid]), {"voxel_size": "10"})
    assert response.status_code == 302
    tomogram.refresh_from_db()
    assert tomogram.voxel_size == 10.0


def test_anisotropic_voxel_one_format_and_warning(client, personas, tmp_path):
    # The sizes of the EMD-3001 map, which differ by 17 % between y and z.
    mrc_path, _ = write_simulated_mrc(tmp_path, "emd.mrc", voxel_size=(0.44825, 0.39269, 0.459))
    client.force_login(personas["member"])
    upload_tomogram(client, personas["project"], mrc_path)
    tomogram = Tomogram.objects.get(name="emd.mrc")
    html = client.get(reverse("tomogram-detail", args=[tomogram.uuid])).content.decode()
    assert '<dd class="header-voxel">0.44825 × 0.39269 × 0.459 Å</dd>' in html
    assert '<dd class="voxel-used">0.44825 Å</dd>' in html
    assert 'value="0.44825"' in html
    assert "0.4483" not in html
    assert "The voxels are anisotropic" in html
    assert "assumes cubic voxels" in html


def test_cubic_voxel_not_warned(client, tomogram):
    html = client.get(reverse("tomogram-detail", args=[tomogram.uuid])).content.decode()
    assert '<dd class="header-voxel">10 × 10 × 10 Å</dd>' in html
    assert "anisotropic" not in html


def test_run_page_accounts_for_candidates(client, run):
    run.summary.update(picked=104, rejected_as_background=25, merged_duplicates=37, kept=42, min_class_probability=0.2)
    run.params = {"picker": "dog", "score_threshold": 10.0}
    run.save()
    html = client.get(reverse("tomogram-run-detail", args=[run.uuid])).content.decode()
    assert (
        "104 candidates from the picker; 25 below the minimum class probability 0.2, called background; "
        "37 merged into a more probable pick of the same class" in html
    )
    assert "; 42 kept." in html
    assert "The particle scores on this page are APT-ViT class probabilities from 0 to 1." in html


def test_export_file_names_are_slugs(api_client, personas, run):
    client = api_as(api_client, personas["member"])
    short = str(run.uuid)[:8]
    expected = {"csv": f"sim-{short}.csv", "star4": f"sim-{short}-relion4.star", "copick": f"sim-{short}.zip"}
    for export_format, name in expected.items():
        response = client.get(f"/api/tomogram-runs/{run.uuid}/export/{export_format}/")
        assert response["Content-Disposition"] == f'attachment; filename="{name}"', export_format


def test_run_without_voxel_size_rejected(api_client, personas, client, tmp_path):
    mrc_path, _ = write_simulated_mrc(tmp_path, "placeholder.mrc", voxel_size=1.0)
    client.force_login(personas["owner"])
    upload_tomogram(client, personas["project"], mrc_path)
    tomogram = Tomogram.objects.get(name="placeholder.mrc")
    response = api_as(api_client, personas["owner"]).post(f"/api/tomograms/{tomogram.uuid}/runs/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "tomogram"
    assert "voxel size" in response.json()["detail"]


def test_upload_with_reference_summary(client, personas, simulated):
    client.force_login(personas["owner"])
    response = upload_tomogram(client, personas["project"], simulated[0], references=[simulated[1]])
    assert response.status_code == 302
    tomogram = Tomogram.objects.get()
    assert tomogram.reference_summary["count"] == 6
    assert tomogram.reference_summary["counts"]["ribosome"] == 1
    assert [file.original_name for file in tomogram.references.all()] == ["truth.csv"]


def test_invalid_reference_stores_nothing(client, personas, simulated, tmp_path):
    bad = tmp_path / "picks.csv"
    bad.write_text("a,b\n1,2\n")
    client.force_login(personas["owner"])
    response = upload_tomogram(client, personas["project"], simulated[0], references=[bad])
    assert response.status_code == 302
    assert not Tomogram.objects.exists()
    messages = [str(message) for message in response.wsgi_request._messages]
    assert any("picks.csv" in message and "Nothing was stored" in message for message in messages), messages


def test_non_mrc_upload_rejected(client, personas, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a tomogram\n")
    client.force_login(personas["owner"])
    response = upload_tomogram(client, personas["project"], text)
    assert not Tomogram.objects.exists()
    messages = [str(message) for message in response.wsgi_request._messages]
    assert any("notes.txt is not an MRC volume" in message for message in messages), messages


def test_attach_references_on_page(client, tomogram, simulated, tmp_path):
    url = reverse("tomogram-references", args=[tomogram.uuid])
    pixels = tmp_path / "pixels.csv"
    pixels.write_text("x,y,z,class\n10,20,5,ribosome\n30,40,6,apo-ferritin\n")
    with open(pixels, "rb") as handle:
        response = client.post(url, {"references": handle, "reference_unit": "pixel"})
    assert response.status_code == 302
    tomogram.refresh_from_db()
    assert tomogram.reference_summary["count"] == 2
    assert tomogram.reference_summary["unit"] == "pixel"

    with open(simulated[1], "rb") as handle:
        client.post(url, {"references": handle})
    tomogram.refresh_from_db()
    assert tomogram.reference_summary["count"] == 6
    assert [file.original_name for file in tomogram.references.all()] == ["truth.csv"]

    with open(pixels, "rb") as handle:
        response = client.post(url, {"references": handle})
    messages = [str(message) for message in response.wsgi_request._messages]
    assert any("pixels.csv" in message and "unit" in message for message in messages), messages
    tomogram.refresh_from_db()
    assert tomogram.reference_summary["count"] == 6


def test_references_with_several_tomograms_rejected(client, personas, simulated, tmp_path):
    second, _ = write_simulated_mrc(tmp_path, "second.mrc")
    client.force_login(personas["owner"])
    with open(simulated[0], "rb") as first, open(second, "rb") as other, open(simulated[1], "rb") as reference:
        response = client.post(
            reverse("tomogram-upload", args=[personas["project"].uuid]),
            {"volumes": [first, other], "references": reference},
        )
    assert not Tomogram.objects.exists()
    messages = [str(message) for message in response.wsgi_request._messages]
    assert any("one tomogram at a time" in message for message in messages), messages

    with open(simulated[0], "rb") as first, open(second, "rb") as other:
        client.post(reverse("tomogram-upload", args=[personas["project"].uuid]), {"volumes": [first, other]})
    assert sorted(Tomogram.objects.values_list("name", flat=True)) == ["second.mrc", "sim.mrc"]


def test_api_register_and_correct_voxel_size(api_client, personas, tomogram):
    client = api_as(api_client, personas["member"])
    body = {"project": str(personas["project"].uuid), "volume_file": str(tomogram.volume.uuid), "name": "again"}
    response = client.post("/api/tomograms/", body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["shape_zyx"] == list(SHAPE)
    assert created["mode"] == 2
    assert created["voxel_size_angstrom"] == VOXEL_SIZE

    response = client.patch(f"/api/tomograms/{created['uuid']}/", {"voxel_size_angstrom": 8.5}, format="json")
    assert response.status_code == 200
    assert response.json()["voxel_size_angstrom"] == 8.5
    assert response.json()["header_voxel_size_angstrom"] == VOXEL_SIZE

    response = client.patch(f"/api/tomograms/{created['uuid']}/", {"voxel_size_angstrom": -1}, format="json")
    assert response.status_code == 400
    assert "voxel_size_angstrom" in response.json()["detail"]


def test_register_project_file_on_page(client, personas, tomogram):
    volume = tomogram.volume
    tomogram.delete()
    project = personas["project"]
    page = client.get(reverse("tomogram-list", args=[project.uuid])).content.decode()
    assert f'value="{volume.uuid}"' in page

    response = client.post(reverse("tomogram-register", args=[project.uuid]), {"volume_file": str(volume.uuid)})
    created = Tomogram.objects.get(volume=volume)
    assert response.status_code == 302
    assert response["Location"] == reverse("tomogram-detail", args=[created.uuid])
    assert created.voxel_size == VOXEL_SIZE
    # A file that a tomogram uses is no longer offered, and posting it again creates nothing.
    page = client.get(reverse("tomogram-list", args=[project.uuid])).content.decode()
    assert f'value="{volume.uuid}"' not in page
    client.post(reverse("tomogram-register", args=[project.uuid]), {"volume_file": str(volume.uuid)})
    assert Tomogram.objects.filter(volume=volume).count() == 1


def test_register_project_file_stranger_404(client, personas, tomogram):
    client.force_login(personas["stranger"])
    url = reverse("tomogram-register", args=[personas["project"].uuid])
    response = client.post(url, {"volume_file": str(tomogram.volume.uuid)})
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_damaged_file_error_hides_server_path(personas, tomogram, redis_conn):
    # The stored file is cut short after its upload was checked, as a failing disk might do.
    path = tomogram.volume.file.path
    with open(path, "r+b") as handle:
        handle.truncate(2000)
    run = start_run(tomogram, {"picker": "dog"}, personas["owner"])

    assert execute_job(str(run.job.uuid)) == "failed"

    run.job.refresh_from_db()
    assert run.job.error.startswith(f"{tomogram.name}: file is truncated")
    assert path not in run.job.error
    assert str(settings.MEDIA_ROOT) not in run.job.error


# --- Runs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"picker": "magic"}, "picker"),
        ({"classes": ["unicorn"]}, "classes"),
        ({"score_threshold": -2}, "score_threshold"),
        ({"score_threshold": "high"}, "score_threshold"),
        ({"checkpoint": "../../etc/passwd"}, "checkpoint"),
        ({"picker": "template", "classes": ["ribosome", "apo-ferritin"]}, "classes"),
        ({"picker": "template", "classes": ["ribosome"], "score_threshold": 5}, "score_threshold"),
    ],
)
def test_run_invalid_parameters(api_client, personas, tomogram, body, field):
    response = api_as(api_client, personas["owner"]).post(f"/api/tomograms/{tomogram.uuid}/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["detail"]
    assert not Job.objects.exists()


def test_run_threshold_default_by_picker(api_client, personas, tomogram):
    client = api_as(api_client, personas["owner"])
    url = f"/api/tomograms/{tomogram.uuid}/runs/"
    dog = client.post(url, {}, format="json").json()
    template = client.post(url, {"picker": "template", "classes": ["ribosome"]}, format="json").json()
    assert dog["params"]["score_threshold"] == DEFAULT_SCORE_THRESHOLD
    assert dog["params"]["classes"] == list(CLASS_NAMES)
    assert template["params"]["score_threshold"] == 0.3
    assert template["params"]["checkpoint"] == "aptvit-small.pt"


@pytest.mark.django_db(transaction=True)
def test_run_pipeline_with_references(api_client, personas, client, simulated, redis_conn):
    client.force_login(personas["owner"])
    upload_tomogram(client, personas["project"], simulated[0], references=[simulated[1]])
    tomogram = Tomogram.objects.get()
    body = {"picker": "dog", "classes": ["apo-ferritin", "beta-amylase", "virus-like-particle"], "score_threshold": 5}
    response = api_as(api_client, personas["owner"]).post(f"/api/tomograms/{tomogram.uuid}/runs/", body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["status"] == "queued"
    assert Job.objects.get(uuid=created["job"]).queue == "gpu"

    template_body = {"picker": "template", "classes": ["ribosome"], "score_threshold": 0.3}
    template_response = api_client.post(f"/api/tomograms/{tomogram.uuid}/runs/", template_body, format="json")
    assert template_response.status_code == 201, template_response.json()

    worker = start_worker("gpu")
    output, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, output.decode(errors="replace")
    response = api_client.get(f"/api/tomogram-runs/{created['uuid']}/")
    run = response.json()
    assert run["status"] == "succeeded", output.decode(errors="replace")
    assert run["ready"] is True
    assert set(run["summary"]["counts"]) <= set(body["classes"])
    assert run["summary"]["kept"] == sum(run["summary"]["counts"].values())
    assert [score["name"] for score in run["evaluation"]["classes"]][0] == "apo-ferritin"
    assert 0 <= run["evaluation"]["weighted_fbeta"] <= 1

    template_run = api_client.get(f"/api/tomogram-runs/{template_response.json()['uuid']}/").json()
    assert template_run["status"] == "succeeded", template_run["error"]
    assert template_run["summary"]["produced_by"].startswith("template matching + APT-ViT")
    assert set(template_run["summary"]["counts"]) <= {"ribosome"}

    points = api_client.get(f"/api/tomogram-runs/{created['uuid']}/points/").json()
    assert len(points["ids"]) == run["summary"]["kept"]
    assert len(points["positions"]) == 3 * run["summary"]["kept"]


def test_retried_job_gets_its_own_run(personas, run):
    from biovlm_web.tomograms.jobs import _run_for_job

    retry = Job.objects.create(
        project=run.project, kind="tomogram_run", params={**run.job.params, "picker": "dog"}, retry_of=run.job
    )
    new_run = _run_for_job(retry)
    assert new_run.pk != run.pk
    assert new_run.tomogram == run.tomogram
    assert _run_for_job(retry) == new_run


# --- Particles ----------------------------------------------------------------------------------


def test_particles_paginated_and_filtered(api_client, personas, run):
    client = api_as(api_client, personas["member"])
    page = client.get(f"/api/tomogram-runs/{run.uuid}/particles/?limit=2").json()
    assert page["count"] == 6
    assert [particle["id"] for particle in page["results"]] == [0, 1]
    assert page["results"][0] == {
        "id": 0, "class": "ribosome", "score": pytest.approx(0.9), "x": 100.0, "y": 100.0, "z": 100.0,
        "radius_angstrom": 150.0,
    }  # fmt: skip
    assert page["next"] is not None

    ribosomes = client.get(f"/api/tomogram-runs/{run.uuid}/particles/?class=ribosome&min_score=0.75").json()
    assert [particle["id"] for particle in ribosomes["results"]] == [0, 1]
    two_classes = client.get(f"/api/tomogram-runs/{run.uuid}/particles/?class=ribosome&class=thyroglobulin").json()
    assert two_classes["count"] == 4
    slab = client.get(f"/api/tomogram-runs/{run.uuid}/particles/?z_min=200&z_max=300").json()
    assert [particle["id"] for particle in slab["results"]] == [5]


@pytest.mark.parametrize(
    ("query", "field"), [("class=unicorn", "class"), ("min_score=high", "min_score"), ("z_max=x", "z_max")]
)
def test_particles_invalid_filter(api_client, personas, run, query, field):
    response = api_as(api_client, personas["member"]).get(f"/api/tomogram-runs/{run.uuid}/particles/?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_particles_of_unfinished_run(api_client, personas, tomogram):
    run = known_run(tomogram)
    Job.objects.filter(pk=run.job_id).update(status=Job.Status.RUNNING)
    response = api_as(api_client, personas["owner"]).get(f"/api/tomogram-runs/{run.uuid}/particles/")
    assert response.status_code == 409
    assert "running" in response.json()["detail"]


def test_slice_and_subtomogram(api_client, personas, run):
    client = api_as(api_client, personas["member"])
    response = client.get(f"/api/tomogram-runs/{run.uuid}/slices/10/")
    assert response["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (SHAPE[2], SHAPE[1])
    assert np.asarray(image).std() > 0
    assert client.get(f"/api/tomogram-runs/{run.uuid}/slices/48/").status_code == 400
    assert client.get(f"/api/tomograms/{run.tomogram.uuid}/slices/47/").status_code == 200

    body = client.get(f"/api/tomogram-runs/{run.uuid}/particles/5/subtomogram/").json()
    assert body["particle"]["class"] == "thyroglobulin"
    assert set(body["slices"]) == {"xy", "xz", "yz"}
    assert all(url.startswith("data:image/png;base64,") for url in body["slices"].values())
    assert body["box_start_voxel"] == {"z": 25 - 17, "y": 70 - 17, "x": 50 - 17}
    assert client.get(f"/api/tomogram-runs/{run.uuid}/particles/99/subtomogram/").status_code == 404


# --- Query tools --------------------------------------------------------------------------------


def test_query_neighbors(api_client, personas, run):
    response = api_as(api_client, personas["member"]).post(
        f"/api/tomogram-runs/{run.uuid}/query/neighbors/", {"particle_id": 1, "radius_angstrom": 250}, format="json"
    )
    assert response.status_code == 200, response.json()
    result = response.json()["result"]
    assert result["count"] == 2
    assert [particle["id"] for particle in result["particles"]] == [0, 2]
    assert result["particles"][0]["distance_angstrom"] == pytest.approx(200.0)


def test_query_region_composition(api_client, personas, run):
    body = {"shape": "box", "box_min": [0, 0, 0], "box_max": [600, 200, 200]}
    response = api_as(api_client, personas["member"]).post(
        f"/api/tomogram-runs/{run.uuid}/query/region_composition/", body, format="json"
    )
    result = response.json()["result"]
    assert result["count"] == 3
    assert {row["class"]: row["count"] for row in result["classes"]}["ribosome"] == 3
    assert result["volume_um3"] == pytest.approx(600 * 200 * 200 / 1e12)


def test_query_nearest_neighbor_distances(api_client, personas, run):
    body = {"class_a": "ribosome", "simulations": 19}
    response = api_as(api_client, personas["member"]).post(
        f"/api/tomogram-runs/{run.uuid}/query/nearest_neighbor_distances/", body, format="json"
    )
    result = response.json()["result"]
    assert result["count_a"] == 3
    assert result["distances_angstrom"] == pytest.approx([200.0, 200.0, 200.0])
    assert result["csr"]["simulations"] == 19


def test_query_clusters(api_client, personas, run):
    body = {"class_name": "ribosome", "link_distance_angstrom": 250, "min_size": 3}
    response = api_as(api_client, personas["member"]).post(
        f"/api/tomogram-runs/{run.uuid}/query/clusters/", body, format="json"
    )
    result = response.json()["result"]
    assert result["cluster_count"] == 1
    assert result["clusters"][0]["particle_ids"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("tool", "body", "field"),
    [
        ("neighbors", {"radius_angstrom": -5, "particle_id": 1}, "radius_angstrom"),
        ("neighbors", {"radius_angstrom": 100, "particle_id": 42}, "particle_id"),
        ("neighbors", {"radius_angstrom": 100, "point": [1, 2]}, "point"),
        ("region_composition", {"shape": "cube"}, "shape"),
        ("region_composition", {"shape": "box", "box_min": [5, 5, 5], "box_max": [1, 1, 1]}, "box_max"),
        ("nearest_neighbor_distances", {"class_a": "unicorn"}, None),
        ("nearest_neighbor_distances", {"class_a": "ribosome", "bins": 0}, "bins"),
        ("clusters", {"class_name": "ribosome"}, "link_distance_angstrom"),
        ("clusters", {"class_name": "ribosome", "link_distance_angstrom": 100, "colour": "red"}, "colour"),
        ("neighbors", {"radius_angstrom": 500, "particle_id": 1, "foo": 1}, "foo"),
    ],
)
def test_query_invalid_parameters(api_client, personas, run, tool, body, field):
    response = api_as(api_client, personas["member"]).post(
        f"/api/tomogram-runs/{run.uuid}/query/{tool}/", body, format="json"
    )
    assert response.status_code == 400, response.json()
    detail = response.json()["detail"]
    if field is None:
        assert "unicorn" in detail
    else:
        assert field in detail
        assert response.json()["field"] == field


def test_query_unknown_tool(api_client, personas, run):
    response = api_as(api_client, personas["member"]).post(f"/api/tomogram-runs/{run.uuid}/query/teleport/", {})
    assert response.status_code == 404
    assert "neighbors" in response.json()["detail"]


def test_tomogram_query_uses_newest_run(api_client, personas, run):
    response = api_as(api_client, personas["owner"]).post(
        f"/api/tomograms/{run.tomogram.uuid}/query/region_composition/", {"shape": "tomogram"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["result"]["count"] == 6


def test_ask_question(api_client, personas, run):
    response = api_as(api_client, personas["member"]).post(
        f"/api/tomogram-runs/{run.uuid}/ask/", {"question": "are there polysomes within 25 nm?"}, format="json"
    )
    body = response.json()
    assert body["tool"] == "clusters"
    assert body["params"] == {"class_name": "ribosome", "link_distance_angstrom": 250.0, "min_size": 3}
    assert body["result"]["cluster_count"] == 1

    unanswerable = api_client.post(f"/api/tomogram-runs/{run.uuid}/ask/", {"question": "hello"}, format="json").json()
    assert unanswerable["tool"] is None
    assert "Classes:" in unanswerable["reply"]


# --- Exports ------------------------------------------------------------------------------------


def test_exports_read_back(api_client, personas, run, tmp_path):
    client = api_as(api_client, personas["member"])
    outputs = {}
    for export_format in ("star4", "star5", "csv", "copick"):
        response = client.get(f"/api/tomogram-runs/{run.uuid}/export/{export_format}/")
        assert response.status_code == 200, export_format
        assert "attachment" in response["Content-Disposition"]
        outputs[export_format] = response.content

    (tmp_path / "p4.star").write_bytes(outputs["star4"])
    (tmp_path / "p5.star").write_bytes(outputs["star5"])
    (tmp_path / "p.csv").write_bytes(outputs["csv"])
    star4 = read_relion_star(tmp_path / "p4.star")
    star5 = read_relion_star(tmp_path / "p5.star", tomogram_shape=SHAPE, voxel_size=VOXEL_SIZE)
    csv = read_csv(tmp_path / "p.csv")
    for particles in (star4, star5, csv):
        assert len(particles) == 6
        assert particles.positions[5] == pytest.approx([500.0, 700.0, 250.0])
    assert list(csv.class_names[:3]) == ["ribosome"] * 3
    assert zip_names(outputs["copick"]) == [
        "Picks/biovlm_0_apo-ferritin.json", "Picks/biovlm_0_ribosome.json", "Picks/biovlm_0_thyroglobulin.json",
    ]  # fmt: skip
    import zipfile

    with zipfile.ZipFile(io.BytesIO(outputs["copick"])) as archive:
        archive.extract("Picks/biovlm_0_ribosome.json", tmp_path)
    assert len(read_copick(tmp_path / "Picks" / "biovlm_0_ribosome.json")) == 3
    assert client.get(f"/api/tomogram-runs/{run.uuid}/export/pdf/").status_code == 404


# --- Permissions --------------------------------------------------------------------------------


def test_permissions_of_runs(api_client, personas, run):
    paths = [
        f"/api/tomogram-runs/{run.uuid}/",
        f"/api/tomogram-runs/{run.uuid}/particles/",
        f"/api/tomogram-runs/{run.uuid}/points/",
        f"/api/tomograms/{run.tomogram.uuid}/",
    ]
    for user, expected in (("owner", 200), ("member", 200), ("stranger", 404)):
        api_client.force_authenticate(personas[user])
        for path in paths:
            assert api_client.get(path).status_code == expected, (user, path)
    api_client.force_authenticate(personas["stranger"])
    assert api_client.get("/api/tomograms/").json()["count"] == 0
    assert api_client.get("/api/tomogram-runs/").json()["count"] == 0
    response = api_client.post(f"/api/tomogram-runs/{run.uuid}/query/clusters/", {}, format="json")
    assert response.status_code == 404

    runs_url = f"/api/tomograms/{run.tomogram.uuid}/runs/"
    assert api_client.post(runs_url, {}, format="json").status_code == 404
    api_client.force_authenticate(personas["member"])
    assert api_client.post(runs_url, {}, format="json").status_code == 201

    api_client.force_authenticate(None)
    for path in paths:
        assert api_client.get(path).status_code == 401, path
    assert api_client.post(runs_url, {}, format="json").status_code == 401


def test_share_link_opens_run_read_only(api_client, personas, run):
    link = ShareLink.objects.create(project=run.project, target=run, created_by=personas["owner"])
    headers = {"HTTP_X_SHARE_TOKEN": link.token}
    assert api_client.get(f"/api/tomogram-runs/{run.uuid}/", **headers).status_code == 200
    assert api_client.get(f"/api/tomogram-runs/{run.uuid}/particles/", **headers).json()["count"] == 6
    response = api_client.post(f"/api/tomogram-runs/{run.uuid}/query/region_composition/", {}, format="json", **headers)
    assert response.status_code == 200
    assert api_client.get(f"/api/tomogram-runs/{run.uuid}/export/csv/", **headers).status_code == 200
    # The link opens the run only: not the tomogram, the run list or another run.
    assert api_client.get(f"/api/tomograms/{run.tomogram.uuid}/", **headers).status_code == 401
    assert api_client.get("/api/tomogram-runs/", **headers).status_code == 401
    other = known_run(run.tomogram)
    assert api_client.get(f"/api/tomogram-runs/{other.uuid}/", **headers).status_code == 404
    response = api_client.post(f"/api/tomograms/{run.tomogram.uuid}/runs/", {}, format="json", **headers)
    assert response.status_code == 401

    visitor = Client()
    response = visitor.get(reverse("share-open", args=[link.token]))
    assert response.status_code == 302
    page = visitor.get(response["Location"])
    assert page.status_code == 200
    assert "shared, read-only result" in page.content.decode()
    assert "Create share link" not in page.content.decode()

    link.revoked_at = link.created_at
    link.save()
    assert api_client.get(f"/api/tomogram-runs/{run.uuid}/", **headers).status_code == 404


def test_pages_for_stranger_and_anonymous(client, personas, run):
    pages = [
        reverse("tomogram-list", args=[run.project.uuid]),
        reverse("tomogram-detail", args=[run.tomogram.uuid]),
        reverse("tomogram-run-detail", args=[run.uuid]),
    ]
    client.force_login(personas["member"])
    for page in pages:
        assert client.get(page).status_code == 200, page
    client.force_login(personas["stranger"])
    for page in pages:
        assert client.get(page).status_code == 404, page
    client.logout()
    for page in pages:
        assert client.get(page).status_code == 302, page


def test_deleting_volume_file_deletes_tomogram(api_client, personas, run):
    response = api_as(api_client, personas["owner"]).delete(f"/api/files/{run.tomogram.volume.uuid}/")
    assert response.status_code == 204
    assert not Tomogram.objects.exists()
    assert not TomogramRun.objects.exists()
    assert not run.map_file.storage.exists(run.map_file.name)
    # The job row stays as the record of the work done.
    assert Job.objects.filter(pk=run.job_id).exists()


def test_deleting_project_deletes_runs(personas, run):
    run.project.delete()
    assert not Tomogram.objects.exists()
    assert not TomogramRun.objects.exists()
    assert not Job.objects.exists()


def test_project_page_links_tomograms(client, personas):
    client.force_login(personas["member"])
    html = client.get(reverse("project-detail", args=[personas["project"].uuid])).content.decode()
    assert reverse("tomogram-list", args=[personas["project"].uuid]) in html


def test_schema_lists_tomogram_paths(api_client, personas):
    schema = api_as(api_client, personas["member"]).get("/api/schema/?format=json").json()
    paths = schema["paths"]
    for expected in (
        "/api/tomograms/",
        "/api/tomograms/{uuid}/runs/",
        "/api/tomograms/{uuid}/query/{tool}/",
        "/api/tomogram-runs/{uuid}/particles/",
        "/api/tomogram-runs/{uuid}/query/{tool}/",
        "/api/tomogram-runs/{uuid}/ask/",
        "/api/tomogram-runs/{uuid}/export/{export_format}/",
    ):
        assert expected in paths, expected
    query = paths["/api/tomograms/{uuid}/query/{tool}/"]["post"]
    examples = query["requestBody"]["content"]["application/json"]["examples"]
    assert {"Neighbors", "RegionComposition", "NearestNeighborDistances", "Clusters"} <= set(examples)
