"""The bad-input corpus, and helpers that send its files through the upload API and the command line."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

REPO_ROOT = Path(__file__).resolve().parents[2]
CHUNK_BYTES = 64 * 1024
# Every command-line run must finish within this many seconds; a hang fails the test.
CLI_TIMEOUT_S = 120


def load_corpus_module():
    """Import scripts/make_bad_corpus.py, which is a script and not part of a package."""
    spec = importlib.util.spec_from_file_location("make_bad_corpus", REPO_ROOT / "scripts" / "make_bad_corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_bad_corpus", module)
    spec.loader.exec_module(module)
    return module


corpus_module = load_corpus_module()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Write the corpus once per session into a temporary folder; return the paths by case name."""
    return corpus_module.write_corpus(tmp_path_factory.mktemp("bad-corpus"))


@pytest.fixture(autouse=True)
def _upload_temp_dir(settings, tmp_path):
    settings.UPLOAD_TEMP_DIR = tmp_path / "partial-uploads"
    settings.FILE_UPLOAD_TEMP_DIR = str(settings.UPLOAD_TEMP_DIR)


def run_cli(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m analysis ARGS`` with a timeout, so a hang fails instead of blocking the suite."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "analysis", *map(str, args)],
        cwd=cwd or REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def owner_client(personas) -> APIClient:
    client = APIClient()
    client.force_login(personas["owner"])
    return client


@pytest.fixture
def dataset(personas):
    from biovlm_web.uploads.models import Dataset

    return Dataset.objects.create(project=personas["project"], name="Bad inputs", created_by=personas["owner"])


def upload_file(client: APIClient, dataset, path: Path, name: str | None = None):
    """Send a file through the chunked upload API; return the response of the step that ended it.

    That is the creation response when it was rejected there (an empty file), else the
    completion response.
    """
    data = path.read_bytes()
    body = {"dataset": str(dataset.uuid), "filename": name or path.name, "size": len(data), "sha256": sha256(data)}
    created = client.post("/api/uploads/", body, format="json")
    if created.status_code != 201:
        return created
    upload_uuid = created.json()["uuid"]
    for offset in range(0, len(data), CHUNK_BYTES):
        piece = data[offset : offset + CHUNK_BYTES]
        response = client.put(
            f"/api/uploads/{upload_uuid}/chunk/",
            data=piece,
            content_type="application/octet-stream",
            headers={"Upload-Offset": str(offset), "Chunk-Sha256": sha256(piece)},
        )
        assert response.status_code == 200, response.json()
    return client.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json")


def stored_files(settings) -> set[Path]:
    """Every file under MEDIA_ROOT."""
    return {path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()}


class StoredState:
    """What the database and storage held before a bad file was sent, to check that nothing was added."""

    def __init__(self, settings):
        from biovlm_web.uploads.models import DataFile

        self.settings = settings
        self.file_rows = set(DataFile.objects.values_list("uuid", flat=True))
        self.files = {path: sha256(path.read_bytes()) for path in stored_files(settings)}

    def assert_unchanged(self):
        from biovlm_web.uploads.models import DataFile

        assert set(DataFile.objects.values_list("uuid", flat=True)) == self.file_rows
        assert stored_files(self.settings) == set(self.files)
        for path, digest in self.files.items():
            assert sha256(path.read_bytes()) == digest, f"{path} changed"
        partials = list(Path(self.settings.UPLOAD_TEMP_DIR).glob("*.part"))
        assert partials == [], f"partial uploads left behind: {partials}"


def assert_rejected_upload(response, filename: str, *phrases: str) -> None:
    """Check a 4xx response whose message names the file and each phrase of the problem."""
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
    detail = response.json()["detail"]
    assert filename in detail
    for phrase in phrases:
        assert phrase in detail, detail


def upload_good_volume(client, dataset, corpus) -> dict:
    """Store a valid volume first, so tests can check that later rejections leave it alone."""
    response = upload_file(client, dataset, corpus["little_endian_reference"], "stored_before.mrc")
    assert response.status_code == 201, response.json()
    return response.json()
