"""Benchmark the upload paths of BioVLM Web: resumable chunks against one multipart request.

Starts Uvicorn (or Daphne with ``--server daphne``) serving ``biovlm_web.asgi:application``
on a free 127.0.0.1 port. The server gets its own temporary var directory with SQLite, an
embedded Redis and FileSystemStorage. The script creates a user, project, dataset and API
token there, writes an MRC volume of about ``--size`` bytes to disk in blocks, and uploads
it twice:

1. in chunks through /api/uploads/ (the browser uploader's protocol, with a SHA-256 per
   chunk and for the whole file), and
2. in one multipart POST to /api/datasets/<uuid>/files/, streamed from disk.

For each it prints the throughput and the server's peak resident memory growth, sampled
in a thread. Run it as ``.venv/bin/python bench/upload.py --size 1G``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from biovlm_web import embedded_redis  # noqa: E402
from biovlm_web.env import parse_size  # noqa: E402

MiB = 1024 * 1024
BLOCK_SIZE = 8 * MiB
# Slices of 512 × 512 float32 voxels: 1 MiB each.
VOLUME_SIDE = 512

SETUP_SCRIPT = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from biovlm_web.core.models import Membership, Project
from biovlm_web.uploads.models import Dataset
user = get_user_model().objects.create_user("bench", password=None)
project = Project.objects.create(name="Benchmark", owner=user)
Membership.objects.create(project=project, user=user, role=Membership.Role.OWNER)
dataset = Dataset.objects.create(project=project, name="Upload benchmark", created_by=user)
print("credentials", Token.objects.create(user=user).key, dataset.uuid)
"""


@dataclass
class Result:
    method: str
    size: int
    seconds: float
    rss_growth: int
    detail: str

    @property
    def megabytes_per_second(self) -> float:
        return self.size / self.seconds / 1e6


class PeakRss:
    """Sample a process's resident set size every ``interval`` seconds and keep the maximum."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.process = psutil.Process(pid)
        self.interval = interval
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited with code {process.returncode} before listening on port {port}.")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"The server did not listen on 127.0.0.1:{port} within {timeout} s.")


def write_volume(path: Path, target_size: int) -> tuple[int, str]:
    """Write an MRC2014 float32 volume of about ``target_size`` bytes in blocks of random data.

    Returns the file's size and SHA-256.
    """
    slice_bytes = VOLUME_SIDE * VOLUME_SIDE * 4
    depth = max(1, (target_size - 1024) // slice_bytes)
    header = bytearray(1024)
    header[0:16] = struct.pack("<4i", VOLUME_SIDE, VOLUME_SIDE, depth, 2)
    header[28:40] = struct.pack("<3i", VOLUME_SIDE, VOLUME_SIDE, depth)
    header[40:52] = struct.pack("<3f", VOLUME_SIDE * 2.0, VOLUME_SIDE * 2.0, depth * 2.0)  # 2 Å voxels
    header[64:76] = struct.pack("<3i", 1, 2, 3)
    header[208:212] = b"MAP "
    header[212:214] = b"\x44\x44"
    header[108:112] = struct.pack("<i", 20140)

    digest = hashlib.sha256(header)
    remaining = depth * slice_bytes
    with path.open("wb") as handle:
        handle.write(header)
        while remaining:
            block = os.urandom(min(BLOCK_SIZE, remaining))
            digest.update(block)
            handle.write(block)
            remaining -= len(block)
    return path.stat().st_size, digest.hexdigest()


def upload_chunked(base_url: str, token: str, dataset: str, path: Path, pid: int) -> Result:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    size = path.stat().st_size
    whole_file = hashlib.sha256()
    with PeakRss(pid) as rss:
        started = time.perf_counter()
        created = session.post(
            f"{base_url}/api/uploads/", json={"dataset": dataset, "filename": path.name, "size": size}, timeout=60
        )
        created.raise_for_status()
        upload = created.json()
        offset = 0
        with path.open("rb") as handle:
            while offset < size:
                chunk = handle.read(upload["chunk_size"])
                whole_file.update(chunk)
                response = session.put(
                    f"{base_url}/api/uploads/{upload['uuid']}/chunk/",
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Upload-Offset": str(offset),
                        "Chunk-Sha256": hashlib.sha256(chunk).hexdigest(),
                    },
                    timeout=600,
                )
                if response.status_code != 200:
                    raise RuntimeError(f"Chunk at offset {offset} failed: {response.status_code} {response.text}")
                offset = response.json()["offset"]
        chunks_done = time.perf_counter()
        completed = session.post(
            f"{base_url}/api/uploads/{upload['uuid']}/complete/", json={"sha256": whole_file.hexdigest()}, timeout=3600
        )
        if completed.status_code != 201:
            raise RuntimeError(f"Completing the upload failed: {completed.status_code} {completed.text}")
        finished = time.perf_counter()
    detail = (
        f"{upload['chunk_size'] // MiB} MiB chunks; chunks {chunks_done - started:.1f} s, "
        f"complete {finished - chunks_done:.1f} s"
    )
    return Result("chunked", size, finished - started, rss.growth, detail)


def upload_multipart(base_url: str, token: str, dataset: str, path: Path, pid: int) -> Result:
    """POST the file in one multipart request, streamed from disk with a Content-Length."""
    size = path.stat().st_size
    boundary = f"bench-{uuid.uuid4().hex}"
    preamble = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    epilogue = f"\r\n--{boundary}--\r\n".encode()
    host, port = base_url.removeprefix("http://").split(":")

    with PeakRss(pid) as rss:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=3600)
        connection.putrequest("POST", f"/api/datasets/{dataset}/files/")
        connection.putheader("Authorization", f"Token {token}")
        connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        connection.putheader("Content-Length", str(len(preamble) + size + len(epilogue)))
        connection.endheaders()
        connection.send(preamble)
        with path.open("rb") as handle:
            while block := handle.read(BLOCK_SIZE):
                connection.send(block)
        connection.send(epilogue)
        response = connection.getresponse()
        body = response.read()
        finished = time.perf_counter()
        connection.close()
    if response.status != 201:
        raise RuntimeError(f"The multipart upload failed: {response.status} {body[:500]!r}")
    stored = json.loads(body)["files"][0]
    return Result("multipart", size, finished - started, rss.growth, f"stored sha256 {stored['sha256'][:12]}…")


# Settings that would point the benchmark server at the caller's own database, Redis or files.
ISOLATED_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "MEDIA_ROOT",
    "UPLOAD_TEMP_DIR",
    "STORAGE_BACKEND",
    "DJANGO_SETTINGS_MODULE",
)


SERVER_COMMANDS = {
    "daphne": ["daphne", "-b", "127.0.0.1", "-p", "{port}", "biovlm_web.asgi:application"],
    "uvicorn": [
        "uvicorn",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--lifespan",
        "off",
        "biovlm_web.asgi:application",
    ],
}
METHODS = ("chunked", "multipart")


def run_benchmark(
    size: int, chunk_size: str | None, database_url: str | None, server_name: str, methods: list[str], keep: bool
) -> None:
    var_dir = Path(tempfile.mkdtemp(prefix="biovlm-bench-"))
    env = {name: value for name, value in os.environ.items() if name not in ISOLATED_VARIABLES}
    env.update(
        {
            "BIOVLM_VAR_DIR": str(var_dir),
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "UPLOAD_MAX_FILE_SIZE": str(size + 64 * MiB),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    env["DATABASE_URL"] = database_url or f"sqlite:///{var_dir / 'db.sqlite3'}"
    if chunk_size:
        env["UPLOAD_CHUNK_SIZE"] = chunk_size

    server = None
    try:
        manage = [sys.executable, str(REPO_ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, env=env, check=True)
        setup = subprocess.run(
            [*manage, "shell", "-c", SETUP_SCRIPT], cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True
        )
        # The shell may print notices of its own, so the line is found by its first word.
        credentials = next(line for line in setup.stdout.splitlines() if line.startswith("credentials "))
        _, token, dataset = credentials.split()

        path = var_dir / "bench-volume.mrc"
        print(f"Writing a test volume of {size / MiB:.0f} MiB to {path} ...", flush=True)
        actual_size, expected_sha256 = write_volume(path, size)

        port = free_port()
        log = (var_dir / f"{server_name}.log").open("wb")
        command = [part.format(port=port) for part in SERVER_COMMANDS[server_name]]
        server = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(port, server)
        base_url = f"http://127.0.0.1:{port}"
        # One small request first, so imports and start-up allocations are not counted as growth.
        requests.get(f"{base_url}/api/datasets/", headers={"Authorization": f"Token {token}"}, timeout=60)

        print(f"Uploading {actual_size} bytes to {server_name} at {base_url} ...", flush=True)
        results = []
        if "chunked" in methods:
            results.append(upload_chunked(base_url, token, dataset, path, server.pid))
        if "multipart" in methods:
            results.append(upload_multipart(base_url, token, dataset, path, server.pid))
        print_results(results, actual_size, expected_sha256, server_name)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        embedded_redis.shutdown(var_dir)
        if keep:
            print(f"Kept the var directory {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)


def print_results(results: list[Result], size: int, expected_sha256: str, server_name: str) -> None:
    print()
    print(f"File: {size} bytes ({size / MiB:.1f} MiB), sha256 {expected_sha256[:12]}…")
    print(f"Server: {server_name}, FileSystemStorage. MB/s counts 10^6 bytes per second.")
    print(f"{'method':<16} {'seconds':>8} {'MB/s':>8} {'server RSS growth':>18}  notes")
    for result in results:
        print(
            f"{result.method:<16} {result.seconds:>8.1f} {result.megabytes_per_second:>8.1f} "
            f"{result.rss_growth / MiB:>14.1f} MiB  {result.detail}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="Test file size in bytes or with K, M or G (default 1G).")
    parser.add_argument(
        "--chunk-size", default=None, help="UPLOAD_CHUNK_SIZE for the server, such as 8M (default: the setting's own)."
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="DATABASE_URL of an empty database for the server (default: SQLite in the temporary var directory).",
    )
    parser.add_argument("--server", choices=sorted(SERVER_COMMANDS), default="uvicorn", help="ASGI server to run.")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="Comma-separated upload methods to run: chunked, multipart (default both).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the temporary var directory and the test file.")
    args = parser.parse_args()
    try:
        size = parse_size(args.size)
    except ValueError:
        parser.error(f"--size {args.size!r} is not a size: write bytes or a number with K, M or G, such as 256M.")
    if size < 2 * MiB:
        parser.error("--size must be at least 2M, because the test volume is made of 1 MiB slices.")
    methods = [method.strip() for method in args.methods.split(",") if method.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        parser.error(f"--methods takes chunked and/or multipart, not {args.methods!r}.")
    run_benchmark(size, args.chunk_size, args.database_url, args.server, methods, args.keep)


if __name__ == "__main__":
    main()
