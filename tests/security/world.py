"""One stored example of every kind of object, for tests that visit every URL pattern.

``build_world`` stores, in one project, a job, a dataset with files, an upload session, a
tomogram with a run, a comparison that has run (with hypotheses), an anomaly scene with a run,
a segment and a verdict, and a valid share link to each shareable result. It also stores
scratch objects that the matrix deletes, so deleting them leaves the main objects intact.
"""

import hashlib
from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from analysis.anomaly.simulate import lab_rules, simulate_video
from tests.comparisons.images import png_bytes, synthetic_groups
from tests.web.tomogram_data import known_run as known_tomogram_run
from tests.web.tomogram_data import upload_tomogram, write_simulated_mrc

PASSWORD_SUFFIX = "-password-1"
VIDEO_OPTIONS = {"duration_s": 4.0, "fps": 8.0, "size": (96, 72)}


def _user(username: str, **extra):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, password=username + PASSWORD_SUFFIX, **extra)


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _created(response, status=201):
    assert response.status_code == status, response.content[:500]
    return response.json()


def store_video(project, path: Path, name: str):
    from biovlm_web.uploads.models import DataFile, Dataset

    content = path.read_bytes()
    dataset, _ = Dataset.objects.get_or_create(project=project, name="Videos")
    item = DataFile(
        dataset=dataset,
        original_name=name,
        extension=".mp4",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        kind=DataFile.Kind.VIDEO,
        content_type="video/mp4",
    )
    item.file.save(path.name, ContentFile(content), save=True)
    return item


def _comparison(owner, project, name, count):
    from biovlm_web.comparisons.models import Comparison

    comparison = Comparison.objects.create(project=project, name=name, name_a="Crowded", name_b="Sparse")
    images_a, images_b = synthetic_groups(count)
    url = reverse("api-comparison-images", args=[comparison.uuid])
    for group, images in (("a", images_a), ("b", images_b)):
        files = [SimpleUploadedFile(f"{group}{i}.png", png_bytes(pixels)) for i, pixels in enumerate(images)]
        _created(_api(owner).post(url, {"group": group, "file": files}, format="multipart"))
    return comparison


def _anomaly_objects(owner, project, directory: Path):
    from biovlm_web.anomalies.models import Scene, Segment, VideoRun

    normal_path = directory / "normal.mp4"
    simulate_video(normal_path, None, seed=1, **VIDEO_OPTIONS)
    video = store_video(project, normal_path, "normal.mp4")
    body = {
        "project": str(project.uuid),
        "name": "Bench 1",
        "normal_videos": [str(video.uuid)],
        "rules": lab_rules().as_dict(),
        "options": {"max_side": 96},
    }
    scene = Scene.objects.get(uuid=_created(_api(owner).post("/api/scenes/", body, format="json"))["uuid"])
    scratch_scene = Scene.objects.get(
        uuid=_created(_api(owner).post("/api/scenes/", {**body, "name": "Scratch"}, format="json"))["uuid"]
    )

    def run_with_segment():
        run = VideoRun.objects.create(
            scene=scene, video=video, duration_s=4.0, fps=8.0, threshold=0.5, created_by=owner
        )
        segment = Segment.objects.create(
            run=run,
            start_s=1.0,
            end_s=3.0,
            peak_score=1.0,
            peak_s=2.0,
            category="restricted_zone",
            category_label="entry into a restricted zone",
            facts={"components": [], "track_ids": [1]},
            rules=[{"rule": "restricted_zone", "track_id": 1, "start_s": 1.0, "end_s": 3.0}],
            reasoning="Track 1 entered the restricted zone.",
            path=Segment.Path.MEASURED,
        )
        return run, segment

    run, segment = run_with_segment()
    # Bytes that stand in for the WebM preview; the preview view serves whatever is stored.
    run.preview.save("preview.webm", ContentFile(b"\x1a\x45\xdf\xa3 preview"), save=True)
    run.masks.save("masks.json", ContentFile(b'{"format": "polygons", "frames": []}'), save=True)
    scratch_run, _ = run_with_segment()
    verdict = _created(
        _api(owner).post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "confirm"}, format="json")
    )
    return {
        "video": video,
        "scene": scene,
        "scratch_scene": scratch_scene,
        "video_run": run,
        "scratch_video_run": scratch_run,
        "segment": segment,
        "verdict": verdict["uuid"],
    }


def build_world(directory: Path) -> dict:
    """Store the objects described in the module docstring and return them by name."""
    from biovlm_web.core.jobs import execute_job, submit_job
    from biovlm_web.core.models import Job, Membership, Project, ShareLink
    from biovlm_web.tomograms.models import Tomogram
    from biovlm_web.uploads.models import DataFile, Dataset

    owner, member, stranger = _user("owner"), _user("member"), _user("stranger")
    admin = _user("admin", is_staff=True, is_superuser=True)
    project = Project.objects.create(name="Cell biology", owner=owner)
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    Membership.objects.create(project=project, user=member)
    other = Project.objects.create(name="Other lab", owner=stranger)
    Membership.objects.create(project=other, user=stranger, role=Membership.Role.OWNER)

    job = submit_job(project, "test_steps", {"steps": 1}, user=owner)
    finished_job = submit_job(project, "test_steps", {"steps": 1}, user=owner)
    Job.objects.filter(pk=finished_job.pk).update(status=Job.Status.FAILED)

    dataset = Dataset.objects.create(project=project, name="Micrographs", created_by=owner)
    scratch_file = DataFile(dataset=dataset, original_name="scratch.txt", extension=".txt", size=5, sha256="0" * 64)
    scratch_file.file.save("scratch.txt", ContentFile(b"hello"), save=True)
    upload = _created(
        _api(owner).post(
            "/api/uploads/", {"dataset": str(dataset.uuid), "filename": "a.png", "size": 10}, format="json"
        )
    )
    scratch_upload = _created(
        _api(owner).post(
            "/api/uploads/", {"dataset": str(dataset.uuid), "filename": "b.png", "size": 10}, format="json"
        )
    )

    mrc_path, _ = write_simulated_mrc(directory)
    owner_client = Client()
    owner_client.force_login(owner)
    assert upload_tomogram(owner_client, project, mrc_path).status_code == 302
    tomogram = Tomogram.objects.get(project=project)
    tomogram_run = known_tomogram_run(tomogram, owner)

    comparison = _comparison(owner, project, "Crowded against sparse", 4)
    response = _api(owner).post(
        reverse("api-comparison-run", args=[comparison.uuid]), {"resamples": 100, "permutations": 100}, format="json"
    )
    assert execute_job(_created(response, 202)["job"]) == "succeeded"
    comparison.refresh_from_db()
    hypothesis = comparison.hypotheses.first()
    comparison_image = comparison.images.first()
    scratch_comparison = _comparison(owner, project, "Scratch", 2)

    anomalies = _anomaly_objects(owner, project, directory)

    shared = {
        "job": job,
        "tomogram-run": tomogram_run,
        "comparison": comparison,
        "video_run": anomalies["video_run"],
    }
    share_links = {
        name: ShareLink.objects.create(project=project, target=target, created_by=owner, label=name)
        for name, target in shared.items()
    }
    scratch_link = ShareLink.objects.create(project=project, target=job, created_by=owner, label="scratch")
    return {
        "owner": owner,
        "member": member,
        "stranger": stranger,
        "admin": admin,
        "project": project,
        "other_project": other,
        "job": job,
        "finished_job": finished_job,
        "dataset": dataset,
        "data_file": tomogram.volume,
        "scratch_file": scratch_file,
        "upload": upload["uuid"],
        "scratch_upload": scratch_upload["uuid"],
        "tomogram": tomogram,
        "tomogram_run": tomogram_run,
        "comparison": comparison,
        "comparison_image": comparison_image,
        "hypothesis": hypothesis,
        "scratch_comparison": scratch_comparison,
        "scratch_comparison_image": scratch_comparison.images.first(),
        "share_links": share_links,
        "scratch_link": scratch_link,
        **anomalies,
    }


def delete_world(world: dict) -> None:
    """Delete everything ``build_world`` stored, so later tests start from an empty database."""
    from django.contrib.auth import get_user_model

    from biovlm_web.core.models import Job, Project

    for project in Project.objects.all():
        for run in project.tomograms.all():
            run.delete()
        project.delete()
    Job.objects.all().delete()
    get_user_model().objects.all().delete()
