"""Shared fixtures: personas, a clean Redis, and live server and worker subprocesses."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# The options `manage.py serve` uses, so tests run the server as users do.
UVICORN_OPTIONS = ["--host", "127.0.0.1", "--ws", "websockets-sansio", "--lifespan", "off", "--log-level", "warning"]


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()


@pytest.fixture
def redis_conn():
    """A connection to the Redis that RQ and Channels use, emptied before the test."""
    import django_rq

    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


def make_user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username=username, password=f"{username}-password-1")


@pytest.fixture
def personas(db):
    """An owner and a member of one project, and a stranger who belongs to another project."""
    from biovlm_web.core.models import Membership, Project

    owner = make_user("owner")
    member = make_user("member")
    stranger = make_user("stranger")
    project = Project.objects.create(name="Cell biology", owner=owner)
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    Membership.objects.create(project=project, user=member)
    other = Project.objects.create(name="Other lab", owner=stranger)
    Membership.objects.create(project=other, user=stranger, role=Membership.Role.OWNER)
    return {"owner": owner, "member": member, "stranger": stranger, "project": project, "other_project": other}


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    """A DATABASE_URL for subprocesses that points at the test database."""
    from django.db import connection

    config = connection.settings_dict
    if config["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{config['NAME']}"
    user = quote(config.get("USER") or "")
    password = quote(config.get("PASSWORD") or "")
    auth = ""
    if user:
        auth = f"{user}:{password}@" if password else f"{user}@"
    host = config.get("HOST") or "127.0.0.1"
    port = f":{config['PORT']}" if config.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{config['NAME']}"


def subprocess_env(**extra) -> dict:
    env = dict(os.environ)
    # Browser tests allow sync database calls beside Playwright's event loop; servers must not.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env["DATABASE_URL"] = _database_url()
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited with code {process.returncode} before listening on {port}.")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"Nothing listened on 127.0.0.1:{port} within {timeout} s.")


class LiveServer:
    def __init__(self, process, port):
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"


@pytest.fixture
def live_asgi(transactional_db, redis_conn):
    """Uvicorn serving the ASGI application on a free port, against the test database."""
    port = free_port()
    log = open(Path(settings.VAR_DIR) / f"uvicorn-{port}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "biovlm_web.asgi:application", *UVICORN_OPTIONS, "--port", str(port)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        yield LiveServer(process, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def start_worker(*queues: str, burst: bool = True, **env) -> subprocess.Popen:
    """Start ``manage.py rqworker`` with the platform's worker class as a subprocess.

    A burst worker's output is piped for ``communicate()``. A long-running worker writes to the
    file at ``process.log_path`` instead, because nobody reads its pipe and a full pipe would
    block the worker.
    """
    args = [sys.executable, "manage.py", "rqworker", "--worker-class", "biovlm_web.core.worker.JobWorker"]
    if burst:
        args.append("--burst")
        output = subprocess.PIPE
        log_path = None
    else:
        handle, name = tempfile.mkstemp(prefix="rqworker-", suffix=".log")
        output = os.fdopen(handle, "wb")
        log_path = Path(name)
    try:
        process = subprocess.Popen(
            [*args, *(queues or ("default",))],
            cwd=REPO_ROOT,
            env=subprocess_env(**env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path is not None:
            output.close()
    process.log_path = log_path
    return process


def pytest_sessionfinish(session, exitstatus):
    if getattr(settings, "REDIS_EMBEDDED", False):
        from biovlm_web import embedded_redis

        embedded_redis.shutdown(settings.VAR_DIR)
