"""Chunked uploads through a dropped connection, a server crash and a full disk, against real servers."""

import hashlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from biovlm_web.uploads.models import DataFile, Dataset, UploadSession
from tests.reliability.conftest import ServerProcess, api_session
from tests.web.test_uploads_live import file_sha256, send_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MiB = 1024 * 1024


def random_file(path: Path, size: int) -> str:
    path.write_bytes(os.urandom(size))
    return file_sha256(path)


def start_upload(session, base_url, dataset, path: Path, sha256: str = "") -> dict:
    body = {"dataset": str(dataset.uuid), "filename": path.name, "size": path.stat().st_size}
    if sha256:
        body["sha256"] = sha256
    response = session.post(f"{base_url}/api/uploads/", json=body, timeout=30)
    assert response.status_code == 201, response.text[:500]
    return response.json()


def send_partial_chunk(port: int, session, upload: dict, offset: int, chunk: bytes, sent: int) -> socket.socket:
    """Start a chunk request that announces all of ``chunk`` but send only its first ``sent`` bytes.

    Returns the open socket, so the caller decides how the connection ends.
    """
    head = (
        f"PUT /api/uploads/{upload['uuid']}/chunk/ HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: {session.headers['Authorization']}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(chunk)}\r\n"
        f"Upload-Offset: {offset}\r\n"
        f"Chunk-Sha256: {hashlib.sha256(chunk).hexdigest()}\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(head.encode() + chunk[:sent])
    return connection


def upload_state(session, base_url, upload: dict) -> dict:
    response = session.get(f"{base_url}/api/uploads/{upload['uuid']}/", timeout=30)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def complete_and_download(session, base_url, upload: dict, sha256: str) -> dict:
    completed = session.post(f"{base_url}/api/uploads/{upload['uuid']}/complete/", json={"sha256": sha256}, timeout=60)
    assert completed.status_code == 201, completed.text[:500]
    stored = completed.json()
    download = session.get(stored["download_url"], timeout=60)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == sha256
    return stored


def temp_files(directory: Path, upload: dict) -> list[str]:
    """Names of the partial file and chunk side files of one upload."""
    return sorted(path.name for path in directory.glob(f"{upload['uuid']}*"))


def test_connection_dropped_mid_chunk_resumes(personas, processes, tmp_path, settings):
    server = ServerProcess().start()
    processes.append(server)
    session = api_session(personas["owner"])
    dataset = Dataset.objects.create(project=personas["project"], name="Drops")
    path = tmp_path / "drop.bin"
    expected = random_file(path, 5 * MiB + 12345)
    upload = start_upload(session, server.url, dataset, path, expected)
    chunk_size = upload["chunk_size"]
    committed = send_file(session, server.url, upload, path, stop=2 * chunk_size)

    chunk = path.read_bytes()[committed : committed + chunk_size]
    connection = send_partial_chunk(server.port, session, upload, committed, chunk, sent=chunk_size // 3)
    connection.close()

    state = upload_state(session, server.url, upload)
    assert state["offset"] == committed
    assert state["status"] == "active"
    partial_dir = Path(settings.UPLOAD_TEMP_DIR)
    assert temp_files(partial_dir, upload) == [f"{upload['uuid']}.part"]
    assert (partial_dir / f"{upload['uuid']}.part").stat().st_size == committed

    send_file(session, server.url, state, path, start=state["offset"])
    stored = complete_and_download(session, server.url, upload, expected)
    assert stored["size"] == path.stat().st_size
    assert DataFile.objects.get(uuid=stored["uuid"]).sha256 == expected
    assert temp_files(partial_dir, upload) == []


def test_server_killed_mid_chunk_resumes(personas, processes, tmp_path, settings):
    server = ServerProcess().start()
    processes.append(server)
    session = api_session(personas["owner"])
    dataset = Dataset.objects.create(project=personas["project"], name="Crashes")
    path = tmp_path / "crash.bin"
    expected = random_file(path, 4 * MiB + 777)
    upload = start_upload(session, server.url, dataset, path)
    chunk_size = upload["chunk_size"]
    committed = send_file(session, server.url, upload, path, stop=chunk_size)

    chunk = path.read_bytes()[committed : committed + chunk_size]
    connection = send_partial_chunk(server.port, session, upload, committed, chunk, sent=chunk_size // 2)
    server.kill()
    connection.close()
    server.start()

    state = upload_state(session, server.url, upload)
    assert state["offset"] == committed
    assert state["status"] == "active"
    send_file(session, server.url, state, path, start=state["offset"])
    stored = complete_and_download(session, server.url, upload, expected)
    assert stored["sha256"] == expected
    # A side file of the chunk cut by the crash may remain until cleanup_uploads removes it.
    assert not (Path(settings.UPLOAD_TEMP_DIR) / f"{upload['uuid']}.part").exists()


# --- A full disk ---------------------------------------------------------------------------------


def small_filesystem_prefix(mounts: dict[Path, int]) -> list[str]:
    """A command prefix that runs a program with a tmpfs of the given size in MiB at each path.

    The mounts live in a private mount namespace of an unprivileged user namespace, so they
    need no root and vanish with the process.
    """
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed, so no size-limited filesystem can be mounted.")
    commands = []
    for path, size_mib in mounts.items():
        path.mkdir(parents=True, exist_ok=True)
        commands.append(f"mount -t tmpfs -o size={size_mib}m tmpfs {path}")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", " && ".join(commands)],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"Mounting a tmpfs in a user namespace failed: {probe.stderr.strip()}")
    script = " && ".join(commands) + ' && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"]


def inside(server: ServerProcess, path: Path) -> Path:
    """Return the path as seen from the server's mount namespace."""
    return Path(f"/proc/{server.process.pid}/root") / path.relative_to("/")


def test_full_disk_during_chunks_stores_nothing(personas, processes, tmp_path):
    partial_dir = tmp_path / "small" / "partial"
    server = ServerProcess(UPLOAD_TEMP_DIR=partial_dir)
    server.start(prefix=small_filesystem_prefix({tmp_path / "small": 4}))
    processes.append(server)
    session = api_session(personas["owner"])
    dataset = Dataset.objects.create(project=personas["project"], name="Full disk")

    # Each upload fits the free space when it starts, but both together do not.
    first_path, second_path = tmp_path / "first.bin", tmp_path / "second.bin"
    first_sha256 = random_file(first_path, 3 * MiB)
    second_sha256 = random_file(second_path, 3 * MiB)
    first = start_upload(session, server.url, dataset, first_path, first_sha256)
    second = start_upload(session, server.url, dataset, second_path, second_sha256)
    send_file(session, server.url, first, first_path)

    rejected = None
    offset = 0
    data = second_path.read_bytes()
    while offset < len(data):
        chunk = data[offset : offset + second["chunk_size"]]
        response = session.put(
            f"{server.url}/api/uploads/{second['uuid']}/chunk/",
            data=chunk,
            headers={"Upload-Offset": str(offset), "Chunk-Sha256": hashlib.sha256(chunk).hexdigest()},
            timeout=60,
        )
        if response.status_code != 200:
            rejected = response
            break
        offset = response.json()["offset"]

    assert rejected is not None, "the second upload fitted on the small disk"
    assert rejected.status_code == 507, rejected.text[:500]
    body = rejected.json()
    assert body["code"] == "insufficient_storage"
    assert "disk" in body["detail"]
    assert body["offset"] == offset
    state = upload_state(session, server.url, second)
    assert state["offset"] == offset
    assert state["status"] == "active"
    # Nothing beyond the committed offset stays on the disk, and no side file is left.
    assert temp_files(inside(server, partial_dir), second) == [f"{second['uuid']}.part"]
    assert (inside(server, partial_dir) / f"{second['uuid']}.part").stat().st_size == offset

    incomplete = session.post(f"{server.url}/api/uploads/{second['uuid']}/complete/", json={}, timeout=60)
    assert incomplete.status_code == 409
    assert not DataFile.objects.filter(original_name="second.bin").exists()
    assert UploadSession.objects.get(uuid=second["uuid"]).data_file is None

    # Freeing space lets the rejected upload resume where it stopped.
    assert session.delete(f"{server.url}/api/uploads/{first['uuid']}/", timeout=30).status_code == 204
    send_file(session, server.url, state, second_path, start=state["offset"])
    stored = complete_and_download(session, server.url, second, second_sha256)
    assert DataFile.objects.filter(dataset=dataset).count() == 1
    assert stored["original_name"] == "second.bin"


def test_full_disk_on_complete_stores_nothing(personas, processes, tmp_path):
    partial_dir, media_dir = tmp_path / "partial", tmp_path / "media-small"
    server = ServerProcess(UPLOAD_TEMP_DIR=partial_dir, MEDIA_ROOT=media_dir)
    server.start(prefix=small_filesystem_prefix({partial_dir: 16, media_dir: 2}))
    processes.append(server)
    session = api_session(personas["owner"])
    dataset = Dataset.objects.create(project=personas["project"], name="Full media disk")
    path = tmp_path / "large.bin"
    expected = random_file(path, 3 * MiB)
    upload = start_upload(session, server.url, dataset, path, expected)
    send_file(session, server.url, upload, path)

    rejected = session.post(f"{server.url}/api/uploads/{upload['uuid']}/complete/", json={}, timeout=60)
    assert rejected.status_code == 507, rejected.text[:500]
    assert rejected.json()["code"] == "insufficient_storage"
    assert "disk" in rejected.json()["detail"]
    assert not DataFile.objects.filter(dataset=dataset).exists()
    stored_files = [path for path in inside(server, media_dir).rglob("*") if path.is_file()]
    assert stored_files == []
    state = upload_state(session, server.url, upload)
    assert state["status"] == "active"
    assert state["offset"] == path.stat().st_size


def test_full_disk_multipart_stores_nothing(personas, processes, tmp_path):
    partial_dir = tmp_path / "partial-small"
    server = ServerProcess(UPLOAD_TEMP_DIR=partial_dir)
    server.start(prefix=small_filesystem_prefix({partial_dir: 2}))
    processes.append(server)
    session = api_session(personas["owner"])
    dataset = Dataset.objects.create(project=personas["project"], name="Full temporary disk")
    path = tmp_path / "multipart.bin"
    random_file(path, 3 * MiB)

    with path.open("rb") as handle:
        response = session.post(
            f"{server.url}/api/datasets/{dataset.uuid}/files/", files={"file": (path.name, handle)}, timeout=60
        )
    assert response.status_code == 507, response.text[:500]
    assert response.json()["code"] == "insufficient_storage"
    assert "disk is full" in response.json()["detail"]
    assert not DataFile.objects.filter(dataset=dataset).exists()
    assert [path.name for path in inside(server, partial_dir).iterdir()] == []

    # The same request succeeds once the file fits.
    small = tmp_path / "small.bin"
    expected = random_file(small, 256 * 1024)
    with small.open("rb") as handle:
        stored = session.post(
            f"{server.url}/api/datasets/{dataset.uuid}/files/", files={"file": (small.name, handle)}, timeout=60
        )
    assert stored.status_code == 201, stored.text[:500]
    assert stored.json()["files"][0]["sha256"] == expected
