"""The home page: capabilities with links, recent runs, queues and workers, and model roles."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from biovlm_web.core.models import Job


def row(page: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(value)}">(.*?)</tr>', page, re.S)
    assert match, f"no row {attribute}={value!r} on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(1))).strip()


@pytest.mark.django_db
def test_home_shows_queues_and_workers(client, personas, redis_conn):
    from rq import Queue, Worker

    # A plain RQ queue, because django_rq defers enqueueing until the test's transaction commits.
    for _ in range(3):
        Queue("gpu", connection=redis_conn).enqueue("biovlm_web.core.jobs.execute_job", "no-such-job")
    worker = Worker(["gpu", "default"], connection=redis_conn, name="home-page-worker")
    worker.register_birth()
    worker.set_state("idle")
    try:
        client.force_login(personas["owner"])
        page = client.get(reverse("home")).content.decode()
    finally:
        worker.register_death()

    assert row(page, "data-queue", "gpu") == "gpu 3 0"
    assert row(page, "data-queue", "default") == "default 0 0"
    assert row(page, "data-worker", "home-page-worker") == "home-page-worker idle gpu, default"


@pytest.mark.django_db
def test_home_without_workers(client, personas, redis_conn):
    client.force_login(personas["owner"])
    page = client.get(reverse("home")).content.decode()
    assert "No worker is running, so queued jobs wait." in page


@pytest.mark.django_db
def test_home_links_capabilities_and_latest_result(client, personas, redis_conn):
    project = personas["project"]
    Job.objects.create(
        project=project,
        kind="tomogram_run",
        queue="gpu",
        status=Job.Status.SUCCEEDED,
        finished_at=timezone.now(),
        result={"run_url": "/tomogram-runs/00000000-0000-0000-0000-000000000001/"},
    )
    Job.objects.create(project=personas["other_project"], kind="setdiff_comparison", status=Job.Status.SUCCEEDED)
    client.force_login(personas["owner"])
    page = client.get(reverse("home")).content.decode()

    cards = dict(re.findall(r'data-capability="(\w+)">(.*?)</section>', page, re.S))
    assert sorted(cards) == ["anomalies", "comparisons", "cryoet"]
    assert reverse("tomogram-list", args=[project.uuid]) in cards["cryoet"]
    assert "/tomogram-runs/00000000-0000-0000-0000-000000000001/" in cards["cryoet"]
    # The other project's comparison is not visible to this user.
    assert "No finished run yet." in cards["comparisons"]
    assert reverse("project-detail", args=[project.uuid]) + "#anomaly-scenes" in cards["anomalies"]
    assert reverse("project-detail", args=[project.uuid]) + "#comparisons" in cards["comparisons"]
    assert "Tomogram run" in page  # the recent runs table


@pytest.mark.django_db
def test_home_lists_model_roles(client, personas, redis_conn, settings):
    from analysis.backends import ROLES

    settings.MODEL_SOURCES = {"llm": "none"}
    client.force_login(personas["member"])
    page = client.get(reverse("home")).content.decode()
    for role in ROLES:
        assert f'data-role="{role}"' in page
    assert row(page, "data-role", "llm").endswith("off")
    assert "No model check has run yet." in page


@pytest.mark.django_db
def test_home_shows_pending_model_check(client, personas, redis_conn):
    Job.objects.create(project=None, kind="check_models", queue="default", status=Job.Status.QUEUED)
    client.force_login(personas["member"])
    page = client.get(reverse("home")).content.decode()
    assert "A model check is queued" in page
    assert "it waits for the jobs ahead of it on the default queue" in page
    assert "No model check has run yet." not in page


@pytest.mark.django_db
def test_home_when_redis_is_down(client, personas, monkeypatch):
    import django_rq

    def unavailable(name):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(django_rq, "get_queue", unavailable)
    client.force_login(personas["owner"])
    page = client.get(reverse("home")).content.decode()
    assert "The job queue is unavailable: connection refused" in page


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_project_create_invalid_name(client, personas, redis_conn, name):
    from biovlm_web.core.models import Project

    before = Project.objects.count()
    client.force_login(personas["owner"])
    response = client.post("/projects/new/", {"name": name})
    assert response.status_code == 400
    content = response.content.decode()
    assert "The project was not created" in content
    assert "Name: " in content
    assert Project.objects.count() == before


def test_project_create_valid_name(client, personas, redis_conn):
    client.force_login(personas["owner"])
    response = client.post("/projects/new/", {"name": "  Microscopy core  "})
    assert response.status_code == 302
    from biovlm_web.core.models import Project

    assert Project.objects.filter(name="Microscopy core", owner=personas["owner"]).exists()
