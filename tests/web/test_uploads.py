"""Datasets, files and resumable chunked uploads through the real API, storage and pages."""

import fcntl
import hashlib
import io
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image
from rest_framework.test import APIClient

from biovlm_web.core.models import Job
from biovlm_web.uploads.models import DataFile, Dataset, UploadSession

CHUNK = 256 * 1024


@pytest.fixture(autouse=True)
def _upload_temp_dir(settings, tmp_path):
    settings.UPLOAD_TEMP_DIR = tmp_path / "partial-uploads"
    settings.FILE_UPLOAD_TEMP_DIR = str(settings.UPLOAD_TEMP_DIR)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mrc_bytes(tmp_path, shape=(40, 64, 64), voxel_size=2.5, seed=0) -> bytes:
    path = tmp_path / f"volume-{seed}.mrc"
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
    return path.read_bytes()


def png_bytes(size=(40, 30), color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def dataset(personas):
    return Dataset.objects.create(project=personas["project"], name="Tilt series", created_by=personas["owner"])


@pytest.fixture
def owner(personas):
    return client_for(personas["owner"])


def start(client, dataset, name, data, **extra):
    body = {"dataset": str(dataset.uuid), "filename": name, "size": len(data), **extra}
    return client.post("/api/uploads/", body, format="json")


def put_chunk(client, upload_uuid, offset, data, checksum=None):
    return client.put(
        f"/api/uploads/{upload_uuid}/chunk/",
        data=data,
        content_type="application/octet-stream",
        headers={"Upload-Offset": str(offset), "Chunk-Sha256": checksum or sha256(data)},
    )


def send_chunks(client, upload_uuid, data, start_offset=0, stop_offset=None, chunk=CHUNK):
    offset = start_offset
    end = len(data) if stop_offset is None else stop_offset
    while offset < end:
        piece = data[offset : min(offset + chunk, end)]
        response = put_chunk(client, upload_uuid, offset, piece)
        assert response.status_code == 200, response.json()
        offset = response.json()["offset"]
    return offset


def partial_file(settings, upload_uuid) -> Path:
    return Path(settings.UPLOAD_TEMP_DIR) / f"{upload_uuid}.part"


def upload_whole(client, dataset, name, data, **extra):
    created = start(client, dataset, name, data, **extra)
    assert created.status_code == 201, created.json()
    upload_uuid = created.json()["uuid"]
    send_chunks(client, upload_uuid, data)
    return upload_uuid, client.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json")


def download(client, file_uuid) -> bytes:
    response = client.get(f"/api/files/{file_uuid}/download/")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


# --- Chunked upload: the happy path and resuming ---------------------------------------------


def test_chunked_upload_stores_volume(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    created = start(owner, dataset, "tomo.mrc", data, sha256=sha256(data))
    assert created.status_code == 201
    body = created.json()
    assert body["offset"] == 0
    assert body["size"] == len(data)
    assert body["filename"] == "tomo.mrc"
    assert body["status"] == "active"
    assert body["chunk_size"] == settings.UPLOAD_CHUNK_SIZE
    assert body["sha256"] == sha256(data)
    assert body["dataset"] == str(dataset.uuid)
    assert "id" not in body

    assert send_chunks(owner, body["uuid"], data) == len(data)
    completed = owner.post(f"/api/uploads/{body['uuid']}/complete/", {}, format="json")
    assert completed.status_code == 201, completed.json()
    stored = completed.json()
    assert stored["original_name"] == "tomo.mrc"
    assert stored["kind"] == "volume"
    assert stored["size"] == len(data)
    assert stored["sha256"] == sha256(data)
    assert stored["metadata"]["shape"] == [40, 64, 64]
    assert stored["metadata"]["voxel_size_angstrom"] == {"x": 2.5, "y": 2.5, "z": 2.5}
    assert stored["download_url"].endswith(f"/api/files/{stored['uuid']}/download/")
    assert "id" not in stored

    data_file = DataFile.objects.get(uuid=stored["uuid"])
    assert data_file.file.name == f"projects/{dataset.project.uuid}/files/{data_file.uuid}.mrc"
    assert download(owner, stored["uuid"]) == data
    assert not partial_file(settings, body["uuid"]).exists()
    session = UploadSession.objects.get(uuid=body["uuid"])
    assert session.status == "complete"
    assert session.data_file == data_file


def test_resume_after_dropped_connection(personas, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    first = client_for(personas["owner"])
    upload_uuid = start(first, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(first, upload_uuid, data, stop_offset=2 * CHUNK)
    del first  # The browser went away after two chunks.

    resumed = client_for(personas["owner"])
    state = resumed.get(f"/api/uploads/{upload_uuid}/")
    assert state.status_code == 200
    assert state.json()["offset"] == 2 * CHUNK
    send_chunks(resumed, upload_uuid, data, start_offset=state.json()["offset"])
    completed = resumed.post(f"/api/uploads/{upload_uuid}/complete/", {"sha256": sha256(data)}, format="json")
    assert completed.status_code == 201
    assert download(resumed, completed.json()["uuid"]) == data


def test_resume_after_uncommitted_append(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)
    # A crash after appending the next chunk but before its offset was saved.
    with partial_file(settings, upload_uuid).open("ab") as partial:
        partial.write(b"\xff" * 1000)
    assert partial_file(settings, upload_uuid).stat().st_size == CHUNK + 1000

    state = owner.get(f"/api/uploads/{upload_uuid}/").json()
    assert state["offset"] == CHUNK
    send_chunks(owner, upload_uuid, data, start_offset=state["offset"])
    assert partial_file(settings, upload_uuid).stat().st_size == len(data)
    completed = owner.post(f"/api/uploads/{upload_uuid}/complete/", {"sha256": sha256(data)}, format="json")
    assert completed.status_code == 201, completed.json()
    assert download(owner, completed.json()["uuid"]) == data


def test_complete_with_uncommitted_tail(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data, sha256=sha256(data)).json()["uuid"]
    send_chunks(owner, upload_uuid, data)
    with partial_file(settings, upload_uuid).open("ab") as partial:
        partial.write(b"junk")
    completed = owner.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json")
    assert completed.status_code == 201, completed.json()
    assert completed.json()["sha256"] == sha256(data)


def test_lost_partial_file_fails_upload(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)
    partial_file(settings, upload_uuid).write_bytes(b"")

    response = put_chunk(owner, upload_uuid, CHUNK, data[CHUNK : 2 * CHUNK])
    assert response.status_code == 409
    assert "cannot resume" in response.json()["detail"]
    assert UploadSession.objects.get(uuid=upload_uuid).status == "failed"


def test_second_complete_returns_same_file(owner, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    upload_uuid, first = upload_whole(owner, dataset, "tomo.mrc", data)
    assert first.status_code == 201
    second = owner.post(f"/api/uploads/{upload_uuid}/complete/", {"sha256": sha256(data)}, format="json")
    assert second.status_code == 200
    assert second.json()["uuid"] == first.json()["uuid"]
    assert DataFile.objects.count() == 1


def test_complete_before_all_chunks_conflicts(owner, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)
    response = owner.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["offset"] == CHUNK
    assert "incomplete" in response.json()["detail"]
    assert UploadSession.objects.get(uuid=upload_uuid).status == "active"


def test_complete_before_first_chunk_keeps_upload(owner, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    response = owner.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["offset"] == 0
    assert "incomplete" in response.json()["detail"]
    assert UploadSession.objects.get(uuid=upload_uuid).status == "active"
    send_chunks(owner, upload_uuid, data)
    assert owner.post(f"/api/uploads/{upload_uuid}/complete/", {"sha256": sha256(data)}, format="json").status_code == 201


# --- Checksums and chunk rules -------------------------------------------------------------------


def test_complete_with_wrong_checksum_fails(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    wrong = sha256(b"something else")
    upload_uuid = start(owner, dataset, "tomo.mrc", data, sha256=wrong).json()["uuid"]
    send_chunks(owner, upload_uuid, data)

    response = owner.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "tomo.mrc" in body["detail"]
    assert wrong in body["detail"]
    assert sha256(data) in body["detail"]
    assert "upload the file again" in body["detail"]
    assert body["expected"] == wrong
    assert body["actual"] == sha256(data)
    assert DataFile.objects.count() == 0
    assert not partial_file(settings, upload_uuid).exists()
    assert owner.get(f"/api/uploads/{upload_uuid}/").json()["status"] == "failed"
    assert put_chunk(owner, upload_uuid, 0, data[:10]).status_code == 409


def test_complete_checksum_given_at_completion(owner, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data)
    response = owner.post(f"/api/uploads/{upload_uuid}/complete/", {"sha256": sha256(data).upper()}, format="json")
    assert response.status_code == 201
    assert response.json()["sha256"] == sha256(data)


def test_conflicting_checksums_rejected(owner, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data, sha256=sha256(data)).json()["uuid"]
    send_chunks(owner, upload_uuid, data)
    response = owner.post(f"/api/uploads/{upload_uuid}/complete/", {"sha256": "0" * 64}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "sha256_conflict"
    assert UploadSession.objects.get(uuid=upload_uuid).status == "active"


def test_out_of_order_chunk_conflicts(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)

    for offset in (0, 2 * CHUNK):
        response = put_chunk(owner, upload_uuid, offset, data[offset : offset + CHUNK])
        assert response.status_code == 409
        body = response.json()
        assert body["offset"] == CHUNK
        assert "out of order" in body["detail"]
        assert f"Resume from offset {CHUNK}" in body["detail"]
    assert partial_file(settings, upload_uuid).stat().st_size == CHUNK


def test_wrong_chunk_checksum_appends_nothing(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)

    response = put_chunk(owner, upload_uuid, CHUNK, data[CHUNK : 2 * CHUNK], checksum=sha256(b"other"))
    assert response.status_code == 400
    assert response.json()["offset"] == CHUNK
    assert "Resend the chunk" in response.json()["detail"]
    assert owner.get(f"/api/uploads/{upload_uuid}/").json()["offset"] == CHUNK
    assert partial_file(settings, upload_uuid).stat().st_size == CHUNK
    assert list(Path(settings.UPLOAD_TEMP_DIR).glob("*.chunk")) == []


@pytest.mark.parametrize(
    ("headers", "phrase"),
    [
        ({"Chunk-Sha256": "0" * 64}, "Upload-Offset header is missing"),
        ({"Upload-Offset": "-5", "Chunk-Sha256": "0" * 64}, "not a non-negative integer"),
        ({"Upload-Offset": "0"}, "Chunk-Sha256 header is missing"),
        ({"Upload-Offset": "0", "Chunk-Sha256": "xyz"}, "64 hexadecimal characters"),
    ],
)
def test_chunk_header_errors(owner, dataset, headers, phrase):
    upload_uuid = start(owner, dataset, "a.mrc", b"x" * 100).json()["uuid"]
    response = owner.put(
        f"/api/uploads/{upload_uuid}/chunk/", data=b"x" * 10, content_type="application/octet-stream", headers=headers
    )
    assert response.status_code == 400
    assert phrase in response.json()["detail"]


def test_chunk_past_declared_size_rejected(owner, dataset):
    upload_uuid = start(owner, dataset, "a.mrc", b"x" * 100).json()["uuid"]
    response = put_chunk(owner, upload_uuid, 0, b"x" * 101)
    assert response.status_code == 400
    assert "past the declared size" in response.json()["detail"]
    assert owner.get(f"/api/uploads/{upload_uuid}/").json()["offset"] == 0


def test_chunk_over_max_chunk_size_rejected(owner, dataset, settings):
    settings.UPLOAD_MAX_CHUNK_SIZE = 1000
    upload_uuid = start(owner, dataset, "a.mrc", b"x" * 5000).json()["uuid"]
    response = put_chunk(owner, upload_uuid, 0, b"x" * 1001)
    assert response.status_code == 413
    assert "over the limit" in response.json()["detail"]


def test_chunk_while_locked_is_busy(owner, dataset, settings):
    upload_uuid = start(owner, dataset, "a.mrc", b"x" * 100).json()["uuid"]
    path = partial_file(settings, upload_uuid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        response = put_chunk(owner, upload_uuid, 0, b"x" * 10)
    assert response.status_code == 409
    assert response.json()["code"] == "busy"
    assert put_chunk(owner, upload_uuid, 0, b"x" * 10).status_code == 200


def test_abort_removes_partial_file(owner, dataset, tmp_path, settings):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "tomo.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)
    assert owner.delete(f"/api/uploads/{upload_uuid}/").status_code == 204
    assert not partial_file(settings, upload_uuid).exists()
    assert owner.get(f"/api/uploads/{upload_uuid}/").json()["status"] == "aborted"
    assert put_chunk(owner, upload_uuid, CHUNK, data[CHUNK : 2 * CHUNK]).status_code == 409
    assert owner.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json").status_code == 409


def test_abort_complete_upload_conflicts(owner, dataset, tmp_path):
    upload_uuid, _ = upload_whole(owner, dataset, "tomo.mrc", mrc_bytes(tmp_path))
    response = owner.delete(f"/api/uploads/{upload_uuid}/")
    assert response.status_code == 409
    assert DataFile.objects.count() == 1


# --- Rejected files ----------------------------------------------------------------------------


def test_empty_file_rejected(owner, dataset):
    response = start(owner, dataset, "empty.mrc", b"")
    assert response.status_code == 400
    assert "empty.mrc" in response.json()["detail"]
    assert "empty" in response.json()["detail"]

    multipart = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(b"", "blank.png")]}, format="multipart"
    )
    assert multipart.status_code == 400
    assert "blank.png" in multipart.json()["detail"]
    assert DataFile.objects.count() == 0


def test_file_over_limit_rejected(owner, dataset, settings):
    size = settings.UPLOAD_MAX_FILE_SIZE + 1
    response = owner.post(
        "/api/uploads/", {"dataset": str(dataset.uuid), "filename": "huge.mrc", "size": size}, format="json"
    )
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "huge.mrc" in detail
    assert str(size) in detail
    assert str(settings.UPLOAD_MAX_FILE_SIZE) in detail
    assert "UPLOAD_MAX_FILE_SIZE" in detail
    assert UploadSession.objects.count() == 0


def test_multipart_over_limit_stops_early(owner, dataset, settings):
    settings.UPLOAD_MAX_FILE_SIZE = 100_000
    big = png_bytes() + b"\x00" * 300_000
    response = owner.post(
        f"/api/datasets/{dataset.uuid}/files/",
        {"file": [_named(png_bytes(), "small.png"), _named(big, "big.png")]},
        format="multipart",
    )
    assert response.status_code == 413
    assert "big.png" in response.json()["detail"]
    assert "100000 bytes" in response.json()["detail"]
    assert DataFile.objects.count() == 0
    assert list(Path(settings.UPLOAD_TEMP_DIR).iterdir()) == []


def test_bad_sha256_format_rejected(owner, dataset):
    response = start(owner, dataset, "a.mrc", b"x" * 10, sha256="abc")
    assert response.status_code == 400
    assert "64 hexadecimal" in response.json()["detail"]


def test_path_and_control_characters_removed(owner, dataset):
    response = start(owner, dataset, "../../x", b"x" * 10)
    assert response.status_code == 201
    assert response.json()["filename"] == "x"

    response = start(owner, dataset, "C:\\data\\a\tb\nc\u202e.png", b"x" * 10)
    assert response.status_code == 201
    assert response.json()["filename"] == "abc.png"

    response = start(owner, dataset, "a\x00b.png", b"x" * 10)
    assert response.status_code == 400
    assert "Null characters" in response.json()["detail"]

    response = start(owner, dataset, "../..", b"x" * 10)
    assert response.status_code == 400
    assert "no characters left" in response.json()["detail"]

    long_name = "a" * 300 + ".tiff"
    response = start(owner, dataset, long_name, b"x" * 10)
    assert len(response.json()["filename"]) == 255
    assert response.json()["filename"].endswith("a.tiff")


def test_script_name_escaped_and_stored_safely(owner, dataset):
    name = "<script>alert(1)<b>.png"
    response = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), name)]}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    stored = response.json()["files"][0]
    assert stored["original_name"] == name
    data_file = DataFile.objects.get(uuid=stored["uuid"])
    assert data_file.file.name == f"projects/{dataset.project.uuid}/files/{data_file.uuid}.png"

    page = owner.get(f"/datasets/{dataset.uuid}/")
    html = page.content.decode()
    assert "&lt;script&gt;alert(1)&lt;b&gt;.png" in html
    assert "<script>alert(1)" not in html

    disposition = owner.get(f"/api/files/{stored['uuid']}/download/")["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert "alert(1)" in disposition
    assert "\n" not in disposition


def test_png_named_mrc_rejected_chunked(owner, dataset, settings):
    data = png_bytes()
    upload_uuid, response = upload_whole(owner, dataset, "scan.mrc", data)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "type_mismatch"
    assert "scan.mrc" in body["detail"]
    assert "PNG" in body["detail"]
    assert ".mrc" in body["detail"]
    assert DataFile.objects.count() == 0
    assert not partial_file(settings, upload_uuid).exists()
    assert UploadSession.objects.get(uuid=upload_uuid).status == "failed"
    assert list(Path(settings.MEDIA_ROOT).rglob("*.*")) == []


def test_png_named_mrc_rejected_multipart(owner, dataset):
    response = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "scan.mrc")]}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["file"] == "scan.mrc"
    assert "PNG" in response.json()["detail"]


def test_failed_upload_keeps_stored_files(owner, dataset, tmp_path, settings):
    first = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "kept.png")]}, format="multipart"
    )
    assert first.status_code == 201
    kept = first.json()["files"][0]

    mixed = owner.post(
        f"/api/datasets/{dataset.uuid}/files/",
        {"file": [_named(png_bytes(color=(1, 2, 3)), "good.png"), _named(b"plain text\n", "bad.png")]},
        format="multipart",
    )
    assert mixed.status_code == 400
    body = mixed.json()
    assert [error["file"] for error in body["errors"]] == ["bad.png"]
    assert "bad.png" in body["detail"]
    assert "Nothing was stored" in body["detail"]

    data = mrc_bytes(tmp_path)
    upload_uuid, failed = upload_whole(owner, dataset, "tomo.mrc", data, sha256="0" * 64)
    assert failed.status_code == 400

    assert list(DataFile.objects.values_list("original_name", flat=True)) == ["kept.png"]
    assert download(owner, kept["uuid"]) == png_bytes()
    stored_files = [path for path in Path(settings.MEDIA_ROOT).rglob("*") if path.is_file()]
    assert len(stored_files) == 1


def test_several_files_in_one_request(owner, dataset):
    response = owner.post(
        f"/api/datasets/{dataset.uuid}/files/",
        {"file": [_named(png_bytes(), "a.png"), _named(b"x,y\n1,2\n", "points.csv")]},
        format="multipart",
    )
    assert response.status_code == 201
    files = {item["original_name"]: item for item in response.json()["files"]}
    assert files["a.png"]["kind"] == "image"
    assert files["a.png"]["metadata"]["width"] == 40
    assert files["points.csv"]["kind"] == "table"
    assert files["points.csv"]["metadata"]["columns"] == ["x", "y"]
    listed = owner.get(f"/api/datasets/{dataset.uuid}/files/").json()
    assert listed["count"] == 2


def test_multipart_without_file_rejected(owner, dataset):
    response = owner.post(f"/api/datasets/{dataset.uuid}/files/", {"other": "x"}, format="multipart")
    assert response.status_code == 400
    assert "'file'" in response.json()["detail"]


def test_multipart_with_csrf_enforced(personas, dataset, settings):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="member", password="member-password-1")
    page = client.get(f"/datasets/{dataset.uuid}/")
    token = page.cookies["csrftoken"].value
    url = f"/api/datasets/{dataset.uuid}/files/"

    refused = client.post(url, {"file": [_named(png_bytes(), "a.png")]}, format="multipart")
    assert refused.status_code == 403
    accepted = client.post(
        url, {"file": [_named(png_bytes(), "a.png")]}, format="multipart", headers={"X-CSRFToken": token}
    )
    assert accepted.status_code == 201

    settings.UPLOAD_MAX_FILE_SIZE = 10
    too_big = client.post(
        url, {"file": [_named(png_bytes(), "b.png")]}, format="multipart", headers={"X-CSRFToken": token}
    )
    assert too_big.status_code == 413


def _named(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


# --- Datasets and files --------------------------------------------------------------------------


def test_dataset_api_create_and_filter(personas, owner):
    project = personas["project"]
    created = owner.post("/api/datasets/", {"project": str(project.uuid), "name": "Micrographs"}, format="json")
    assert created.status_code == 201
    assert created.json()["project"] == str(project.uuid)
    assert created.json()["file_count"] == 0

    listed = owner.get(f"/api/datasets/?project={project.uuid}").json()
    assert [item["name"] for item in listed["results"]] == ["Micrographs"]
    assert owner.get(f"/api/datasets/?project={personas['other_project'].uuid}").json()["results"] == []
    assert owner.get("/api/datasets/?project=nope").status_code == 400

    other = owner.post("/api/datasets/", {"project": str(personas["other_project"].uuid), "name": "x"}, format="json")
    assert other.status_code == 404


def test_delete_file_removes_stored_bytes(owner, dataset):
    stored = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "a.png")]}, format="multipart"
    ).json()["files"][0]
    name = DataFile.objects.get(uuid=stored["uuid"]).file.name
    assert default_storage.exists(name)
    assert owner.delete(f"/api/files/{stored['uuid']}/").status_code == 204
    assert not default_storage.exists(name)
    assert owner.get(f"/api/files/{stored['uuid']}/").status_code == 404


def test_file_detail_fields(owner, dataset):
    stored = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "a.png")]}, format="multipart"
    ).json()["files"][0]
    detail = owner.get(f"/api/files/{stored['uuid']}/").json()
    expected_keys = {"uuid", "dataset", "original_name", "size", "sha256", "kind", "content_type", "metadata"}
    assert expected_keys <= set(detail)
    assert {"created_at", "download_url"} <= set(detail)
    assert detail["content_type"] == "image/png"
    assert detail["sha256"] == sha256(png_bytes())
    assert owner.get(f"/api/files/?dataset={dataset.uuid}").json()["count"] == 1


# --- Pages -------------------------------------------------------------------------------------------


def test_dataset_page_lists_files(owner, dataset, tmp_path):
    _, response = upload_whole(owner, dataset, "tomo.mrc", mrc_bytes(tmp_path, voxel_size=1.0))
    assert response.status_code == 201
    page = owner.get(f"/datasets/{dataset.uuid}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Tilt series" in html
    assert "tomo.mrc" in html
    assert "64 × 64 × 40 voxels" in html
    assert "voxel size unknown" in html
    assert "placeholder" in html
    assert response.json()["sha256"][:12] in html
    assert f'data-component="uploader" data-dataset-uuid="{dataset.uuid}"' in html
    assert f"/api/files/{response.json()['uuid']}/download/" in html


def test_dataset_page_lists_unfinished_uploads(owner, dataset, tmp_path):
    data = mrc_bytes(tmp_path)
    upload_uuid = start(owner, dataset, "half.mrc", data).json()["uuid"]
    send_chunks(owner, upload_uuid, data, stop_offset=CHUNK)
    html = owner.get(f"/datasets/{dataset.uuid}/").content.decode()
    assert "Unfinished uploads" in html
    assert "half.mrc" in html


@pytest.mark.parametrize(
    ("kind", "metadata", "summary"),
    [
        ("image", {"width": 640, "height": 480, "mode": "L", "frames": 3}, "640 × 480, L, 3 frames"),
        ("image", {"width": 64, "height": 32, "dtype": "uint16", "frames": 1}, "64 × 32, uint16"),
        (
            "video",
            {"width": 1920, "height": 1080, "frame_rate": 29.97, "frame_count": 300, "duration_seconds": 10.01,
             "codec": "h264", "rotation_degrees": 90},
            "1920 × 1080, 29.97 fps, 300 frames, 10.0 s, h264, rotated 90°",
        ),
        (
            "volume",
            {"shape": [100, 200, 300], "mode": 2, "voxel_size_angstrom": {"x": 4.0, "y": 4.0, "z": 4.0}},
            "300 × 200 × 100 voxels (x × y × z), mode 2, 4 Å voxels",
        ),
        ("table", {"rows": 12, "column_count": 3}, "12 rows, 3 columns"),
        ("table", {"block_count": 2, "blocks": [{"loop": False}, {"loop": True, "rows": 5}]}, "2 data blocks, 5 loop rows"),
        ("archive", {"entries": 7}, "7 entries"),
        ("other", {"shape": [3, 4], "dtype": "float32"}, "array 3 × 4 of float32"),
        ("other", {}, ""),
    ],
)  # fmt: skip
def test_metadata_summary(kind, metadata, summary):
    from biovlm_web.uploads.views import describe_metadata

    assert describe_metadata(DataFile(kind=kind, metadata=metadata)) == summary


def test_dataset_create_page(personas, owner):
    project = personas["project"]
    response = owner.post(f"/projects/{project.uuid}/datasets/new/", {"name": "Session 4"})
    dataset = Dataset.objects.get(name="Session 4")
    assert response.status_code == 302
    assert response["Location"] == f"/datasets/{dataset.uuid}/"
    assert dataset.project == project
    assert dataset.created_by == personas["owner"]

    invalid = owner.post(f"/projects/{project.uuid}/datasets/new/", {"name": ""})
    assert invalid.status_code == 302
    assert invalid["Location"] == f"/projects/{project.uuid}/"


def test_verify_button_submits_job(personas, dataset):
    member = client_for(personas["member"])
    response = member.post(f"/datasets/{dataset.uuid}/verify/")
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/jobs/{job.uuid}/"
    assert job.kind == "verify_dataset"
    assert job.params == {"dataset": str(dataset.uuid)}
    assert job.project == dataset.project
    assert job.created_by == personas["member"]


# --- Permissions --------------------------------------------------------------------------------------

PERSONAS = ["owner", "member", "stranger", "anonymous"]


@pytest.fixture
def world(personas, dataset, tmp_path):
    owner_client = client_for(personas["owner"])
    stored = owner_client.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "a.png")]}, format="multipart"
    ).json()["files"][0]
    data = png_bytes(color=(5, 5, 5))
    upload_uuid = start(owner_client, dataset, "b.png", data).json()["uuid"]
    return {
        "dataset": dataset,
        "project": personas["project"],
        "file": stored["uuid"],
        "upload": upload_uuid,
        "upload_data": data,
        "personas": personas,
    }


def persona_client(world, persona):
    if persona == "anonymous":
        return APIClient()
    return client_for(world["personas"][persona])


def expect(owner, member=None, stranger=404, anonymous=(401, 403)):
    return {"owner": owner, "member": owner if member is None else member, "stranger": stranger, "anonymous": anonymous}


def call_endpoint(client, world, name):
    dataset, file_uuid, upload_uuid, data = world["dataset"], world["file"], world["upload"], world["upload_data"]
    calls = {
        "dataset list": lambda: client.get("/api/datasets/"),
        "dataset create": lambda: client.post(
            "/api/datasets/", {"project": str(world["project"].uuid), "name": "new"}, format="json"
        ),
        "dataset detail": lambda: client.get(f"/api/datasets/{dataset.uuid}/"),
        "dataset files": lambda: client.get(f"/api/datasets/{dataset.uuid}/files/"),
        "dataset upload": lambda: client.post(
            f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "c.png")]}, format="multipart"
        ),
        "file list": lambda: client.get("/api/files/"),
        "file detail": lambda: client.get(f"/api/files/{file_uuid}/"),
        "file download": lambda: client.get(f"/api/files/{file_uuid}/download/"),
        "file delete": lambda: client.delete(f"/api/files/{file_uuid}/"),
        "upload list": lambda: client.get("/api/uploads/"),
        "upload create": lambda: start(client, dataset, "d.png", data),
        "upload detail": lambda: client.get(f"/api/uploads/{upload_uuid}/"),
        "upload chunk": lambda: put_chunk(client, upload_uuid, 0, data),
        "upload complete": lambda: client.post(f"/api/uploads/{upload_uuid}/complete/", {}, format="json"),
        "upload abort": lambda: client.delete(f"/api/uploads/{upload_uuid}/"),
    }
    return calls[name]()


API_MATRIX = {
    "dataset list": expect(200, stranger=200),
    "dataset create": expect(201),
    "dataset detail": expect(200),
    "dataset files": expect(200),
    "dataset upload": expect(201),
    "file list": expect(200, stranger=200),
    "file detail": expect(200),
    "file download": expect(200),
    "file delete": expect(204),
    "upload list": expect(200, stranger=200),
    "upload create": expect(201),
    "upload detail": expect(200),
    "upload chunk": expect(200),
    "upload complete": expect(409),
    "upload abort": expect(204),
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("endpoint", list(API_MATRIX))
def test_api_permissions(world, persona, endpoint):
    response = call_endpoint(persona_client(world, persona), world, endpoint)
    expected = API_MATRIX[endpoint][persona]
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert response.status_code in allowed, getattr(response, "content", b"")[:300]


def test_lists_hide_other_projects(world):
    stranger = persona_client(world, "stranger")
    for path in ("/api/datasets/", "/api/files/", "/api/uploads/"):
        assert stranger.get(path).json()["results"] == []
    member = persona_client(world, "member")
    assert [item["uuid"] for item in member.get("/api/uploads/").json()["results"]] == [world["upload"]]
    assert member.get("/api/files/").json()["count"] == 1


PAGE_MATRIX = {
    ("post", "/projects/{project}/datasets/new/"): {"owner": 302, "member": 302, "stranger": 404, "anonymous": 302},
    ("get", "/datasets/{dataset}/"): {"owner": 200, "member": 200, "stranger": 404, "anonymous": 302},
    ("post", "/datasets/{dataset}/verify/"): {"owner": 302, "member": 302, "stranger": 404, "anonymous": 302},
}


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("method", "path"), list(PAGE_MATRIX))
def test_page_permissions(world, persona, method, path):
    client = persona_client(world, persona)
    url = path.format(project=world["project"].uuid, dataset=world["dataset"].uuid)
    response = getattr(client, method)(url, {"name": "x"} if method == "post" else None)
    assert response.status_code == PAGE_MATRIX[(method, path)][persona]
    if persona == "anonymous":
        assert response["Location"].startswith("/accounts/login/")


# --- Cleanup of abandoned uploads --------------------------------------------------------------------


def test_cleanup_removes_abandoned_and_orphaned(owner, dataset, settings, tmp_path):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    data = mrc_bytes(tmp_path)
    stale = start(owner, dataset, "stale.mrc", data).json()["uuid"]
    fresh = start(owner, dataset, "fresh.mrc", data).json()["uuid"]
    send_chunks(owner, stale, data, stop_offset=CHUNK)
    send_chunks(owner, fresh, data, stop_offset=CHUNK)
    long_ago = timezone.now() - timedelta(hours=settings.UPLOAD_ABANDON_HOURS + 1)
    UploadSession.objects.filter(uuid=stale).update(updated_at=long_ago)

    temp = Path(settings.UPLOAD_TEMP_DIR)
    orphan = temp / "0f0f0f0f-0000-4000-8000-000000000000.part"
    orphan.write_bytes(b"left over")
    old_side_file = temp / f"{fresh}.abc.chunk"
    old_side_file.write_bytes(b"x")
    os.utime(old_side_file, (long_ago.timestamp(), long_ago.timestamp()))
    new_side_file = temp / f"{fresh}.def.chunk"
    new_side_file.write_bytes(b"x")

    output = io.StringIO()
    call_command("cleanup_uploads", stdout=output)
    printed = output.getvalue()

    assert not partial_file(settings, stale).exists()
    assert partial_file(settings, fresh).exists()
    assert not orphan.exists()
    assert not old_side_file.exists()
    assert new_side_file.exists()
    assert UploadSession.objects.get(uuid=stale).status == "aborted"
    assert UploadSession.objects.get(uuid=fresh).status == "active"
    assert "stale.mrc" in printed
    assert orphan.name in printed
    assert old_side_file.name in printed
    assert "fresh.mrc" not in printed


def test_cleanup_dry_run_changes_nothing(owner, dataset, settings, tmp_path):
    from django.core.management import call_command

    orphan = Path(settings.UPLOAD_TEMP_DIR) / "0f0f0f0f-0000-4000-8000-000000000001.part"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left over")
    output = io.StringIO()
    call_command("cleanup_uploads", "--dry-run", stdout=output)
    assert orphan.exists()
    assert orphan.name in output.getvalue()


def test_copying_storage_backend(owner, dataset, tmp_path, settings):
    # InMemoryStorage, like S3, copies the bytes instead of moving a local file into place.
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    data = mrc_bytes(tmp_path)
    upload_uuid, completed = upload_whole(owner, dataset, "tomo.mrc", data, sha256=sha256(data))
    assert completed.status_code == 201, completed.json()
    assert not partial_file(settings, upload_uuid).exists()
    assert list(Path(settings.MEDIA_ROOT).rglob("*.mrc")) == []
    assert download(owner, completed.json()["uuid"]) == data

    multipart = owner.post(
        f"/api/datasets/{dataset.uuid}/files/", {"file": [_named(png_bytes(), "a.png")]}, format="multipart"
    )
    assert multipart.status_code == 201
    assert download(owner, multipart.json()["files"][0]["uuid"]) == png_bytes()
