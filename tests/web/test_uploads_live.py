"""Uploads and downloads against real ASGI servers in subprocesses: memory use and restarts."""

import hashlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mrcfile
import numpy as np
import psutil
import pytest
import requests
from django.conf import settings
from rest_framework.authtoken.models import Token

from biovlm_web.uploads.models import Dataset
from tests.conftest import REPO_ROOT, free_port, subprocess_env, wait_for_port

MiB = 1024 * 1024


class PeakRss:
    """Sample a process's resident set size in a thread and keep the maximum."""

    def __init__(self, pid: int, interval: float = 0.01):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()


def write_volume(path: Path, shape, seed=0) -> str:
    """Write a float32 MRC volume slice by slice and return its SHA-256."""
    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        for z in range(shape[0]):
            mrc.data[z] = rng.normal(size=shape[1:]).astype(np.float32)
        mrc.voxel_size = 3.2
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def api_session(user) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return session


def send_file(session, base_url, upload, path: Path, start: int = 0, stop: int | None = None) -> int:
    offset = start
    end = upload["size"] if stop is None else stop
    with path.open("rb") as handle:
        handle.seek(offset)
        while offset < end:
            chunk = handle.read(min(upload["chunk_size"], end - offset))
            response = session.put(
                f"{base_url}/api/uploads/{upload['uuid']}/chunk/",
                data=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Upload-Offset": str(offset),
                    "Chunk-Sha256": hashlib.sha256(chunk).hexdigest(),
                },
                timeout=60,
            )
            assert response.status_code == 200, response.text
            offset = response.json()["offset"]
    return offset


def upload_file(session, base_url, dataset, path: Path, name: str) -> dict:
    created = session.post(
        f"{base_url}/api/uploads/",
        json={"dataset": str(dataset.uuid), "filename": name, "size": path.stat().st_size},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    upload = created.json()
    send_file(session, base_url, upload, path)
    completed = session.post(f"{base_url}/api/uploads/{upload['uuid']}/complete/", json={}, timeout=120)
    assert completed.status_code == 201, completed.text
    return completed.json()


def download_sha256(session, url: str, pause: float = 0.0) -> str:
    """Download ``url`` in 1 MiB blocks, waiting ``pause`` seconds after each, and return its SHA-256."""
    digest = hashlib.sha256()
    with session.get(url, stream=True, timeout=120) as response:
        assert response.status_code == 200
        for block in response.iter_content(MiB):
            digest.update(block)
            time.sleep(pause)
    return digest.hexdigest()


@pytest.mark.slow
def test_server_memory_flat_during_upload(live_asgi, personas, tmp_path):
    dataset = Dataset.objects.create(project=personas["project"], name="Large volumes")
    session = api_session(personas["owner"])

    # Warm-up: the first upload imports NumPy, mrcfile and the API code into the server,
    # which costs memory once and is not what this test measures.
    small = tmp_path / "small.mrc"
    small_sha256 = write_volume(small, (4, 64, 64), seed=1)
    warm = upload_file(session, live_asgi.url, dataset, small, "small.mrc")
    assert download_sha256(session, warm["download_url"]) == small_sha256

    large = tmp_path / "large.mrc"
    large_sha256 = write_volume(large, (192, 256, 256), seed=2)
    size = large.stat().st_size
    assert size > 48 * MiB

    baseline = psutil.Process(live_asgi.process.pid).memory_info().rss
    with PeakRss(live_asgi.process.pid) as upload_rss:
        stored = upload_file(session, live_asgi.url, dataset, large, "large.mrc")
    assert stored["sha256"] == large_sha256
    assert stored["metadata"]["shape"] == [192, 256, 256]
    growth = upload_rss.peak - baseline
    assert growth < 24 * MiB, f"server RSS grew by {growth / MiB:.1f} MiB for a {size / MiB:.0f} MiB upload"


@pytest.mark.slow
def test_download_streams_in_blocks(personas, transactional_db, redis_conn, tmp_path):
    # Uvicorn, not Daphne: Daphne 4.2 writes response bodies without flow control, so with
    # a client slower than the disk it buffers the file in memory whatever the app does.
    dataset = Dataset.objects.create(project=personas["project"], name="Downloads")
    session = api_session(personas["owner"])
    port = free_port()
    server = start_server(
        ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off", "biovlm_web.asgi:application"],
        Path(settings.VAR_DIR) / f"uvicorn-{port}.log",
    )
    try:
        wait_for_port(port, server)
        base_url = f"http://127.0.0.1:{port}"
        small = tmp_path / "small.mrc"
        write_volume(small, (4, 64, 64), seed=4)
        warm = upload_file(session, base_url, dataset, small, "small.mrc")
        download_sha256(session, warm["download_url"])

        large = tmp_path / "large.mrc"
        large_sha256 = write_volume(large, (192, 256, 256), seed=5)
        stored = upload_file(session, base_url, dataset, large, "large.mrc")

        baseline = psutil.Process(server.pid).memory_info().rss
        with PeakRss(server.pid) as download_rss:
            assert download_sha256(session, stored["download_url"], pause=0.002) == large_sha256
        growth = download_rss.peak - baseline
        assert growth < 24 * MiB, f"server RSS grew by {growth / MiB:.1f} MiB for a 48 MiB download"
    finally:
        server.terminate()
        server.wait(timeout=10)


def start_server(module_args: list[str], log_path: Path) -> subprocess.Popen:
    """Start ``python -m <module_args>`` against the test database, logging to ``log_path``."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", *module_args],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
def test_resume_after_server_restart(live_asgi, personas, tmp_path):
    dataset = Dataset.objects.create(project=personas["project"], name="Restarts")
    session = api_session(personas["owner"])
    path = tmp_path / "tomo.mrc"
    expected_sha256 = write_volume(path, (48, 128, 128), seed=3)
    created = session.post(
        f"{live_asgi.url}/api/uploads/",
        json={"dataset": str(dataset.uuid), "filename": "tomo.mrc", "size": path.stat().st_size},
        timeout=30,
    ).json()
    sent = send_file(session, live_asgi.url, created, path, stop=created["chunk_size"] * 2)
    assert sent == created["chunk_size"] * 2

    live_asgi.process.send_signal(signal.SIGKILL)
    live_asgi.process.wait(timeout=10)

    port = free_port()
    restarted = start_server(
        ["daphne", "-b", "127.0.0.1", "-p", str(port), "biovlm_web.asgi:application"],
        Path(settings.VAR_DIR) / f"daphne-{port}.log",
    )
    try:
        wait_for_port(port, restarted)
        base_url = f"http://127.0.0.1:{port}"
        state = session.get(f"{base_url}/api/uploads/{created['uuid']}/", timeout=30).json()
        assert state["offset"] == sent
        assert state["status"] == "active"
        send_file(session, base_url, state, path, start=state["offset"])
        completed = session.post(
            f"{base_url}/api/uploads/{created['uuid']}/complete/", json={"sha256": expected_sha256}, timeout=60
        )
        assert completed.status_code == 201, completed.text
        assert download_sha256(session, completed.json()["download_url"]) == expected_sha256
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
