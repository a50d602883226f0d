"""Check a received file and store it as a DataFile.

Both upload paths end here: a completed chunked upload (its partial file) and a file of a
multipart request (Django's temporary upload file). The content is identified and its
metadata read before anything is stored. The file then goes into the default storage
under a server-chosen name through the FileField, so S3 or MinIO works by configuration.
With FileSystemStorage the local file is renamed into place instead of copied.
"""

from __future__ import annotations

import errno
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from analysis.filetypes import FileCheckError, Inspection, file_extension, inspect_file
from biovlm_web.uploads.models import DataFile, Dataset, UploadSession
from biovlm_web.uploads.storage import (
    UploadError,
    check_active,
    format_size,
    locked_partial,
    mark_failed,
    partial_path,
    reconcile_partial,
    remove_partial,
    sha256_of_file,
)

Status = UploadSession.Status

logger = logging.getLogger(__name__)

MAX_FILENAME_LENGTH = 255
_SAFE_EXTENSION = re.compile(r"\.[a-z0-9]{1,15}")
# Unicode categories removed from display names: control, format (bidirectional overrides,
# zero-width characters) and line or paragraph separators.
_REMOVED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


def clean_filename(raw: str) -> str:
    """Reduce a client-supplied file name to display text.

    Path components (``/`` and ``\\``) and control characters are removed, so
    ``../../x`` becomes ``x``. Markup such as ``<script>`` is kept as text: templates
    and JSON escape it on output. Raises ValueError when nothing usable is left.
    """
    name = unicodedata.normalize("NFC", str(raw))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(char for char in name if unicodedata.category(char) not in _REMOVED_CATEGORIES)
    name = name.strip()
    if not name.strip("."):
        raise ValueError(f"The file name {raw!r} has no characters left after removing folders. Rename the file.")
    if len(name) > MAX_FILENAME_LENGTH:
        extension = file_extension(name)
        extension = extension if len(extension) < 20 else ""
        name = name[: MAX_FILENAME_LENGTH - len(extension)] + extension
    return name


def storage_extension(filename: str) -> str:
    """Return the extension used in the stored name, or '' when it has unusual characters."""
    extension = file_extension(filename)
    return extension if _SAFE_EXTENSION.fullmatch(extension) else ""


def inspect_received(path: str | Path, filename: str) -> Inspection:
    """Identify a received file and read its metadata. Raise UploadError when the file is rejected."""
    try:
        return inspect_file(path, filename, max_image_pixels=settings.UPLOAD_MAX_IMAGE_PIXELS)
    except FileCheckError as error:
        raise UploadError(str(error), code=error.code, file=filename) from error


class LocalFile(File):
    """A file on local disk that FileSystemStorage moves into place instead of copying."""

    def __init__(self, path: Path):
        super().__init__(open(path, "rb"), name=str(path))
        self._path = path

    def temporary_file_path(self) -> str:
        return str(self._path)


@dataclass
class Received:
    """A checked file that is ready to be stored."""

    filename: str
    content: File
    size: int
    sha256: str
    inspection: Inspection


def save_to_storage(dataset: Dataset, received: Received, user) -> DataFile:
    """Store the file's bytes under a server-chosen name; return the unsaved DataFile row."""
    inspection = received.inspection
    data_file = DataFile(
        dataset=dataset,
        original_name=received.filename,
        extension=storage_extension(received.filename),
        size=received.size,
        sha256=received.sha256,
        kind=inspection.file_type.kind,
        content_type=inspection.content_type,
        metadata=inspection.metadata,
        created_by=user if user is not None and user.is_authenticated else None,
    )
    # The name passed here is ignored: storage_name() builds it from the row's UUID and extension.
    name = data_file.file.field.generate_filename(data_file, "upload")
    storage = data_file.file.storage
    try:
        data_file.file.save("upload", received.content, save=False)
        stored_size = storage.size(data_file.file.name)
    except Exception:
        # A copy cut short, such as by a full disk, leaves part of the file under its name.
        if storage.exists(name):
            storage.delete(name)
        raise
    if stored_size != received.size:
        # Django 5.2's file_move_safe ignores short writes, so a disk that fills up can truncate a copy.
        storage.delete(data_file.file.name)
        raise OSError(errno.ENOSPC, f"{stored_size} of {received.size} bytes of {received.filename} were stored")
    return data_file


def store_files(
    dataset: Dataset, files: list[Received], user, in_transaction: Callable[[list[DataFile]], None] | None = None
) -> list[DataFile]:
    """Store checked files and create their rows, all or none.

    Storage writes happen outside the transaction, so a slow object store does not hold a
    database lock. ``in_transaction`` runs after the rows are saved, in the same
    transaction, and may raise to roll it back. When any write or the transaction fails,
    every file stored by this call is deleted again and nothing already in the dataset is
    touched.
    """
    stored: list[DataFile] = []
    try:
        for received in files:
            stored.append(save_to_storage(dataset, received, user))
        with transaction.atomic():
            for data_file in stored:
                data_file.save()
            if in_transaction is not None:
                in_transaction(stored)
    except Exception:
        for data_file in stored:
            data_file.file.storage.delete(data_file.file.name)
        logger.exception(
            "Storing %d file(s) in dataset %s failed; the stored copies were deleted", len(files), dataset.uuid
        )
        raise
    for data_file in stored:
        logger.info(
            "Stored %s as %s (%s, %d bytes, sha256 %s)",
            data_file.uuid,
            data_file.file.name,
            data_file.kind,
            data_file.size,
            data_file.sha256,
        )
    return stored


def receive_uploaded_file(uploaded_file) -> Received:
    """Check the name and size of a file Django has written to disk, sniff its type and hash it.

    Raises UploadError for a name that cannot be stored or an empty file.
    """
    try:
        name = clean_filename(uploaded_file.name)
    except ValueError as error:
        raise UploadError(str(error), code="invalid_filename", file=uploaded_file.name) from error
    if uploaded_file.size == 0:
        raise reject_empty(name)
    inspection = inspect_received(uploaded_file.temporary_file_path(), name)
    return Received(name, uploaded_file, uploaded_file.size, sha256_of_file(uploaded_file), inspection)


def reject_empty(filename: str) -> UploadError:
    return UploadError(
        f"{filename} is empty (0 bytes). Empty files are not stored, so check that you picked the right file.",
        code="empty_file",
        file=filename,
    )


def too_large(filename: str, size: int | None = None) -> UploadError:
    """Return the error for a file over UPLOAD_MAX_FILE_SIZE; ``size`` is None when reading stopped early."""
    limit = settings.UPLOAD_MAX_FILE_SIZE
    actual = f"is {format_size(size)}, over" if size is not None else "is larger than"
    return UploadError(
        f"{filename} {actual} the upload limit of {format_size(limit)}. Split the data into "
        "smaller files or ask an administrator to raise UPLOAD_MAX_FILE_SIZE.",
        status=413,
        code="file_too_large",
        file=filename,
        limit=limit,
    )


SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def normalise_sha256(value: str | None, field: str = "sha256") -> str:
    """Return a lowercase hex SHA-256, or '' for an empty value. Raise UploadError when it is malformed."""
    text = (value or "").strip().lower()
    if text and not SHA256_PATTERN.fullmatch(text):
        raise UploadError(
            f"{field} must be a SHA-256 digest of 64 hexadecimal characters, not {value[:80]!r}.", code="invalid_sha256"
        )
    return text


def expected_sha256(upload: UploadSession, sha256_sent: str | None) -> str:
    """Return the checksum to verify at completion: the one sent now or at creation, or ''."""
    sha256_sent = normalise_sha256(sha256_sent)
    if sha256_sent and upload.sha256 and sha256_sent != upload.sha256:
        raise UploadError(
            f"The sha256 sent to complete {upload.filename} ({sha256_sent}) differs from the one sent when the upload "
            f"started ({upload.sha256}). Send the checksum of the file you are uploading.",
            code="sha256_conflict",
        )
    return sha256_sent or upload.sha256


def _incomplete(upload: UploadSession) -> UploadError:
    return UploadError(
        f"The upload of {upload.filename} is incomplete: {upload.offset} of {upload.size} bytes received. "
        f"Send the remaining chunks from offset {upload.offset}, then complete it.",
        status=409,
        code="incomplete",
        offset=upload.offset,
    )


def complete_upload(upload: UploadSession, sha256: str | None, user) -> tuple[DataFile, bool]:
    """Verify a fully received chunked upload and store it as a DataFile.

    Returns the file and whether this call created it: completing a complete upload
    returns its file again. A checksum mismatch or a rejected file type marks the
    upload failed and deletes its partial file, and nothing is stored.
    """
    if upload.status == Status.COMPLETE and upload.data_file_id:
        return upload.data_file, False
    check_active(upload)
    expected = expected_sha256(upload, sha256)
    if upload.offset != upload.size:
        raise _incomplete(upload)
    try:
        with locked_partial(upload, create=False) as partial:
            upload.refresh_from_db()
            if upload.status == Status.COMPLETE and upload.data_file_id:
                return upload.data_file, False
            check_active(upload)
            if upload.offset != upload.size:
                raise _incomplete(upload)
            reconcile_partial(upload, partial)
            data_file = _verify_and_store(upload, partial, expected, user)
    except FileNotFoundError:
        upload.refresh_from_db()
        if upload.status == Status.COMPLETE and upload.data_file_id:
            return upload.data_file, False
        check_active(upload)
        reason = "the partial file is missing on the server"
        mark_failed(upload, reason)
        raise UploadError(
            f"The upload of {upload.filename} cannot complete: {reason}. Start a new upload of the file.",
            status=409,
            code="upload_failed",
            status_name=Status.FAILED,
        ) from None
    remove_partial(upload)  # Left behind by storages that copy instead of moving, such as S3.
    return data_file, True


def _verify_and_store(upload: UploadSession, partial, expected: str, user) -> DataFile:
    path = partial_path(upload)
    actual = sha256_of_file(partial)
    if expected and actual != expected:
        mark_failed(upload, f"sha256 mismatch: expected {expected}, received {actual}")
        raise UploadError(
            f"{upload.filename}: the checksum of the received bytes does not match. Expected sha256 {expected}, "
            f"received {actual}. The partial upload was deleted; upload the file again.",
            code="checksum_mismatch",
            file=upload.filename,
            expected=expected,
            actual=actual,
        )
    try:
        inspection = inspect_received(path, upload.filename)
    except UploadError as error:
        mark_failed(upload, error.detail)
        raise

    def mark_complete(stored: list[DataFile]) -> None:
        changed = UploadSession.objects.filter(pk=upload.pk, status=Status.ACTIVE).update(
            status=Status.COMPLETE, data_file=stored[0], sha256=actual, updated_at=timezone.now()
        )
        if not changed:
            raise UploadError(
                f"The upload of {upload.filename} was aborted while it completed.", status=409, code="upload_aborted"
            )

    content = LocalFile(path)
    try:
        (data_file,) = store_files(
            upload.dataset, [Received(upload.filename, content, upload.size, actual, inspection)], user, mark_complete
        )
    finally:
        content.close()
    upload.status, upload.data_file, upload.sha256 = Status.COMPLETE, data_file, actual
    logger.info("Upload %s completed as file %s", upload.uuid, data_file.uuid)
    return data_file


def abort_upload(upload: UploadSession) -> None:
    """Abort an unfinished upload and delete its partial file. Raise UploadError 409 for a complete upload."""
    if upload.status == Status.COMPLETE:
        raise UploadError(
            f"The upload of {upload.filename} is complete, so there is nothing to abort. "
            "Delete the file through /api/files/ instead.",
            status=409,
            code="upload_complete",
        )
    try:
        with locked_partial(upload, create=False):
            UploadSession.objects.filter(pk=upload.pk, status=Status.ACTIVE).update(
                status=Status.ABORTED, updated_at=timezone.now()
            )
            remove_partial(upload)
    except FileNotFoundError:
        UploadSession.objects.filter(pk=upload.pk, status=Status.ACTIVE).update(
            status=Status.ABORTED, updated_at=timezone.now()
        )
    logger.info("Upload %s (%s) aborted", upload.uuid, upload.filename)
