"""A worker killed with SIGKILL in the middle of a job, watched through the API, the page and the websocket."""

import json
import time

import pytest
from websockets.sync.client import connect

from tests.reliability.conftest import (
    FINISHED,
    api_session,
    browser_session,
    csrf_token,
    job_state,
    kill_tree,
    start_worker,
    submit_steps_job,
    wait_until,
    worker_log,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

STEPS, DELAY = 40, 0.2


def read_until_finished(socket, timeout: float) -> list[dict]:
    """Collect the job states a websocket sends until one is final."""
    states = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        states.append(message["job"])
        if message["job"]["status"] in FINISHED:
            return states
    raise AssertionError(f"The websocket sent no final state within {timeout} s; last: {states[-1:]}")


def test_killed_worker_fails_job_and_retry_succeeds(live_asgi, personas, processes):
    owner = personas["owner"]
    api = api_session(owner)
    job = submit_steps_job(api, live_asgi.url, personas["project"], STEPS, DELAY)
    browser = browser_session(owner, live_asgi.url)
    socket = connect(
        f"{live_asgi.ws_url}/ws/jobs/{job['uuid']}/",
        additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", "Origin": live_asgi.url},
        open_timeout=10,
    )

    with socket:
        worker = start_worker("default", burst=False)
        processes.append(worker)
        wait_until(
            lambda: job_state(api, live_asgi.url, job["uuid"])["progress"] > 0.1,
            timeout=60,
            message="the job to make progress",
        )
        kill_tree(worker)
        killed_at = time.monotonic()
        before_kill = job_state(api, live_asgi.url, job["uuid"])
        assert before_kill["status"] == "running"

        # No worker is left: reading the job through the API runs the stale-job reaper.
        failed = wait_until(
            lambda: (state := job_state(api, live_asgi.url, job["uuid"]))["status"] in FINISHED and state,
            timeout=60,
            interval=1.0,
            message="the killed job to be marked failed",
        )
        assert time.monotonic() - killed_at < 60
        states = read_until_finished(socket, timeout=30)

    assert failed["status"] == "failed"
    assert "stopped responding" in failed["error"]
    assert "Retry the job" in failed["error"]
    assert failed["result"] == {}
    assert failed["progress"] < 1.0
    assert failed["finished_at"] is not None
    assert states[-1]["status"] == "failed"
    assert "succeeded" not in [state["status"] for state in states]
    assert states[-1]["progress"] < 1.0

    page = browser.get(f"{live_asgi.url}/jobs/{job['uuid']}/", timeout=30)
    assert page.status_code == 200
    assert "<h2>Result</h2>" not in page.text
    assert "stopped responding" in page.text
    assert f'action="/jobs/{job["uuid"]}/retry/"' in page.text

    retried = browser.post(
        f"{live_asgi.url}/jobs/{job['uuid']}/retry/",
        data={"csrfmiddlewaretoken": csrf_token(page.text)},
        allow_redirects=False,
        timeout=30,
    )
    assert retried.status_code == 302, retried.text[:500]
    retry_uuid = retried.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert retry_uuid != job["uuid"]

    rescuer = start_worker("default", burst=True)
    processes.append(rescuer)
    assert rescuer.wait(timeout=120) == 0, worker_log(rescuer)

    succeeded = job_state(api, live_asgi.url, retry_uuid)
    assert succeeded["status"] == "succeeded", succeeded["error"]
    assert succeeded["result"] == {"steps": STEPS}
    assert succeeded["retry_of"] == job["uuid"]
    retry_page = browser.get(f"{live_asgi.url}/jobs/{retry_uuid}/", timeout=30)
    assert "<h2>Result</h2>" in retry_page.text

    # The killed job stays failed after its retry succeeded, and shows no result.
    assert job_state(api, live_asgi.url, job["uuid"])["status"] == "failed"
    assert "<h2>Result</h2>" not in browser.get(f"{live_asgi.url}/jobs/{job['uuid']}/", timeout=30).text
