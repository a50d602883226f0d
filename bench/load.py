"""Load test of BioVLM Web: concurrent clients upload, submit jobs, watch progress and view pages.

Without ``--url`` the script starts the whole platform itself with ``manage.py serve`` (Uvicorn,
one RQ worker, embedded Redis) on a free 127.0.0.1 port, with its own temporary SQLite
database and media folder, and creates a user to sign in as. With ``--url`` it uses a running
server and ``--username``/``--password``.

It first measures a baseline: page views by one client. Then ``--clients`` clients run for
``--seconds``, each repeating four actions in turn: a page view, a chunked upload of a
random file, a ``verify_dataset`` job watched over its progress websocket until it ends, and
an API read. It prints the latency (median, p95) of each request kind, the errors and the jobs
completed. Finally it downloads every stored file and compares its sha256 with what the
client sent, and checks that every submitted job reached a final state. The exit status is 1
when any request failed, a stored file differs, or a job did not finish; otherwise 0.

Run it as ``.venv/bin/python bench/load.py`` (8 clients, 60 s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
from websockets.sync.client import connect

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.upload import ISOLATED_VARIABLES, free_port, wait_for_port  # noqa: E402

KiB = 1024
FINISHED = ("succeeded", "failed", "cancelled")
SETUP_SCRIPT = """
import os
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("load", password=os.environ["LOAD_PASSWORD"])
"""


@dataclass
class Stats:
    """Latencies and errors of every request kind, shared by the client threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    uploads: dict[str, str] = field(default_factory=dict)  # stored file UUID -> sha256 sent by the client
    jobs: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)

    def error(self, kind: str, message: str) -> None:
        with self.lock:
            self.errors[kind].append(message[:300])


class RequestFailed(Exception):
    pass


class Client:
    """One simulated user with an API token and a browser session."""

    def __init__(self, base_url: str, credentials: dict, stats: Stats, index: int):
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://", 1)
        self.credentials = credentials
        self.stats = stats
        self.index = index
        self.api = requests.Session()
        self.api.headers["Authorization"] = f"Token {credentials['token']}"
        self.browser = requests.Session()
        self.browser.cookies.set("sessionid", credentials["session"])

    def timed(self, kind: str, method, url: str, expected: int, **kwargs) -> requests.Response:
        started = time.perf_counter()
        try:
            response = method(url, timeout=120, **kwargs)
        except requests.RequestException as error:
            self.stats.error(kind, f"{type(error).__name__}: {error}")
            raise RequestFailed(kind) from error
        self.stats.record(kind, time.perf_counter() - started)
        if response.status_code != expected:
            self.stats.error(kind, f"HTTP {response.status_code}: {response.text[:200]}")
            raise RequestFailed(kind)
        return response

    def view_pages(self) -> None:
        self.timed("page: project", self.browser.get, f"{self.base_url}/projects/{self.credentials['project']}/", 200)
        self.timed("page: dataset", self.browser.get, f"{self.base_url}/datasets/{self.credentials['uploads']}/", 200)

    def read_api(self) -> None:
        self.timed(
            "api: job list", self.api.get, f"{self.base_url}/api/jobs/?project={self.credentials['project']}", 200
        )

    def upload(self, size: int) -> None:
        data = os.urandom(size)
        sha256 = hashlib.sha256(data).hexdigest()
        body = {"dataset": self.credentials["uploads"], "filename": f"load-{self.index}.bin", "size": size}
        upload = self.timed("upload: create", self.api.post, f"{self.base_url}/api/uploads/", 201, json=body).json()
        offset = 0
        while offset < size:
            chunk = data[offset : offset + upload["chunk_size"]]
            headers = {
                "Content-Type": "application/octet-stream",
                "Upload-Offset": str(offset),
                "Chunk-Sha256": hashlib.sha256(chunk).hexdigest(),
            }
            url = f"{self.base_url}/api/uploads/{upload['uuid']}/chunk/"
            offset = self.timed("upload: chunk", self.api.put, url, 200, data=chunk, headers=headers).json()["offset"]
        url = f"{self.base_url}/api/uploads/{upload['uuid']}/complete/"
        stored = self.timed("upload: complete", self.api.post, url, 201, json={"sha256": sha256}).json()
        with self.stats.lock:
            self.stats.uploads[stored["uuid"]] = sha256

    def run_job(self) -> None:
        body = {
            "project": self.credentials["project"],
            "kind": "verify_dataset",
            "params": {"dataset": self.credentials["jobs"]},
        }
        job = self.timed("job: submit", self.api.post, f"{self.base_url}/api/jobs/", 201, json=body).json()
        with self.stats.lock:
            self.stats.jobs.append(job["uuid"])
        started = time.perf_counter()
        try:
            with connect(
                f"{self.ws_url}/ws/jobs/{job['uuid']}/",
                additional_headers={"Cookie": f"sessionid={self.credentials['session']}", "Origin": self.base_url},
                open_timeout=30,
            ) as socket:
                state = json.loads(socket.recv(timeout=30))["job"]
                self.stats.record("websocket: snapshot", time.perf_counter() - started)
                while state["status"] not in FINISHED:
                    state = json.loads(socket.recv(timeout=120))["job"]
        except Exception as error:  # websockets raises its own types, and TimeoutError for a silent socket
            self.stats.error("websocket", f"{type(error).__name__}: {error}")
            raise RequestFailed("websocket") from error
        self.stats.record("job: submit to final state", time.perf_counter() - started)
        if state["status"] != "succeeded":
            self.stats.error("job", f"job {job['uuid']} ended {state['status']}: {state['error']}")

    def run(self, deadline: float, upload_sizes: tuple[int, int]) -> None:
        actions = [self.view_pages, lambda: self.upload(upload_size(upload_sizes)), self.run_job, self.read_api]
        step = self.index
        while time.monotonic() < deadline:
            try:
                actions[step % len(actions)]()
            except RequestFailed:
                pass
            step += 1


def upload_size(bounds: tuple[int, int]) -> int:
    low, high = bounds
    return low + secrets.randbelow(high - low + 1)


def sign_in(base_url: str, username: str, password: str) -> tuple[str, str]:
    """Return an API token and a session cookie for the user, as the login form and token API give them."""
    token = requests.post(f"{base_url}/api/auth/token/", data={"username": username, "password": password}, timeout=60)
    if token.status_code != 200:
        raise SystemExit(
            f"Signing in as {username!r} at {base_url} failed: HTTP {token.status_code} {token.text[:200]}"
        )
    browser = requests.Session()
    form = browser.get(f"{base_url}/accounts/login/", timeout=60)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    if csrf is None:
        raise SystemExit(f"The login page at {base_url}/accounts/login/ has no CSRF token.")
    login = browser.post(
        f"{base_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": csrf.group(1)},
        headers={"Referer": f"{base_url}/accounts/login/"},
        allow_redirects=False,
        timeout=60,
    )
    if "sessionid" not in browser.cookies:
        raise SystemExit(f"The login form at {base_url} rejected {username!r}: HTTP {login.status_code}.")
    return token.json()["token"], browser.cookies["sessionid"]


def prepare(base_url: str, username: str, password: str) -> dict:
    """Create a project, a dataset for uploads and a dataset with two files for the jobs to verify."""
    token, session_id = sign_in(base_url, username, password)
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    project = api.post(f"{base_url}/api/projects/", json={"name": f"Load test {time.strftime('%H:%M:%S')}"}, timeout=60)
    project.raise_for_status()
    project_uuid = project.json()["uuid"]
    datasets = {}
    for name in ("uploads", "jobs"):
        dataset = api.post(
            f"{base_url}/api/datasets/", json={"project": project_uuid, "name": f"Load {name}"}, timeout=60
        )
        dataset.raise_for_status()
        datasets[name] = dataset.json()["uuid"]
    credentials = {"token": token, "session": session_id, "project": project_uuid, **datasets}
    seeder = Client(base_url, {**credentials, "uploads": datasets["jobs"]}, Stats(), index=0)
    for _ in range(2):
        seeder.upload(256 * KiB)
    return credentials


def run_clients(
    base_url: str, credentials: dict, clients: int, seconds: float, sizes: tuple[int, int], actions=None
) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + seconds
    threads = []
    for index in range(clients):
        client = Client(base_url, credentials, stats, index)
        target = actions(client, deadline) if actions else (lambda client=client: client.run(deadline, sizes))
        threads.append(threading.Thread(target=target, name=f"client-{index}"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stats


def page_views_only(client: Client, deadline: float):
    def run():
        while time.monotonic() < deadline:
            try:
                client.view_pages()
            except RequestFailed:
                pass

    return run


def print_latencies(title: str, stats: Stats, seconds: float) -> None:
    print(f"\n{title}")
    print(f"{'request':32} {'count':>7} {'per s':>7} {'median ms':>10} {'p95 ms':>9} {'errors':>7}")
    for kind in sorted(set(stats.latencies) | set(stats.errors)):
        values = sorted(stats.latencies.get(kind, []))
        median = f"{statistics.median(values) * 1000:.1f}" if values else "-"
        p95 = f"{values[min(len(values) - 1, int(0.95 * len(values)))] * 1000:.1f}" if values else "-"
        rate = len(values) / seconds
        print(f"{kind:32} {len(values):>7} {rate:>7.1f} {median:>10} {p95:>9} {len(stats.errors.get(kind, [])):>7}")


def verify(base_url: str, credentials: dict, stats: Stats, job_timeout: float) -> list[str]:
    """Check every stored file's sha256 and every job's final state; return the problems found."""
    api = requests.Session()
    api.headers["Authorization"] = f"Token {credentials['token']}"
    problems = []
    for file_uuid, sha256 in stats.uploads.items():
        digest = hashlib.sha256()
        with api.get(f"{base_url}/api/files/{file_uuid}/download/", stream=True, timeout=120) as response:
            if response.status_code != 200:
                problems.append(f"file {file_uuid}: download failed with HTTP {response.status_code}")
                continue
            for block in response.iter_content(64 * KiB):
                digest.update(block)
        recorded = api.get(f"{base_url}/api/files/{file_uuid}/", timeout=60).json()["sha256"]
        if digest.hexdigest() != sha256 or recorded != sha256:
            problems.append(f"file {file_uuid}: sent {sha256}, stored {digest.hexdigest()}, recorded {recorded}")

    deadline = time.monotonic() + job_timeout
    pending = list(stats.jobs)
    states = {}
    while pending:
        for job_uuid in list(pending):
            states[job_uuid] = api.get(f"{base_url}/api/jobs/{job_uuid}/", timeout=60).json()["status"]
            if states[job_uuid] in FINISHED:
                pending.remove(job_uuid)
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    problems += [f"job {job_uuid} is still {states[job_uuid]} after {job_timeout:.0f} s" for job_uuid in pending]
    succeeded = sum(1 for state in states.values() if state == "succeeded")
    print(f"\nIntegrity check: {len(stats.uploads)} stored files compared by sha256, {len(stats.jobs)} jobs checked.")
    print(
        f"Jobs: {succeeded} succeeded, {len(stats.jobs) - succeeded - len(pending)} failed or cancelled, {len(pending)} unfinished."
    )
    return problems


def start_platform(var_dir: Path, password: str) -> tuple[subprocess.Popen, str]:
    """Start ``manage.py serve`` on a free port with its own SQLite, embedded Redis and media folder."""
    env = {name: value for name, value in os.environ.items() if name not in ISOLATED_VARIABLES}
    env.update(
        {
            "BIOVLM_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO_ROOT),
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        }
    )
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, env=env, check=True)
    setup_env = {**env, "LOAD_PASSWORD": password}
    subprocess.run([*manage, "shell", "--no-imports", "-c", SETUP_SCRIPT], cwd=REPO_ROOT, env=setup_env, check=True)
    port = free_port()
    with (var_dir / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [*manage, "serve", "--port", str(port), "--workers", "1"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for_port(port, server)
    return server, f"http://127.0.0.1:{port}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="Number of concurrent clients (default 8).")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="Duration of the load phase in seconds (default 60)."
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=10.0,
        help="Duration of the one-client page-view baseline (default 10).",
    )
    parser.add_argument("--min-upload-kib", type=int, default=256, help="Smallest random upload in KiB (default 256).")
    parser.add_argument("--max-upload-kib", type=int, default=3072, help="Largest random upload in KiB (default 3072).")
    parser.add_argument(
        "--job-timeout", type=float, default=120.0, help="Seconds to wait for jobs at the end (default 120)."
    )
    parser.add_argument(
        "--url", help="Test a running server at this http://127.0.0.1:<port> URL instead of starting one."
    )
    parser.add_argument("--username", help="User to sign in as with --url.")
    parser.add_argument("--password", help="Password of --username.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary var directory of the started server.")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be at least 1 and --seconds above 0.")
    if not 1 <= args.min_upload_kib <= args.max_upload_kib:
        parser.error("--min-upload-kib must be at least 1 and at most --max-upload-kib.")
    if args.url and not (args.username and args.password):
        parser.error("--url needs --username and --password.")
    if args.url and urlsplit(args.url).hostname not in ("127.0.0.1", "localhost"):
        parser.error(
            f"--url must point at 127.0.0.1 or localhost, not {args.url!r}: this script only loads a local server."
        )
    sizes = (args.min_upload_kib * KiB, args.max_upload_kib * KiB)

    server = var_dir = None
    try:
        if args.url:
            base_url, username, password = args.url.rstrip("/"), args.username, args.password
        else:
            var_dir = Path(tempfile.mkdtemp(prefix="biovlm-load-"))
            username, password = "load", secrets.token_urlsafe(16)
            server, base_url = start_platform(var_dir, password)
        print(f"Server: {base_url} ({'given' if args.url else 'manage.py serve, 1 RQ worker, SQLite, embedded Redis'})")
        credentials = prepare(base_url, username, password)

        baseline = run_clients(base_url, credentials, 1, args.baseline_seconds, sizes, actions=page_views_only)
        print_latencies(
            f"Baseline: page views by 1 client for {args.baseline_seconds:.0f} s", baseline, args.baseline_seconds
        )
        stats = run_clients(base_url, credentials, args.clients, args.seconds, sizes)
        print_latencies(
            f"Load: {args.clients} clients for {args.seconds:.0f} s (pages, uploads of "
            f"{args.min_upload_kib}-{args.max_upload_kib} KiB, verify_dataset jobs with websocket progress, API reads)",
            stats,
            args.seconds,
        )
        problems = verify(base_url, credentials, stats, args.job_timeout)
    finally:
        if server is not None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        if var_dir is not None:
            if args.keep:
                print(f"Kept the var directory {var_dir}")
            else:
                shutil.rmtree(var_dir, ignore_errors=True)

    errors = sum(len(messages) for messages in stats.errors.values()) + sum(
        len(messages) for messages in baseline.errors.values()
    )
    for kind, messages in sorted({**baseline.errors, **stats.errors}.items()):
        print(f"Errors of {kind}: {len(messages)}, first: {messages[0]}")
    for problem in problems:
        print(f"Integrity problem: {problem}")
    print(f"Result: {errors} request errors, {len(problems)} integrity problems.")
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main())
