"""The anomalies app: scenes, video runs, segments and verdicts through the API, the jobs and the pages."""

import hashlib
import json
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import override_settings
from django.urls import reverse

from analysis.anomaly import fit_scene
from analysis.anomaly.metrics import temporal_iou
from analysis.anomaly.simulate import lab_rules, simulate_video
from analysis.progress import RecordingReporter
from biovlm_web.anomalies.jobs import run_fit, run_video
from biovlm_web.anomalies.models import Scene, Segment, VideoRun
from biovlm_web.core.models import Job, ShareLink
from biovlm_web.uploads.models import DataFile, Dataset
from tests.analysis.anomaly.test_reason import image_count, scripted_server  # noqa: F401  a fixture
from tests.conftest import start_worker

pytestmark = pytest.mark.django_db

# Small and short, so that fitting and analysing take about a second each.
VIDEO_OPTIONS = {"duration_s": 10.0, "fps": 10.0, "size": (160, 120)}


def store_video(project, path, name=None) -> DataFile:
    content = path.read_bytes()
    dataset, _ = Dataset.objects.get_or_create(project=project, name="Videos")
    item = DataFile(
        dataset=dataset,
        original_name=name or path.name,
        extension=".mp4",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        kind=DataFile.Kind.VIDEO,
        content_type="video/mp4",
    )
    item.file.save(path.name, ContentFile(content), save=True)
    return item


@pytest.fixture
def videos(tmp_path, personas):
    normal = tmp_path / "normal.mp4"
    anomalous = tmp_path / "restricted.mp4"
    simulate_video(normal, None, seed=1, **VIDEO_OPTIONS)
    truth = simulate_video(anomalous, "restricted_zone", seed=2, **VIDEO_OPTIONS)
    project = personas["project"]
    return {"normal": store_video(project, normal), "anomalous": store_video(project, anomalous), "truth": truth}


def api_as(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def create_scene(api_client, personas, videos, **extra):
    body = {
        "project": str(personas["project"].uuid),
        "name": "Bench 1",
        "normal_videos": [str(videos["normal"].uuid)],
        "rules": lab_rules().as_dict(),
        "options": {"max_side": 160},
        **extra,
    }
    return api_as(api_client, personas["owner"]).post("/api/scenes/", body, format="json")


def known_frame(index: int) -> dict:
    """Frame ``index`` of a known run: track 1 scores 0.9 from 6 s to 9 s, track 2 scores 0.35 from 2 s to 3 s."""
    score, tracks = 0.1, []
    if 60 <= index < 90:
        score, tracks = 0.9, [{"track_id": 1, "box": [10, 10, 30, 30]}]
    elif 20 <= index < 30:
        score, tracks = 0.35, [{"track_id": 2, "box": [50, 50, 70, 70]}]
    return {"time_s": index / 10, "score": score, "tracks": tracks}


def known_run(scene, video, user) -> VideoRun:
    """A run with one flagged segment, as the analysis job stores it, without running the job."""
    run = VideoRun.objects.create(
        scene=scene,
        video=video,
        duration_s=10.0,
        fps=10.0,
        threshold=0.5,
        frames=[known_frame(index) for index in range(100)],
        rule_hits=[{"rule": "restricted_zone", "track_id": 1, "start_s": 6.0, "end_s": 9.0, "message": "in zone"}],
        created_by=user,
    )
    Segment.objects.create(
        run=run,
        start_s=6.0,
        end_s=9.0,
        peak_score=1.0,
        peak_s=7.0,
        category="restricted_zone",
        category_label="entry into a restricted zone",
        facts={"components": [], "track_ids": [1]},
        rules=[{"rule": "restricted_zone", "track_id": 1, "start_s": 6.0, "end_s": 9.0}],
        reasoning="Track 1 entered <restricted>.",
        path=Segment.Path.MEASURED,
    )
    return run


# --- Scenes -----------------------------------------------------------------------------------


def test_scene_create_stores_rules(api_client, personas, videos):
    response = create_scene(api_client, personas, videos)
    assert response.status_code == 201, response.json()
    scene = response.json()
    assert scene["normal_videos"] == [str(videos["normal"].uuid)]
    assert [zone["name"] for zone in scene["rules"]["zones"]] == ["rack", "work", "storage", "restricted"]
    assert scene["options"] == {"fps": 10.0, "max_side": 160}
    assert scene["fitted"] is False


def test_scene_rejects_invalid_rules(api_client, personas, videos):
    rules = {"zones": [{"name": "rack", "kind": "storage", "polygon": [[0, 0], [1, 1]]}]}
    response = create_scene(api_client, personas, videos, rules=rules)
    assert response.status_code == 400
    assert "polygon of at least 3 points" in response.json()["errors"]["rules"][0]


def test_scene_rejects_invalid_options(api_client, personas, videos):
    response = create_scene(api_client, personas, videos, options={"fps": 500})
    assert response.status_code == 400
    assert "fps must be a number from 1.0 to 30.0" in response.json()["errors"]["options"][0]


def test_scene_rejects_non_video_file(api_client, personas, videos):
    videos["normal"].kind = DataFile.Kind.IMAGE
    videos["normal"].save()
    response = create_scene(api_client, personas, videos)
    assert response.status_code == 400
    assert "Not video files: normal.mp4" in response.json()["errors"]["normal_videos"][0]


def test_runs_need_fitted_scene(api_client, personas, videos):
    scene = create_scene(api_client, personas, videos).json()
    response = api_client.post(
        f"/api/scenes/{scene['uuid']}/runs/", {"videos": [str(videos["anomalous"].uuid)]}, format="json"
    )
    assert response.status_code == 400
    assert "not fitted yet" in response.json()["errors"]["videos"][0]


def test_scene_permissions(api_client, personas, videos):
    scene = create_scene(api_client, personas, videos).json()
    url = f"/api/scenes/{scene['uuid']}/"
    api_client.force_authenticate(None)
    assert api_client.get(url).status_code == 401
    assert api_as(api_client, personas["member"]).get(url).status_code == 200
    assert api_as(api_client, personas["stranger"]).get(url).status_code == 404
    assert api_client.post(f"{url}fit/").status_code == 404
    assert api_client.get("/api/scenes/").json()["count"] == 0


def test_scene_page_permissions(client, personas, videos, api_client):
    scene = Scene.objects.get(uuid=create_scene(api_client, personas, videos).json()["uuid"])
    url = reverse("anomaly-scene-detail", args=[scene.uuid])
    assert client.get(url).status_code == 302
    client.force_login(personas["stranger"])
    assert client.get(url).status_code == 404
    client.force_login(personas["member"])
    html = client.get(url).content.decode()
    assert "Bench 1" in html
    editor = client.get(url).context["editor"]
    assert [zone["name"] for zone in editor["rules"]["zones"]] == ["rack", "work", "storage", "restricted"]
    assert editor["frame_url"] == reverse("anomaly-scene-frame", args=[scene.uuid])
    assert 'data-component="scene-editor"' in html


# --- Segments and verdicts --------------------------------------------------------------------


@pytest.fixture
def run(api_client, personas, videos):
    scene = Scene.objects.get(uuid=create_scene(api_client, personas, videos).json()["uuid"])
    return known_run(scene, videos["anomalous"], personas["owner"])


def test_verdict_history_kept(api_client, personas, run):
    segment = run.segments.get()
    url = f"/api/segments/{segment.uuid}/verdicts/"
    member = api_as(api_client, personas["member"])
    assert member.post(url, {"decision": "confirm"}, format="json").status_code == 201
    relabel = member.post(url, {"decision": "relabel", "category": "wrong_placement"}, format="json")
    assert relabel.status_code == 201
    adjusted = member.post(url, {"decision": "adjust", "start_s": 5.5, "end_s": 9.5}, format="json").json()
    assert adjusted["category"] == "wrong_placement"
    assert (adjusted["start_s"], adjusted["end_s"]) == (5.5, 9.5)
    assert adjusted["user"] == "member"

    history = member.get(f"/api/verdicts/?segment={segment.uuid}").json()["results"]
    assert [item["decision"] for item in history] == ["adjust", "relabel", "confirm"]
    assert member.get(f"/api/segments/{segment.uuid}/").json()["verdict"]["decision"] == "adjust"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"decision": "relabel"}, "category", "relabel needs the new category."),
        ({"decision": "adjust", "start_s": 2}, "start_s", "adjust needs both start_s and end_s."),
        ({"decision": "adjust", "start_s": 4, "end_s": 3}, "end_s", "End (3 s) must be after Start (4 s)."),
        ({"decision": "adjust", "start_s": 4, "end_s": 30}, "end_s", "past the end of the video (10.000 s)"),
        ({"decision": "relabel", "category": "alien"}, "category", "not a valid choice"),
    ],
)
def test_verdict_rejects_invalid(api_client, personas, run, body, field, message):
    segment = run.segments.get()
    response = api_as(api_client, personas["owner"]).post(
        f"/api/segments/{segment.uuid}/verdicts/", body, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["errors"][field][0]


def test_segment_permissions(api_client, personas, run):
    segment = run.segments.get()
    api_client.force_authenticate(None)
    assert api_client.get(f"/api/segments/{segment.uuid}/").status_code == 401
    stranger = api_as(api_client, personas["stranger"])
    assert stranger.get(f"/api/segments/{segment.uuid}/").status_code == 404
    assert stranger.post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "confirm"}).status_code == 404
    assert stranger.get(f"/api/video-runs/{run.uuid}/").status_code == 404
    assert stranger.get(f"/api/video-runs/{run.uuid}/export/").status_code == 404


def test_exports_follow_verdicts(api_client, personas, run):
    owner = api_as(api_client, personas["owner"])
    unreviewed = owner.get(f"/api/video-runs/{run.uuid}/export/").json()
    assert unreviewed == {"videos": [{"video": "restricted.mp4", "duration_s": 10.0, "segments": []}]}

    segment = run.segments.get()
    owner.post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "adjust", "start_s": 6.0, "end_s": 8.0})
    reviewed = owner.get(f"/api/video-runs/{run.uuid}/export/?export_format=json").json()
    assert reviewed["videos"][0]["segments"] == [
        {"start_s": 6.0, "end_s": 8.0, "category": "restricted_zone", "category_label": "entry into a restricted zone"}
    ]
    ucf = owner.get(f"/api/video-runs/{run.uuid}/export/?export_format=ucf").content.decode()
    assert ucf.split() == ["restricted.mp4", "restricted_zone", "60", "79", "-1", "-1"]

    owner.post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "reject"})
    rejected = owner.get(f"/api/scenes/{run.scene.uuid}/export/").json()
    assert rejected["videos"][0]["segments"] == []


def test_metrics_against_verdicts(api_client, personas, run, videos):
    owner = api_as(api_client, personas["owner"])
    assert owner.get(f"/api/scenes/{run.scene.uuid}/metrics/").json() == {"reviewed_videos": 0}

    segment = run.segments.get()
    owner.post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "adjust", "start_s": 6.0, "end_s": 10.0})
    metrics = owner.get(f"/api/scenes/{run.scene.uuid}/metrics/").json()
    assert metrics["reviewed_videos"] == 1
    assert metrics["videos"]["precision"] == 1.0
    assert metrics["segments"]["miou"] == pytest.approx(0.75)
    assert metrics["segments"]["recall@0.5"] == 1.0

    owner.post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "reject"})
    rejected = owner.get(f"/api/scenes/{run.scene.uuid}/metrics/").json()
    assert rejected["videos"]["fp"] == 1
    assert rejected["segments"]["miou"] is None


def test_reviewed_segment_at_other_threshold(api_client, personas, run):
    member = api_as(api_client, personas["member"])
    url = f"/api/video-runs/{run.uuid}/segments/"
    response = member.post(url, {"start_s": 2.0, "end_s": 3.0, "threshold": 0.3, "category": "spill"}, format="json")
    assert response.status_code == 201, response.json()
    added = response.json()
    assert added["origin"] == "reviewer"
    assert added["found_threshold"] == 0.3
    assert added["created_by"] == "member"
    assert added["peak_score"] == 0.35
    assert added["facts"]["track_ids"] == [2]
    assert added["rules"] == []
    assert "threshold 0.30" in added["reasoning"]
    assert added["verdict"]["decision"] == "confirm"
    assert added["verdict"]["user"] == "member"
    assert (added["verdict"]["start_s"], added["verdict"]["end_s"]) == (2.0, 3.0)
    assert added["verdict"]["created_at"]

    segments = member.get(f"/api/segments/?run={run.uuid}").json()["results"]
    assert [item["origin"] for item in segments] == ["reviewer", "analysis"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"start_s": 6.0, "end_s": 9.0}, "span", "already stored as segment"),
        ({"start_s": 3.0, "end_s": 2.0}, "end_s", "End (2 s) must be after Start (3 s)."),
        ({"start_s": 9.0, "end_s": 12.0}, "end_s", "past the end of the video (10.000 s)"),
        ({"start_s": 2.01, "end_s": 2.05}, "span", "No analysed frame lies between"),
        ({"start_s": 2.0, "end_s": 3.0, "threshold": 1.5}, "threshold", "less than or equal to 1"),
        ({"start_s": 2.0, "end_s": 3.0, "category": "alien"}, "category", "not a valid choice"),
    ],
)
def test_reviewed_segment_rejects_invalid(api_client, personas, run, body, field, message):
    body = {"threshold": 0.3, "category": "spill", **body}
    response = api_as(api_client, personas["owner"]).post(f"/api/video-runs/{run.uuid}/segments/", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["errors"][field][0]
    assert run.segments.count() == 1


def test_reviewed_segment_permissions(api_client, personas, run):
    body = {"start_s": 2.0, "end_s": 3.0, "threshold": 0.3, "category": "spill"}
    url = f"/api/video-runs/{run.uuid}/segments/"
    api_client.force_authenticate(None)
    assert api_client.post(url, body, format="json").status_code == 401
    assert api_as(api_client, personas["stranger"]).post(url, body, format="json").status_code == 404
    assert run.segments.count() == 1


def test_metrics_count_reviewed_segments_as_truth(api_client, client, personas, run):
    owner = api_as(api_client, personas["owner"])
    segment = run.segments.get()
    owner.post(f"/api/segments/{segment.uuid}/verdicts/", {"decision": "adjust", "start_s": 6.0, "end_s": 10.0})
    body = {"start_s": 2.0, "end_s": 3.0, "threshold": 0.3, "category": "spill"}
    assert owner.post(f"/api/video-runs/{run.uuid}/segments/", body, format="json").status_code == 201

    metrics = owner.get(f"/api/scenes/{run.scene.uuid}/metrics/").json()
    # The analysis flagged only 6-9 s at the run's threshold, so the added 2-3 s is a missed true segment.
    assert metrics["reviewed_videos"] == 1
    assert metrics["segments"]["true_segments"] == 2
    assert metrics["segments"]["miou"] == pytest.approx(0.375)
    assert metrics["segments"]["recall@0.5"] == 0.5
    assert metrics["videos"]["tp"] == 1
    client.force_login(personas["owner"])
    page = client.get(reverse("anomaly-scene-detail", args=[run.scene.uuid])).content.decode()
    assert "<dt>Segment mIoU</dt><dd>0.375</dd>" in page
    assert "<dt>Segment recall at IoU 0.3</dt><dd>0.500</dd>" in page
    assert "<dt>Segment recall at IoU 0.5</dt><dd>0.500</dd>" in page

    exported = owner.get(f"/api/video-runs/{run.uuid}/export/").json()
    assert exported["videos"][0]["segments"] == [
        {"start_s": 2.0, "end_s": 3.0, "category": "spill", "category_label": "spill or leak"},
        {
            "start_s": 6.0,
            "end_s": 10.0,
            "category": "restricted_zone",
            "category_label": "entry into a restricted zone",
        },
    ]


def test_review_page_share_link(client, personas, run):
    url = reverse("anomaly-run-detail", args=[run.uuid])
    client.force_login(personas["stranger"])
    assert client.get(url).status_code == 404

    client.force_login(personas["owner"])
    html = client.get(url).content.decode()
    assert "Track 1 entered &lt;restricted&gt;." in html
    assert "measured facts" in html
    assert "Share links" in html
    link = ShareLink.objects.create(project=run.project, target=run, created_by=personas["owner"])

    client.logout()
    assert client.get(url).status_code == 302
    client.get(reverse("share-open", args=[link.token]))
    shared = client.get(url).content.decode()
    assert "read-only" in shared
    assert "Share links" not in shared


# --- Jobs -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fit_and_run_find_anomaly(api_client, personas, videos, redis_conn):
    scene = create_scene(api_client, personas, videos).json()
    fit = api_client.post(f"/api/scenes/{scene['uuid']}/fit/")
    assert fit.status_code == 202, fit.json()
    worker = start_worker()
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output.decode(errors="replace")
    fitted = api_client.get(f"/api/scenes/{scene['uuid']}/").json()
    assert fitted["fit_status"] == "succeeded", output.decode(errors="replace")
    assert fitted["fitted"] is True

    runs = api_client.post(
        f"/api/scenes/{scene['uuid']}/runs/",
        {"videos": [str(videos["anomalous"].uuid), str(videos["normal"].uuid)]},
        format="json",
    )
    assert runs.status_code == 201, runs.json()
    worker = start_worker()
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output.decode(errors="replace")
    by_name = {
        item["video_name"]: item for item in api_client.get(f"/api/video-runs/?scene={scene['uuid']}").json()["results"]
    }
    assert {item["job_status"] for item in by_name.values()} == {"succeeded"}, output.decode(errors="replace")

    anomalous = by_name["restricted.mp4"]
    detail = api_client.get(f"/api/video-runs/{anomalous['uuid']}/").json()
    assert len(detail["frames"]) == 100
    assert {"time_s", "score", "tracks"} <= set(detail["frames"][0])
    segments = api_client.get(f"/api/segments/?run={anomalous['uuid']}").json()["results"]
    truth = videos["truth"].anomalies[0]
    overlaps = [temporal_iou((item["start_s"], item["end_s"]), (truth.start_s, truth.end_s)) for item in segments]
    assert max(overlaps) > 0.3, segments
    best = segments[overlaps.index(max(overlaps))]
    assert best["path"] == "measured"
    assert best["reasoning"]
    assert best["category"] == "restricted_zone"

    run = VideoRun.objects.get(uuid=anomalous["uuid"])
    assert (run.frame_width, run.frame_height) == (160, 120)
    assert run.preview.read(4) == b"\x1a\x45\xdf\xa3"  # the EBML magic number that starts a WebM file
    assert run.reasoner["vlm_available"] is False
    assert "no model is configured" in run.reasoner["reason"]
    masks = api_client.get(f"/api/video-runs/{anomalous['uuid']}/masks/").json()
    assert len(masks["frames"]) == 100
    assert any(masks["frames"])


def assert_masks_follow_tracks(masks: dict, frames: list[dict]) -> None:
    """Check masks against the run's frames: one list per frame, polygons inside the frame, known tracks."""
    assert masks["format"] == "polygons"
    assert masks["frame_size"] == [160, 120]
    assert masks["missing_from_s"] is None
    assert len(masks["frames"]) == len(frames)
    drawn = 0
    for items, frame in zip(masks["frames"], frames, strict=True):
        assert {item["track_id"] for item in items} <= {track["track_id"] for track in frame["tracks"]}
        for item in items:
            for flat in item["polygons"]:
                assert len(flat) >= 6
                assert len(flat) % 2 == 0
                assert all(0 <= x <= 160 for x in flat[0::2])
                assert all(0 <= y <= 120 for y in flat[1::2])
                drawn += 1
    assert drawn > 0


MEMORY_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def test_jobs_read_through_storage(api_client, client, personas, tmp_path):
    normal_path, anomalous_path = tmp_path / "normal.mp4", tmp_path / "restricted.mp4"
    simulate_video(normal_path, None, seed=1, **VIDEO_OPTIONS)
    simulate_video(anomalous_path, "restricted_zone", seed=2, **VIDEO_OPTIONS)
    # Files in memory stand in for S3: they have no local path, so every read must go through the storage API.
    with override_settings(STORAGES=MEMORY_STORAGES):
        videos = {
            "normal": store_video(personas["project"], normal_path),
            "anomalous": store_video(personas["project"], anomalous_path),
        }
        assert not Path(videos["normal"].file.path).exists()
        scene = create_scene(api_client, personas, videos).json()
        fit = api_client.post(f"/api/scenes/{scene['uuid']}/fit/")
        assert fit.status_code == 202, fit.json()
        run_fit(Job.objects.get(uuid=fit.json()["job"]), RecordingReporter())
        runs = api_client.post(
            f"/api/scenes/{scene['uuid']}/runs/", {"videos": [str(videos["anomalous"].uuid)]}, format="json"
        )
        assert runs.status_code == 201, runs.json()
        run = VideoRun.objects.get(uuid=runs.json()[0]["uuid"])
        run_video(run.job, RecordingReporter())
        run.refresh_from_db()

        masks = api_client.get(f"/api/video-runs/{run.uuid}/masks/").json()
        assert_masks_follow_tracks(masks, run.frames)
        reasoner = api_client.get(f"/api/video-runs/{run.uuid}/").json()["reasoner"]
        assert reasoner["vlm_available"] is False
        assert reasoner["reason"] == "no model is configured; set BIOVLM_MODEL_VLM."
        assert reasoner["measured_segments"] == run.segments.count()
        client.force_login(personas["member"])
        served = client.get(reverse("anomaly-run-masks", args=[run.uuid]))
        assert json.loads(b"".join(served.streaming_content)) == masks
        assert client.get(reverse("anomaly-run-video", args=[run.uuid])).status_code == 200
        frame = client.get(reverse("anomaly-scene-frame", args=[scene["uuid"]]))
        assert frame.content.startswith(b"\x89PNG")
        page = client.get(reverse("anomaly-run-detail", args=[run.uuid])).content.decode()
        assert "The VLM is unavailable, so segments were explained from measured facts" in page
        assert reverse("anomaly-run-masks", args=[run.uuid]) in page
        client.force_login(personas["stranger"])
        assert client.get(reverse("anomaly-run-masks", args=[run.uuid])).status_code == 404


def finish_job(job: Job, result: dict) -> Job:
    job.status, job.result = Job.Status.SUCCEEDED, result
    job.save(update_fields=["status", "result"])
    return job


def assert_result_links(client, job: Job, url: str, summary: str) -> None:
    page = client.get(reverse("job-detail", args=[job.uuid])).content.decode()
    result = page.split("<h2>Result</h2>", 1)[1].split("</section>", 1)[0]
    assert f'href="{url}"' in result
    assert summary in result
    assert "{&#x27;" not in result  # a dict repr, as the generic result view prints it
    assert "tomogram" not in result


def test_job_pages_link_results(api_client, client, personas, videos):
    from biovlm_web.core.demo import run_follow_up
    from biovlm_web.core.jobs import submit_job

    scene = create_scene(api_client, personas, videos).json()
    fit = Job.objects.get(uuid=api_client.post(f"/api/scenes/{scene['uuid']}/fit/").json()["job"])
    finish_job(fit, run_fit(fit, RecordingReporter()))
    runs = api_client.post(f"/api/scenes/{scene['uuid']}/runs/", {"videos": [str(videos["anomalous"].uuid)]})
    run = VideoRun.objects.get(uuid=runs.json()[0]["uuid"])
    finish_job(run.job, run_video(run.job, RecordingReporter()))
    params = {"scene": scene["uuid"], "video": str(videos["anomalous"].uuid)}
    follow_up = submit_job(personas["project"], "demo_anomaly_video", params, user=personas["owner"])
    finish_job(follow_up, run_follow_up(follow_up, RecordingReporter()))
    second_run = VideoRun.objects.exclude(pk=run.pk).get()

    client.force_login(personas["member"])
    scene_url = reverse("anomaly-scene-detail", args=[scene["uuid"]])
    assert_result_links(client, fit, scene_url, "fitted on 100 frames from 1 normal video (normal.mp4)")
    segments = run.segments.count()
    flagged = f"{segments} segment{'' if segments == 1 else 's'} flagged"
    assert_result_links(client, run.job, reverse("anomaly-run-detail", args=[run.uuid]), flagged)
    review_url = reverse("anomaly-run-detail", args=[second_run.uuid])
    assert_result_links(client, follow_up, review_url, reverse("job-detail", args=[second_run.job.uuid]))


VLM_ANSWER = {
    "anomaly": True,
    "category": "wrong_placement",
    "start": 0.6,
    "end": 0.9,
    "explanation": "A tube was put down in the restricted corner of the bench.",
}
# The replies of the three chain steps for one segment: perception, cognition and the final answer.
VLM_STEPS = [
    "A bench with a rack; object 1 moves into the top corner.",
    "Objects are never set down in that corner during the normal routine.",
    json.dumps(VLM_ANSWER),
]


@pytest.mark.django_db(transaction=True)
def test_run_explained_by_vlm(api_client, client, personas, videos, redis_conn, scripted_server, tmp_path):  # noqa: F811
    # A local OpenAI-compatible endpoint that returns the queued replies in order.
    url, replies, requests = scripted_server
    replies.extend(VLM_STEPS * 10)
    scene = Scene.objects.get(uuid=create_scene(api_client, personas, videos).json()["uuid"])
    with videos["normal"].file.open("rb") as handle:
        (tmp_path / "fit.mp4").write_bytes(handle.read())
    scene.model = fit_scene([tmp_path / "fit.mp4"], lab_rules(), fps=10.0, max_side=160).as_dict()
    scene.save()
    runs = api_client.post(
        f"/api/scenes/{scene.uuid}/runs/", {"videos": [str(videos["anomalous"].uuid)]}, format="json"
    )
    assert runs.status_code == 201, runs.json()

    worker = start_worker(BIOVLM_MODEL_VLM=f"openai:{url}?model=lab-vlm&retries=0")
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output.decode(errors="replace")
    run = VideoRun.objects.get(uuid=runs.json()[0]["uuid"])
    assert run.job.status == "succeeded", (run.job.error, output.decode(errors="replace"))

    assert run.reasoner["vlm_available"] is True
    assert "lab-vlm" in run.reasoner["model"]
    segments = api_client.get(f"/api/segments/?run={run.uuid}").json()["results"]
    assert segments
    assert {item["path"] for item in segments} == {"vlm"}
    assert {item["path_label"] for item in segments} == {"VLM"}
    assert {item["category"] for item in segments} == {"wrong_placement"}
    assert segments[0]["reasoning"] == "A tube was put down in the restricted corner of the bench."
    assert (
        segments[0]["facts"]["vlm"]["reasoning"]
        == "Objects are never set down in that corner during the normal routine."
    )
    assert run.reasoner["vlm_segments"] == len(segments)
    # Three chain steps per segment, each with the segment's key frames.
    assert len(requests) == 3 * len(segments)
    assert all(image_count(body) >= 1 for body in requests)

    client.force_login(personas["owner"])
    page = client.get(reverse("anomaly-run-detail", args=[run.uuid])).content.decode()
    assert "Segments were explained by the VLM" in page


# --- Pages ------------------------------------------------------------------------------------


def test_scene_create_page(client, personas, videos):
    client.force_login(personas["member"])
    project_page = client.get(reverse("project-detail", args=[personas["project"].uuid])).content.decode()
    assert "Anomaly scenes" in project_page
    response = client.post(
        reverse("anomaly-scene-create", args=[personas["project"].uuid]),
        {"name": "Bench 2", "normal_videos": [str(videos["normal"].uuid)]},
    )
    scene = Scene.objects.get(name="Bench 2")
    assert response.status_code == 302
    assert response["Location"] == reverse("anomaly-scene-detail", args=[scene.uuid])
    assert list(scene.normal_videos.all()) == [videos["normal"]]

    frame = client.get(reverse("anomaly-scene-frame", args=[scene.uuid]))
    assert frame["Content-Type"] == "image/png"
    assert frame.content.startswith(b"\x89PNG")
    client.force_login(personas["stranger"])
    assert client.get(reverse("anomaly-scene-frame", args=[scene.uuid])).status_code == 404


def test_scene_create_rejects_other_project_file(client, personas, videos, tmp_path):
    other_path = tmp_path / "other.mp4"
    simulate_video(other_path, None, seed=3, **VIDEO_OPTIONS)
    other = store_video(personas["other_project"], other_path)
    client.force_login(personas["owner"])
    response = client.post(
        reverse("anomaly-scene-create", args=[personas["project"].uuid]),
        {"name": "Bench 3", "normal_videos": [str(other.uuid)]},
        follow=True,
    )
    assert f"has the UUID {other.uuid}" in response.content.decode()
    assert not Scene.objects.filter(name="Bench 3").exists()


def test_run_video_ranges(client, personas, run):
    run.preview.save("preview.webm", ContentFile(bytes(range(256)) * 4), save=True)
    url = reverse("anomaly-run-video", args=[run.uuid])
    client.force_login(personas["member"])
    whole = client.get(url)
    assert whole.status_code == 200
    assert whole["Accept-Ranges"] == "bytes"
    part = client.get(url, HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206
    assert part["Content-Range"] == "bytes 10-19/1024"
    assert part.content == bytes(range(10, 20))
    tail = client.get(url, HTTP_RANGE="bytes=-4")
    assert tail.content == bytes(range(252, 256))
    assert client.get(url, HTTP_RANGE="bytes=2000-").status_code == 416
    client.force_login(personas["stranger"])
    assert client.get(url).status_code == 404


def test_shared_review_exports(client, personas, run):
    link = ShareLink.objects.create(project=run.project, target=run, created_by=personas["owner"])
    segment = run.segments.get()
    segment.verdicts.create(decision="confirm", category="restricted_zone", start_s=6.0, end_s=9.0)
    export_url = reverse("anomaly-run-export", args=[run.uuid, "ucf"])
    assert client.get(export_url).status_code == 404

    client.get(reverse("share-open", args=[link.token]))
    assert client.get(export_url).content.decode().split() == [
        "restricted.mp4",
        "restricted_zone",
        "60",
        "89",
        "-1",
        "-1",
    ]
    exported = client.get(reverse("anomaly-run-export", args=[run.uuid, "json"])).json()
    assert exported["videos"][0]["segments"] == [
        {"start_s": 6.0, "end_s": 9.0, "category": "restricted_zone", "category_label": "entry into a restricted zone"}
    ]
    review = client.get(reverse("anomaly-run-detail", args=[run.uuid])).context["review"]
    assert review["read_only"] is True
    assert review["segments"][0]["verdict"]["decision"] == "confirm"


def test_scene_upload_videos(client, personas, run, tmp_path):
    scene = run.scene
    first, second = tmp_path / "upload-a.mp4", tmp_path / "upload-b.mp4"
    simulate_video(first, None, seed=4, **VIDEO_OPTIONS)
    simulate_video(second, "spill", seed=5, **VIDEO_OPTIONS)
    url = reverse("anomaly-scene-upload", args=[scene.uuid])
    client.force_login(personas["member"])
    with first.open("rb") as normal:
        response = client.post(url, {"purpose": "normal", "videos": [normal]}, follow=True)
    assert "Stored upload-a.mp4 as normal videos." in response.content.decode()
    assert "upload-a.mp4" in [item.original_name for item in scene.normal_videos.all()]

    scene.model = {"threshold": 0.5}
    scene.save()
    with first.open("rb") as one, second.open("rb") as two:
        response = client.post(url, {"purpose": "review", "videos": [one, two]}, follow=True)
    assert "as videos to analyse" in response.content.decode()
    runs = VideoRun.objects.filter(scene=scene, video__dataset__name="Scene videos")
    assert sorted(item.video.original_name for item in runs) == ["upload-a.mp4", "upload-b.mp4"]
    assert all(item.job.kind == "anomaly_video_run" for item in runs)


def test_scene_upload_rejects_non_video(client, personas, run, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    client.force_login(personas["owner"])
    with text.open("rb") as handle:
        response = client.post(
            reverse("anomaly-scene-upload", args=[run.scene.uuid]),
            {"purpose": "normal", "videos": [handle]},
            follow=True,
        )
    assert "Nothing was stored" in response.content.decode()
    assert not DataFile.objects.filter(original_name="notes.txt").exists()
    client.force_login(personas["stranger"])
    with text.open("rb") as handle:
        response = client.post(
            reverse("anomaly-scene-upload", args=[run.scene.uuid]), {"purpose": "normal", "videos": [handle]}
        )
    assert response.status_code == 404
