"""Jobs on real components: RQ workers in subprocesses, Redis, Channels and a live Daphne."""

import json
import os
import signal
import time

import psutil
import pytest
from django.test import Client
from websockets.sync.client import connect

from biovlm_web.core.jobs import cancel_job, execute_job, reap_stale_jobs, retry_job, submit_job
from biovlm_web.core.models import Job
from tests.conftest import start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def open_job_socket(live, job, cookie):
    return connect(
        f"{live.ws_url}/ws/jobs/{job.uuid}/",
        additional_headers={"Cookie": f"sessionid={cookie}", "Origin": live.url},
        open_timeout=10,
    )


def wait_for_status(job, statuses, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"Job stayed {job.status} for {timeout} s; expected one of {statuses}.")


def kill_process_tree(process):
    parent = psutil.Process(process.pid)
    for child in parent.children(recursive=True):
        child.kill()
    parent.kill()
    process.wait(timeout=10)


def test_progress_streams_over_websocket(live_asgi, personas):
    job = submit_job(personas["project"], "test_steps", {"steps": 20, "delay": 0.05}, user=personas["owner"])
    cookie = session_cookie(personas["member"])

    with open_job_socket(live_asgi, job, cookie) as socket:
        first = json.loads(socket.recv(timeout=10))
        assert first["type"] == "snapshot"
        assert first["job"]["status"] == "queued"
        # Stay idle past redis-py's default 5 s read timeout, which once dropped idle sockets.
        time.sleep(7)
        socket.send(json.dumps({"type": "refresh"}))
        assert json.loads(socket.recv(timeout=10))["job"]["status"] == "queued"

        worker = start_worker("default")
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output.decode(errors="replace")

        messages = []
        while True:
            message = json.loads(socket.recv(timeout=10))
            messages.append(message["job"])
            if message["job"]["status"] in ("succeeded", "failed", "cancelled"):
                break

    statuses = [message["status"] for message in messages]
    progresses = [message["progress"] for message in messages]
    assert "running" in statuses
    assert statuses[-1] == "succeeded", messages[-1]
    assert progresses[-1] == 1.0
    assert progresses == sorted(progresses)
    assert len(messages) >= 5
    assert any("step 20 of 20" in line for line in messages[-1]["log"])
    job.refresh_from_db()
    assert job.result == {"steps": 20}
    assert job.worker_name
    assert job.code_version


def test_websocket_rejects_stranger_and_anonymous(live_asgi, personas):
    from websockets.exceptions import ConnectionClosed

    job = submit_job(personas["project"], "test_steps", {"steps": 1}, user=personas["owner"])
    for headers in ({"Cookie": f"sessionid={session_cookie(personas['stranger'])}"}, {}):
        with connect(
            f"{live_asgi.ws_url}/ws/jobs/{job.uuid}/",
            additional_headers={**headers, "Origin": live_asgi.url},
            open_timeout=10,
        ) as socket:
            with pytest.raises(ConnectionClosed) as raised:
                socket.recv(timeout=5)
        assert raised.value.rcvd.code == 4403


def test_websocket_sends_final_state_to_late_visitor(live_asgi, personas):
    job = submit_job(personas["project"], "test_steps", {"steps": 3, "delay": 0}, user=personas["owner"])
    worker = start_worker("default")
    worker.communicate(timeout=120)

    with open_job_socket(live_asgi, job, session_cookie(personas["owner"])) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
    assert snapshot["type"] == "snapshot"
    assert snapshot["job"]["status"] == "succeeded"
    assert snapshot["job"]["progress"] == 1.0


def test_killed_worker_marks_job_failed(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 400, "delay": 0.1}, user=personas["owner"])
    worker = start_worker("default", burst=False)
    try:
        wait_for_status(job, {"running"}, timeout=60)
    finally:
        kill_process_tree(worker)

    # No worker is left to notice; a second worker's reaper must find the stale heartbeat.
    rescuer = start_worker("default", burst=False)
    try:
        job = wait_for_status(job, {"failed"}, timeout=60)
    finally:
        kill_process_tree(rescuer)
    assert "stopped responding" in job.error
    assert job.finished_at is not None


def test_killed_work_horse_marks_job_failed_at_once(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 400, "delay": 0.1}, user=personas["owner"])
    worker = start_worker("default", burst=False)
    try:
        wait_for_status(job, {"running"}, timeout=60)
        horses = psutil.Process(worker.pid).children(recursive=True)
        assert horses, "the worker forked no work-horse"
        for horse in horses:
            os.kill(horse.pid, signal.SIGKILL)
        job = wait_for_status(job, {"failed"}, timeout=30)
    finally:
        kill_process_tree(worker)
    assert "worker process died" in job.error


def test_reaper_leaves_fresh_jobs_alone(personas):
    job = submit_job(personas["project"], "test_steps", {}, user=personas["owner"])
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=job.created_at)
    assert reap_stale_jobs(stale_seconds=3600) == []
    assert reap_stale_jobs(stale_seconds=0) == [str(job.uuid)]
    job.refresh_from_db()
    assert job.status == "failed"


def test_claim_runs_a_job_once(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 2, "delay": 0}, user=personas["owner"])
    assert execute_job(str(job.uuid)) == "succeeded"
    assert execute_job(str(job.uuid)) == "skipped"
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_job_error_message_is_stored(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 5, "delay": 0, "fail_at": 3}, user=personas["owner"])
    assert execute_job(str(job.uuid)) == "failed"
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error == "Step 3 failed on purpose."
    assert job.progress == pytest.approx(0.4)


def test_cancel_queued_job_removes_it(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 2}, user=personas["owner"])
    assert cancel_job(job)
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert execute_job(str(job.uuid)) == "skipped"
    assert not cancel_job(job)


def test_cancel_running_job_stops_it(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 400, "delay": 0.1}, user=personas["owner"])
    worker = start_worker("default", burst=True)
    try:
        wait_for_status(job, {"running"}, timeout=60)
        assert cancel_job(job)
        job = wait_for_status(job, {"cancelled"}, timeout=30)
        worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            kill_process_tree(worker)
    assert job.progress < 1.0
    assert job.result == {}


def test_cancel_takes_effect_before_heartbeat(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 400, "delay": 0.05}, user=personas["owner"])
    # With heartbeats a minute apart, only the progress writes can notice the cancel.
    worker = start_worker("default", burst=True, JOB_HEARTBEAT_SECONDS=60)
    try:
        wait_for_status(job, {"running"}, timeout=60)
        time.sleep(0.5)
        assert cancel_job(job)
        job = wait_for_status(job, {"cancelled", "succeeded"}, timeout=15)
        worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            kill_process_tree(worker)
    assert job.status == "cancelled"
    assert job.progress < 0.5


def test_retry_creates_new_job(personas, redis_conn):
    job = submit_job(personas["project"], "test_steps", {"steps": 2, "fail_at": 1, "delay": 0}, user=personas["owner"])
    execute_job(str(job.uuid))
    job.refresh_from_db()
    retried = retry_job(job, user=personas["member"])
    assert retried.retry_of == job
    assert retried.status == "queued"
    assert retried.params == job.params


def test_job_waits_for_commit_before_enqueue(personas, redis_conn):
    import django_rq
    from django.db import transaction

    queue = django_rq.get_queue("default")
    with transaction.atomic():
        job = submit_job(personas["project"], "test_steps", {}, user=personas["owner"])
        assert queue.count == 0
    assert queue.job_ids == [str(job.uuid)]


def test_lost_queue_entry_is_enqueued_again(personas, redis_conn):
    import django_rq

    from biovlm_web.core.jobs import requeue_lost_jobs

    job = submit_job(personas["project"], "test_steps", {"steps": 1}, user=personas["owner"])
    assert requeue_lost_jobs(min_age_seconds=0) == []
    redis_conn.flushdb()
    assert requeue_lost_jobs(min_age_seconds=3600) == []
    assert requeue_lost_jobs(min_age_seconds=0) == [str(job.uuid)]
    assert django_rq.get_queue("default").job_ids == [str(job.uuid)]


def test_reap_jobs_command(personas, redis_conn):
    from io import StringIO

    from django.core.management import call_command

    job = submit_job(personas["project"], "test_steps", {}, user=personas["owner"])
    Job.objects.filter(pk=job.pk).update(status="running", heartbeat_at=job.created_at.replace(year=2000))
    output = StringIO()
    call_command("reap_jobs", stdout=output)
    assert f"Marked job {job.uuid} failed" in output.getvalue()
