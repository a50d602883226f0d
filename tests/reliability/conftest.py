"""Fixtures for fault tests: servers, workers and Redis processes that a test can kill and restart."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.conftest import REPO_ROOT, UVICORN_OPTIONS, free_port, subprocess_env, wait_for_port

FINISHED = ("succeeded", "failed", "cancelled")


class ServerProcess:
    """Uvicorn serving the application on one port, which stays the same across restarts."""

    def __init__(self, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = Path(settings.VAR_DIR) / f"uvicorn-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, prefix: list[str] | None = None) -> ServerProcess:
        """Start the server; ``prefix`` runs it under another command, such as ``unshare``."""
        command = [sys.executable, "-m", "uvicorn", "biovlm_web.asgi:application", *UVICORN_OPTIONS]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*(prefix or []), *command, "--port", str(self.port)],
                cwd=REPO_ROOT,
                env=subprocess_env(**self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_port(self.port, self.process)
        return self

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash or a power cut would."""
        if self.process is not None and self.process.poll() is None:
            kill_tree(self.process)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_tree(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer:
    """A redis-server of the test's own on a free 127.0.0.1 port, without persistence.

    Restarting it loses every key, which is what a Redis without snapshots does after a crash.
    """

    def __init__(self, directory: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed, so Redis cannot be restarted by the test.")
        self.directory.mkdir(parents=True, exist_ok=True)
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [binary, *arguments, "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


def start_worker(*queues: str, burst: bool = True, **env) -> subprocess.Popen:
    """Start ``manage.py rqworker`` with the platform's worker class, logging to a file under VAR_DIR.

    A log file and not a pipe: a worker that logs many errors would fill an unread pipe and block.
    """
    args = [sys.executable, "manage.py", "rqworker", "--worker-class", "biovlm_web.core.worker.JobWorker"]
    if burst:
        args.append("--burst")
    log_path = Path(settings.VAR_DIR) / f"worker-{time.time_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*args, *(queues or ("default",))],
            cwd=REPO_ROOT,
            env=subprocess_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log_path
    return process


def worker_log(process: subprocess.Popen) -> str:
    return process.log_path.read_text(errors="replace")[-4000:]


def kill_tree(process: subprocess.Popen) -> None:
    """Send SIGKILL to a process and all its descendants, then reap it."""
    try:
        parent = psutil.Process(process.pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@pytest.fixture
def processes():
    """A list that a test appends its servers, workers, Redis processes and ExitStacks to; all end after it."""
    started: list = []
    yield started
    for item in reversed(started):
        if isinstance(item, subprocess.Popen):
            if item.poll() is None:
                kill_tree(item)
        elif isinstance(item, ServerProcess):
            item.stop()
        elif isinstance(item, RedisServer):
            item.kill()
        else:
            item.close()


def api_session(user) -> requests.Session:
    token, _ = Token.objects.get_or_create(user=user)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token.key}"
    return session


def browser_session(user, base_url: str) -> requests.Session:
    """A requests session signed in with a session cookie and a CSRF token, as a browser is."""
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value)
    session.headers["Referer"] = base_url + "/"
    response = session.get(f"{base_url}/", timeout=30)
    assert response.status_code == 200, response.text[:500]
    return session


def csrf_token(page_html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page_html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def wait_until(check, timeout: float, interval: float = 0.2, message: str = "condition"):
    """Call ``check`` until it returns a true value and return that value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {message}.")
        time.sleep(interval)


def job_state(session: requests.Session, base_url: str, job_uuid: str) -> dict:
    response = session.get(f"{base_url}/api/jobs/{job_uuid}/", timeout=30)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def submit_steps_job(session: requests.Session, base_url: str, project, steps: int, delay: float) -> dict:
    response = session.post(
        f"{base_url}/api/jobs/",
        json={"project": str(project.uuid), "kind": "test_steps", "params": {"steps": steps, "delay": delay}},
        timeout=30,
    )
    assert response.status_code == 201, response.text[:500]
    return response.json()
