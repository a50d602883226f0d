"""The database unavailable for a moment while a job runs and users open pages.

On SQLite another process holds the write lock longer than the busy timeout. On PostgreSQL
every connection of the server and the worker is closed with pg_terminate_backend.
"""

import hashlib
import subprocess
import sys
import time

import pytest
from django.db import connection

from biovlm_web.core.models import Job
from biovlm_web.uploads.models import Dataset
from tests.reliability.conftest import (
    FINISHED,
    ServerProcess,
    api_session,
    browser_session,
    csrf_token,
    job_state,
    start_worker,
    submit_steps_job,
    wait_until,
    worker_log,
)
from tests.reliability.test_redis_restart import stored_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Shorter than JOB_STALE_SECONDS in tests/settings.py (4 s), so the job is not reaped as stale.
LOCK_SECONDS = 3
LOCK_SCRIPT = """
import sqlite3, sys, time
database = sqlite3.connect(sys.argv[1], isolation_level=None)
database.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
database.execute("COMMIT")
"""


def is_sqlite() -> bool:
    return connection.vendor == "sqlite"


def lock_sqlite(seconds: float) -> subprocess.Popen:
    """Hold SQLite's write lock from another process for ``seconds``; return once it is held."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCK_SCRIPT, connection.settings_dict["NAME"], str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout.readline().strip() == "locked"
    return locker


def terminate_other_backends() -> int:
    """Close every other PostgreSQL connection to the test database and return how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.fixture
def running_job(personas, processes):
    """A live server and worker, a stored file and succeeded job, and a second job in progress."""
    owner, project = personas["owner"], personas["project"]
    # A 1 s busy timeout, so a held lock fails requests quickly instead of making them wait 20 s.
    server = ServerProcess(SQLITE_BUSY_TIMEOUT=1).start()
    processes.append(server)
    api = api_session(owner)
    browser = browser_session(owner, server.url)
    dataset = Dataset.objects.create(project=project, name="Kept", created_by=owner)
    kept_file = stored_file(dataset, owner, b"stored before the outage\n" * 100)
    done = submit_steps_job(api, server.url, project, steps=2, delay=0)
    worker = start_worker("default", burst=False, SQLITE_BUSY_TIMEOUT=1)
    processes.append(worker)
    wait_until(lambda: job_state(api, server.url, done["uuid"])["status"] in FINISHED, 60, message="the first job")
    job = submit_steps_job(api, server.url, project, steps=50, delay=0.2)
    wait_until(lambda: job_state(api, server.url, job["uuid"])["progress"] > 0.1, 60, message="job progress")
    return {
        "server": server,
        "api": api,
        "browser": browser,
        "file": kept_file,
        "done": done,
        "job": job,
        "worker": worker,
    }


def check_recovered(state, project):
    """The job in progress succeeds, and what was stored before the outage is intact."""
    server, api = state["server"], state["api"]
    finished = wait_until(
        lambda: (job := job_state(api, server.url, state["job"]["uuid"]))["status"] in FINISHED and job,
        timeout=90,
        interval=0.5,
        message="the job to finish after the outage",
    )
    assert finished["status"] == "succeeded", f"{finished['error']}\n{worker_log(state['worker'])}"
    assert finished["result"] == {"steps": 50}
    assert job_state(api, server.url, state["done"]["uuid"])["result"] == {"steps": 2}
    download = api.get(f"{server.url}/api/files/{state['file'].uuid}/download/", timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == state["file"].sha256
    page = state["browser"].get(f"{server.url}/projects/{project.uuid}/", timeout=30)
    assert page.status_code == 200


@pytest.mark.skipif("not is_sqlite()", reason="needs the SQLite database")
def test_sqlite_locked_during_job(running_job, personas):
    server, api, browser = running_job["server"], running_job["api"], running_job["browser"]
    project = personas["project"]
    form_page = browser.get(f"{server.url}/", timeout=30)
    token = csrf_token(form_page.text)

    locker = lock_sqlite(LOCK_SECONDS)
    try:
        # Writes wait 1 s for the lock, then fail with a message that says what happened.
        refused = api.post(
            f"{server.url}/api/jobs/",
            json={"project": str(project.uuid), "kind": "test_steps", "params": {"steps": 1}},
            timeout=30,
        )
        created = browser.post(
            f"{server.url}/projects/new/", data={"name": "During the lock", "csrfmiddlewaretoken": token}, timeout=30
        )
        # Reads go on: in WAL mode a writer does not block readers.
        reading = api.get(f"{server.url}/api/jobs/{running_job['job']['uuid']}/", timeout=30)
    finally:
        assert locker.wait(timeout=30) == 0

    assert refused.status_code == 503, refused.text[:500]
    assert refused.json()["code"] == "database_unavailable"
    assert "database is unavailable" in refused.json()["detail"]
    assert refused.headers["Retry-After"]
    assert created.status_code == 503, created.text[:500]
    assert "The database is unavailable" in created.text
    assert reading.status_code == 200
    assert reading.json()["status"] == "running"

    check_recovered(running_job, project)
    assert not Job.objects.filter(params__steps=1).exists()
    assert not project.__class__.objects.filter(name="During the lock").exists()


@pytest.mark.skipif("is_sqlite()", reason="needs PostgreSQL (DATABASE_URL)")
def test_postgres_connections_killed_during_job(running_job, personas):
    server, api = running_job["server"], running_job["api"]
    assert terminate_other_backends() >= 1
    # The server reconnects at the next request, and the worker at its next write.
    state = job_state(api, server.url, running_job["job"]["uuid"])
    assert state["status"] == "running"
    time.sleep(1)
    assert terminate_other_backends() >= 1
    check_recovered(running_job, personas["project"])


def test_job_unclaimed_by_failed_worker_requeued(personas, redis_conn):
    """A worker that could not claim the row (database down) leaves a failed RQ job and a queued row."""
    import django_rq
    from rq.job import Job as RQJob
    from rq.job import JobStatus

    from biovlm_web.core.jobs import requeue_lost_jobs, submit_job

    job = submit_job(personas["project"], "test_steps", {"steps": 1, "delay": 0}, user=personas["owner"])
    queue = django_rq.get_queue("default")
    queue.remove(str(job.uuid))
    RQJob.fetch(str(job.uuid), connection=redis_conn).set_status(JobStatus.FAILED)
    assert requeue_lost_jobs(min_age_seconds=0) == [str(job.uuid)]
    assert queue.job_ids == [str(job.uuid)]

    worker = start_worker("default", burst=True)
    assert worker.wait(timeout=120) == 0, worker_log(worker)
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert requeue_lost_jobs(min_age_seconds=0) == []
