"""Redis restarted, losing every key, while a job runs and another waits in the queue."""

import hashlib
import json
import time
from contextlib import ExitStack

import pytest
from websockets.sync.client import connect

from biovlm_web.core.models import Job
from biovlm_web.uploads.models import DataFile, Dataset
from tests.reliability.conftest import (
    FINISHED,
    RedisServer,
    ServerProcess,
    api_session,
    browser_session,
    job_state,
    start_worker,
    submit_steps_job,
    wait_until,
    worker_log,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OUTAGE_SECONDS = 5


def stored_file(dataset, user, content: bytes):
    from django.core.files.base import ContentFile

    data_file = DataFile(
        dataset=dataset,
        original_name="notes.txt",
        extension=".txt",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        created_by=user,
    )
    data_file.file.save("notes.txt", ContentFile(content), save=True)
    return data_file


def test_redis_restart_during_job(personas, processes, tmp_path):
    sockets = ExitStack()
    processes.append(sockets)
    owner, project = personas["owner"], personas["project"]
    redis = RedisServer(tmp_path / "redis").start()
    processes.append(redis)
    server = ServerProcess(REDIS_URL=redis.url).start()
    processes.append(server)
    api = api_session(owner)
    browser = browser_session(owner, server.url)

    dataset = Dataset.objects.create(project=project, name="Kept", created_by=owner)
    content = b"measured before the restart\n" * 100
    kept_file = stored_file(dataset, owner, content)
    finished = submit_steps_job(api, server.url, project, steps=2, delay=0)
    worker = start_worker("default", burst=True, REDIS_URL=redis.url)
    processes.append(worker)
    assert worker.wait(timeout=120) == 0, worker_log(worker)
    assert job_state(api, server.url, finished["uuid"])["status"] == "succeeded"

    running = submit_steps_job(api, server.url, project, steps=60, delay=0.15)
    waiting = submit_steps_job(api, server.url, project, steps=3, delay=0)
    worker = start_worker("default", burst=False, REDIS_URL=redis.url)
    processes.append(worker)
    wait_until(
        lambda: job_state(api, server.url, running["uuid"])["progress"] > 0.1,
        timeout=60,
        message="the first job to make progress",
    )

    watcher = sockets.enter_context(
        connect(
            f"{server.ws_url}/ws/jobs/{running['uuid']}/",
            additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", "Origin": server.url},
            open_timeout=10,
        )
    )
    assert json.loads(watcher.recv(timeout=10))["type"] == "snapshot"

    redis.kill()
    down_since = time.monotonic()
    # While Redis is down, pages that need only the database still open.
    project_page = browser.get(f"{server.url}/projects/{project.uuid}/", timeout=30)
    assert project_page.status_code == 200
    assert job_state(api, server.url, running["uuid"])["status"] == "running"
    # A job submitted now cannot be enqueued, and its error states why.
    during = submit_steps_job(api, server.url, project, steps=1, delay=0)
    refused = job_state(api, server.url, during["uuid"])
    assert refused["status"] == "failed"
    assert "job queue is unavailable" in refused["error"]
    # A progress websocket opened now still gets the job's state, read from the database.
    with connect(
        f"{server.ws_url}/ws/jobs/{running['uuid']}/",
        additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", "Origin": server.url},
        open_timeout=10,
    ) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
    assert snapshot["type"] == "snapshot"
    assert snapshot["job"]["status"] == "running"
    # Keep Redis down for a few seconds, longer than the worker's heartbeat interval.
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_since)))
    redis.start()

    # The job whose queue entry was lost with Redis's data is enqueued again by the worker's reaper.
    states = {}
    for job in (running, waiting):
        states[job["uuid"]] = wait_until(
            lambda job=job: (state := job_state(api, server.url, job["uuid"]))["status"] in FINISHED and state,
            timeout=90,
            interval=0.5,
            message=f"job {job['uuid']} to finish after the Redis restart",
        )
    # A websocket that stayed open through the outage still receives the final state.
    watched = [json.loads(watcher.recv(timeout=30))["job"]["status"]]
    while watched[-1] not in FINISHED:
        watched.append(json.loads(watcher.recv(timeout=30))["job"]["status"])
    assert watched[-1] == "succeeded", watched

    # The worker reconnects to Redis, so the job it was running finishes normally.
    assert states[running["uuid"]]["status"] == "succeeded", states[running["uuid"]]
    assert states[waiting["uuid"]]["status"] == "succeeded", states[waiting["uuid"]]

    # Progress streams again over a new websocket once Redis is back.
    retry = api.post(f"{server.url}/api/jobs/{refused['uuid']}/retry/", timeout=30)
    assert retry.status_code == 201, retry.text[:500]
    with connect(
        f"{server.ws_url}/ws/jobs/{retry.json()['uuid']}/",
        additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", "Origin": server.url},
        open_timeout=10,
    ) as socket:
        statuses = []
        while not statuses or statuses[-1] not in FINISHED:
            statuses.append(json.loads(socket.recv(timeout=60))["job"]["status"])
    assert statuses[-1] == "succeeded", statuses

    # Nothing stored before the restart was lost.
    assert job_state(api, server.url, finished["uuid"])["result"] == {"steps": 2}
    download = api.get(f"{server.url}/api/files/{kept_file.uuid}/download/", timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == kept_file.sha256
    assert Job.objects.filter(project=project).count() == 5
