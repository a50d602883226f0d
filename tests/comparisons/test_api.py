"""The comparisons REST API: building groups, running, typed hypotheses, edits, exports and access."""

import csv
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from biovlm_web.comparisons.models import Comparison, Hypothesis
from biovlm_web.core.jobs import execute_job
from biovlm_web.core.models import Job, ShareLink
from tests.comparisons.images import png_bytes, synthetic_groups, zip_bytes

# Jobs run in this process through execute_job, whose heartbeat thread needs its own
# database connection, so each test commits for real.
pytestmark = pytest.mark.django_db(transaction=True)


def upload(client, comparison, group, files):
    url = reverse("api-comparison-images", args=[comparison.uuid])
    return client.post(url, {"group": group, "file": files}, format="multipart")


def filled(api_client, personas, comparison, count=6):
    images_a, images_b = synthetic_groups(count)
    api_client.force_authenticate(personas["member"])
    response = upload(
        api_client, comparison, "a", [SimpleUploadedFile(f"a{i}.png", png_bytes(p)) for i, p in enumerate(images_a)]
    )
    assert response.status_code == 201, response.json()
    archive = zip_bytes({f"sparse/b{i}.png": png_bytes(p) for i, p in enumerate(images_b)})
    response = upload(api_client, comparison, "b", [SimpleUploadedFile("sparse.zip", archive)])
    assert response.status_code == 201, response.json()
    return response


def run_now(api_client, comparison, **options):
    response = api_client.post(
        reverse("api-comparison-run", args=[comparison.uuid]),
        {"resamples": 200, "permutations": 200, **options},
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert execute_job(str(response.json()["job"])) == "succeeded"
    return Job.objects.get(uuid=response.json()["job"])


def test_create_comparison(api_client, personas):
    api_client.force_authenticate(personas["member"])
    response = api_client.post(
        reverse("api-comparison-list"),
        {"project": str(personas["project"].uuid), "name": "Treated", "name_a": "Drug", "name_b": "Vehicle"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name_a"] == "Drug"
    assert body["counts"] == {"a": 0, "b": 0}


def test_create_in_other_project_is_404(api_client, personas):
    api_client.force_authenticate(personas["member"])
    response = api_client.post(
        reverse("api-comparison-list"),
        {"project": str(personas["other_project"].uuid), "name": "Mine now"},
        format="json",
    )
    assert response.status_code == 404


def test_upload_names_undecodable_file(api_client, personas, comparison):
    response = filled(api_client, personas, comparison, count=3)
    assert response.json()["counts"] == {"a": 3, "b": 3}
    names = {item["name"] for item in response.json()["added"]}
    assert "sparse.zip:sparse/b0.png" in names

    broken = SimpleUploadedFile("broken.png", b"\x89PNG\r\n\x1a\nthis is not a PNG")
    response = upload(api_client, comparison, "a", [broken])
    assert response.status_code == 201
    assert response.json()["added"] == []
    skipped = response.json()["skipped"]
    assert skipped[0]["image"] == "broken.png"
    assert "cannot be decoded" in skipped[0]["reason"]
    comparison.refresh_from_db()
    assert comparison.skipped[0]["image"] == "broken.png"
    assert response.json()["counts"] == {"a": 3, "b": 3}


def test_upload_names_text_file_plainly(api_client, personas, comparison):
    api_client.force_authenticate(personas["member"])
    notes = SimpleUploadedFile("notes.txt", b"Plate 3 was imaged on Tuesday.\n")
    response = upload(api_client, comparison, "a", [notes])
    assert response.status_code == 201
    reason = response.json()["skipped"][0]["reason"]
    assert (
        reason == "cannot be decoded: the content is not in an image format that Pillow, tifffile or pydicom can read"
    )
    assert "BytesIO" not in reason


def test_upload_rejects_unknown_group(api_client, personas, comparison):
    api_client.force_authenticate(personas["member"])
    response = upload(api_client, comparison, "c", [SimpleUploadedFile("x.png", b"")])
    assert response.status_code == 400
    assert "group" in response.json()["detail"]


def test_add_project_files(api_client, personas, comparison):
    from biovlm_web.uploads.models import DataFile, Dataset

    dataset = Dataset.objects.create(project=personas["project"], name="Session 1")
    images_a, _ = synthetic_groups(2)
    data_file = DataFile(dataset=dataset, original_name="stored.png", size=1, sha256="0" * 64, kind="image")
    data_file.file.save("stored.png", SimpleUploadedFile("stored.png", png_bytes(images_a[0])), save=True)
    api_client.force_authenticate(personas["member"])
    url = reverse("api-comparison-images", args=[comparison.uuid])
    response = api_client.post(url, {"group": "a", "data_files": [str(data_file.uuid)]}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["added"][0]["name"] == "stored.png"
    assert comparison.images.get().source_file == data_file


def test_run_needs_two_images_per_group(api_client, personas, comparison):
    api_client.force_authenticate(personas["member"])
    response = api_client.post(reverse("api-comparison-run", args=[comparison.uuid]), {}, format="json")
    assert response.status_code == 400
    assert "Group Crowded has 0 image(s)" in response.json()["detail"]


def test_run_rejects_unknown_proposer(api_client, personas, comparison):
    filled(api_client, personas, comparison, count=2)
    response = api_client.post(
        reverse("api-comparison-run", args=[comparison.uuid]), {"proposers": ["guess"]}, format="json"
    )
    assert response.status_code == 400
    assert "proposers must be" in response.json()["detail"]


def test_run_ranks_count_first(api_client, personas, comparison):
    filled(api_client, personas, comparison)
    job = run_now(api_client, comparison, hypotheses=5)
    assert job.result["hypotheses"] == 5
    comparison.refresh_from_db()
    proposed = comparison.summary["proposed"]
    assert proposed > 5
    expected = f"Ranked {proposed} hypotheses and kept the top 5 (the Number of hypotheses option)"
    assert any(line.endswith(expected) for line in job.log)
    response = api_client.get(reverse("api-hypothesis-list"), {"comparison": str(comparison.uuid)})
    rows = response.json()["results"]
    assert [row["rank"] for row in rows] == [1, 2, 3, 4, 5]
    top = rows[0]
    assert top["source"]["feature"] in ("object_count", "nearest_neighbour_distance", "foreground_fraction")
    assert top["auroc"] >= 0.9
    assert top["auroc_low"] <= top["auroc"] <= top["auroc_high"]
    assert top["direction"] == "more true of Crowded than of Sparse"
    assert len(top["evidence"]["a_best"]) == 3
    assert len(top["scores"]) == 12
    comparison.refresh_from_db()
    assert len(comparison.features["rows"]) == 12

    api_client.force_login(personas["member"])
    page = api_client.get(reverse("job-detail", args=[job.uuid])).content.decode()
    assert "Open the comparison</a>: 5 hypotheses ranked." in page
    assert "{&#x27;comparison&#x27;" not in page


def test_typed_hypothesis_is_ranked(api_client, personas, comparison):
    filled(api_client, personas, comparison)
    run_now(api_client, comparison, hypotheses=3)
    url = reverse("api-comparison-rank", args=[comparison.uuid])
    response = api_client.post(url, {"description": "more cells per image"}, format="json")
    assert response.status_code == 201, response.json()
    typed = response.json()
    assert typed["proposer"] == "user"
    assert typed["source"]["feature"] == "object_count"
    assert typed["auroc"] >= 0.9
    assert typed["typed_by"] == "member"
    assert comparison.hypotheses.count() == 4
    assert sorted(comparison.hypotheses.values_list("rank", flat=True)) == [1, 2, 3, 4]

    response = api_client.post(url, {"description": "fewer nuclei"}, format="json")
    assert response.json()["auroc"] <= 0.1
    assert response.json()["direction"] == "more true of Sparse than of Crowded"


def test_typed_hypothesis_without_match_is_400(api_client, personas, comparison):
    filled(api_client, personas, comparison, count=3)
    run_now(api_client, comparison)
    url = reverse("api-comparison-rank", args=[comparison.uuid])
    response = api_client.post(url, {"description": "a happier mood"}, format="json")
    assert response.status_code == 400
    assert "No measured property matches 'a happier mood'" in response.json()["detail"]


def test_typed_hypothesis_before_run_is_400(api_client, personas, comparison):
    api_client.force_authenticate(personas["member"])
    url = reverse("api-comparison-rank", args=[comparison.uuid])
    response = api_client.post(url, {"description": "larger nuclei"}, format="json")
    assert response.status_code == 400
    assert "run it first" in response.json()["detail"]


def test_rename_and_dismiss_persist(client, api_client, personas, comparison):
    filled(api_client, personas, comparison, count=3)
    run_now(api_client, comparison, hypotheses=3)
    first, second = comparison.hypotheses.all()[:2]
    url = reverse("api-hypothesis-detail", args=[first.uuid])
    response = api_client.patch(url, {"description": "  crowded   fields "}, format="json")
    assert response.status_code == 200
    assert response.json()["description"] == "crowded fields"
    response = api_client.patch(
        reverse("api-hypothesis-detail", args=[second.uuid]), {"dismissed": True}, format="json"
    )
    assert response.json()["dismissed"] is True
    response = api_client.patch(url, {"auroc": 0.0}, format="json")
    first.refresh_from_db()
    assert first.auroc > 0.0
    assert first.original_description != "crowded fields"

    client.force_login(personas["member"])
    response = client.get(reverse("comparison-export", args=[comparison.uuid, "csv"]))
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["description"] for row in rows][0] == "crowded fields"
    assert second.description not in [row["description"] for row in rows]
    assert len(rows) == 2


def test_exports(client, api_client, personas, comparison):
    filled(api_client, personas, comparison, count=3)
    run_now(api_client, comparison, hypotheses=2)
    client.force_login(personas["member"])
    response = client.get(reverse("comparison-export", args=[comparison.uuid, "json"]))
    body = json.loads(response.content)
    assert body["names"] == {"a": "Crowded", "b": "Sparse"}
    assert len(body["hypotheses"]) == 2
    assert "name" in body["hypotheses"][0]["evidence"]["a_best"][0]
    assert body["rank_order"].startswith("Sorted by AUROC, highest first.")

    response = client.get(reverse("comparison-export", args=[comparison.uuid, "html"]))
    html = response.content.decode()
    assert "Sorted by AUROC, highest first." in html
    assert response["Content-Disposition"].startswith("attachment;")
    assert "data:image/jpeg;base64," in html
    assert "<script" not in html
    assert "http://" not in html
    assert "https://" not in html


def test_schema_lists_comparison_paths(api_client, personas):
    api_client.force_authenticate(personas["member"])
    schema = api_client.get(reverse("schema"), {"format": "json"}).json()
    for path in (
        "/api/comparisons/",
        "/api/comparisons/{uuid}/images/",
        "/api/comparisons/{uuid}/run/",
        "/api/comparisons/{uuid}/rank/",
        "/api/hypotheses/{uuid}/",
    ):
        assert path in schema["paths"], path


def test_anonymous_api_is_401(api_client, comparison):
    for url in (reverse("api-comparison-list"), reverse("api-comparison-detail", args=[comparison.uuid])):
        assert api_client.get(url).status_code == 401
    assert api_client.get(reverse("api-hypothesis-list")).status_code == 401


def test_stranger_gets_404(api_client, client, personas, comparison):
    api_client.force_authenticate(personas["stranger"])
    assert api_client.get(reverse("api-comparison-detail", args=[comparison.uuid])).status_code == 404
    assert api_client.get(reverse("api-comparison-list")).json()["count"] == 0
    response = api_client.post(
        reverse("api-comparison-rank", args=[comparison.uuid]), {"description": "more cells"}, format="json"
    )
    assert response.status_code == 404
    response = upload(api_client, comparison, "a", [SimpleUploadedFile("x.png", b"x")])
    assert response.status_code == 404
    client.force_login(personas["stranger"])
    assert client.get(reverse("comparison-detail", args=[comparison.uuid])).status_code == 404
    assert client.get(reverse("comparison-export", args=[comparison.uuid, "csv"])).status_code == 404
    assert client.post(reverse("comparison-run", args=[comparison.uuid])).status_code == 404


def test_stranger_cannot_edit_hypothesis(api_client, personas, comparison):
    filled(api_client, personas, comparison, count=2)
    run_now(api_client, comparison, hypotheses=1)
    hypothesis = comparison.hypotheses.get()
    api_client.force_authenticate(personas["stranger"])
    url = reverse("api-hypothesis-detail", args=[hypothesis.uuid])
    assert api_client.patch(url, {"dismissed": True}, format="json").status_code == 404
    hypothesis.refresh_from_db()
    assert hypothesis.dismissed is False


def test_share_link_opens_read_only(client, api_client, personas, comparison):
    filled(api_client, personas, comparison, count=2)
    run_now(api_client, comparison, hypotheses=2)
    Hypothesis.objects.filter(comparison=comparison, rank=2).update(dismissed=True)
    link = ShareLink.objects.create(project=comparison.project, target=comparison, created_by=personas["owner"])
    page_url = reverse("comparison-detail", args=[comparison.uuid])
    assert client.get(page_url).status_code == 302

    response = client.get(reverse("share-open", args=[link.token]), follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "You are viewing a shared, read-only result." in html
    assert "Run comparison" not in html
    assert 'data-component="job-progress"' not in html
    assert len(response.context["payload"]["hypotheses"]) == 1
    image = comparison.images.first()
    assert client.get(reverse("comparison-image", args=[comparison.uuid, image.uuid, "thumbnail"])).status_code == 200
    assert client.get(reverse("comparison-export", args=[comparison.uuid, "html"])).status_code == 200
    assert client.post(reverse("comparison-run", args=[comparison.uuid])).status_code == 302  # to sign in

    link.revoked_at = link.created_at
    link.save()
    assert client.get(page_url).status_code == 302


def test_plotly_is_served_locally(client):
    response = client.get("/static/plotly/plotly.min.js")
    assert response.status_code == 200
    content = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"plotly" in content[:2000].lower()


def test_delete_removes_stored_images(api_client, personas, comparison):
    filled(api_client, personas, comparison, count=2)
    image = comparison.images.first()
    storage, name = image.image.storage, image.image.name
    assert storage.exists(name)
    response = api_client.delete(reverse("api-comparison-detail", args=[comparison.uuid]))
    assert response.status_code == 204
    assert not storage.exists(name)
    assert not Comparison.objects.filter(pk=comparison.pk).exists()


def test_rerun_keeps_edits_and_typed(api_client, personas, comparison):
    filled(api_client, personas, comparison, count=3)
    run_now(api_client, comparison, hypotheses=4)
    first, second = comparison.hypotheses.all()[:2]
    api_client.patch(reverse("api-hypothesis-detail", args=[first.uuid]), {"description": "crowded"}, format="json")
    api_client.patch(reverse("api-hypothesis-detail", args=[second.uuid]), {"dismissed": True}, format="json")
    rank_url = reverse("api-comparison-rank", args=[comparison.uuid])
    typed = api_client.post(rank_url, {"description": "larger nuclei"}, format="json").json()

    images_a, _ = synthetic_groups(4)
    upload(api_client, comparison, "a", [SimpleUploadedFile("extra.png", png_bytes(images_a[3]))])
    run_now(api_client, comparison, hypotheses=4)

    rows = {row.original_description: row for row in comparison.hypotheses.all()}
    assert len(rows) == 5
    kept_first = [row for row in rows.values() if row.source.get("feature") == first.source["feature"]]
    assert kept_first[0].description == "crowded"
    kept_second = [row for row in rows.values() if row.source.get("feature") == second.source["feature"]]
    assert kept_second[0].dismissed is True
    retyped = rows["larger nuclei"]
    assert retyped.typed_by == personas["member"]
    assert len(retyped.scores) == 7
    assert retyped.uuid != typed["uuid"]
    assert sorted(row.rank for row in rows.values()) == [1, 2, 3, 4, 5]


def test_remove_image_and_clear_group(api_client, personas, comparison):
    filled(api_client, personas, comparison, count=3)
    upload(api_client, comparison, "b", [SimpleUploadedFile("broken.png", b"not an image")])
    image = comparison.images.filter(group="a").first()
    url = reverse("api-comparison-remove-image", args=[comparison.uuid, image.uuid])
    assert api_client.delete(url).status_code == 204
    assert comparison.images.filter(group="a").count() == 2
    assert api_client.delete(url).status_code == 404

    images_url = reverse("api-comparison-images", args=[comparison.uuid])
    assert api_client.delete(images_url).status_code == 400
    assert api_client.delete(f"{images_url}?group=b").status_code == 204
    comparison.refresh_from_db()
    assert comparison.images.filter(group="b").count() == 0
    assert comparison.images.filter(group="a").count() == 2
    assert comparison.skipped == []

    api_client.force_authenticate(personas["stranger"])
    assert api_client.delete(f"{images_url}?group=a").status_code == 404
    assert comparison.images.filter(group="a").count() == 2


def test_upload_over_limit_is_413(api_client, personas, comparison, settings):
    settings.UPLOAD_MAX_FILE_SIZE = 1000
    api_client.force_authenticate(personas["member"])
    response = upload(api_client, comparison, "a", [SimpleUploadedFile("huge.png", b"x" * 5000)])
    assert response.status_code == 413
    assert "huge.png is larger than the upload limit" in response.json()["detail"]
    assert comparison.images.count() == 0
