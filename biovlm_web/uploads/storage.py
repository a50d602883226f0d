"""Partial files of resumable chunked uploads.

The bytes of a chunked upload live in ``UPLOAD_TEMP_DIR/<uuid>.part`` until it completes.
The UploadSession row's ``offset`` counts the committed bytes. A chunk is first streamed
to a side file and its SHA-256 checked. Then it is appended to the partial file and
fsynced, and only then is the offset advanced by an UPDATE filtered on the old offset.
A crash between the append and the UPDATE leaves the partial file longer than the offset,
so the next request truncates it back first: a resumed upload never keeps uncommitted bytes.

An exclusive ``flock`` on the partial file serialises chunk, complete and abort requests
for one upload across server processes of one machine.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.utils import timezone

from biovlm_web.uploads.models import UploadSession

logger = logging.getLogger(__name__)

BLOCK_SIZE = 1024 * 1024
PARTIAL_SUFFIX = ".part"
CHUNK_SUFFIX = ".chunk"

Status = UploadSession.Status

# errno values of a write that failed for lack of space: a full disk or an exhausted quota.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class UploadError(Exception):
    """A request the client can fix; the view returns ``status`` with ``detail`` and ``code``.

    ``extra`` entries are added to the response body, for example the committed ``offset``.
    """

    def __init__(self, detail: str, status: int = 400, code: str = "invalid", **extra):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.extra = extra

    def body(self) -> dict:
        return {"detail": self.detail, "code": self.code, **self.extra}


def format_size(size: int) -> str:
    """Format a byte count for messages, such as ``64.0 MiB (67108864 bytes)``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "bytes":
                return f"{size} bytes"
            return f"{value:.1f} {unit} ({size} bytes)"
        value /= 1024
    raise AssertionError("unreachable")


def is_no_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS


def insufficient_storage(action: str, directory: Path, **extra) -> UploadError:
    """Return the 507 error for ``action``, such as "storing tomo.mrc", that found the disk of ``directory`` full."""
    try:
        free = f" ({format_size(shutil.disk_usage(directory).free)} free)"
    except OSError:  # Object storage has no local directory to measure.
        free = ""
    return UploadError(
        f"The server's disk is full, so {action} failed{free}. Nothing was stored by this request. "
        "Ask an administrator to free disk space, then retry.",
        status=507,
        code="insufficient_storage",
        **extra,
    )


def temp_dir() -> Path:
    directory = Path(settings.UPLOAD_TEMP_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def partial_path(upload: UploadSession) -> Path:
    return temp_dir() / f"{upload.uuid}{PARTIAL_SUFFIX}"


def sha256_of_file(handle: BinaryIO) -> str:
    """Return the hex SHA-256 of an open file from its start, read in blocks."""
    digest = hashlib.sha256()
    handle.seek(0)
    for block in iter(lambda: handle.read(BLOCK_SIZE), b""):
        digest.update(block)
    return digest.hexdigest()


@contextmanager
def locked_partial(upload: UploadSession, create: bool = True) -> Iterator[BinaryIO]:
    """Open the upload's partial file under an exclusive lock.

    With ``create`` a missing file is created; without it FileNotFoundError is raised.
    Raises UploadError 409 at once, without waiting, when another request holds the lock.
    """
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    descriptor = os.open(partial_path(upload), flags, 0o600)
    # Unbuffered, so a failed write leaves no buffered bytes that closing the file would write later.
    handle = os.fdopen(descriptor, "r+b", buffering=0)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadError(
                f"Another request is writing or completing the upload of {upload.filename} right now. "
                "Retry in a moment.",
                status=409,
                code="busy",
                offset=upload.offset,
            ) from None
        yield handle
    finally:
        handle.close()  # Closing the descriptor releases the lock.


def remove_partial(upload: UploadSession) -> bool:
    """Delete the upload's partial file and return whether there was one."""
    try:
        partial_path(upload).unlink()
    except FileNotFoundError:
        return False
    return True


def check_active(upload: UploadSession) -> None:
    """Raise UploadError 409 unless the upload still accepts chunks."""
    if upload.status == Status.ACTIVE:
        return
    if upload.status == Status.FAILED:
        detail = f"The upload of {upload.filename} failed ({upload.error}). Start a new upload of the file."
    elif upload.status == Status.ABORTED:
        detail = f"The upload of {upload.filename} was aborted. Start a new upload of the file."
    else:
        detail = f"The upload of {upload.filename} is already complete."
    raise UploadError(detail, status=409, code=f"upload_{upload.status}", status_name=upload.status)


def out_of_order(upload: UploadSession, offset: int) -> UploadError:
    return UploadError(
        f"Chunk out of order: it starts at byte {offset}, but {upload.offset} bytes of {upload.filename} are "
        f"committed. Resume from offset {upload.offset}.",
        status=409,
        code="offset_mismatch",
        offset=upload.offset,
    )


def mark_failed(upload: UploadSession, reason: str) -> None:
    """Mark an upload failed with ``reason`` and delete its partial file."""
    UploadSession.objects.filter(pk=upload.pk).update(status=Status.FAILED, error=reason, updated_at=timezone.now())
    upload.status, upload.error = Status.FAILED, reason
    remove_partial(upload)
    logger.warning("Upload %s (%s) failed: %s", upload.uuid, upload.filename, reason)


def reconcile_partial(upload: UploadSession, handle: BinaryIO) -> None:
    """Make the locked partial file exactly ``upload.offset`` bytes long.

    A longer file contains bytes appended before a crash but never committed, and is cut
    back. A shorter one lost committed bytes, so the upload is marked failed.
    """
    actual = os.fstat(handle.fileno()).st_size
    if actual > upload.offset:
        logger.info(
            "Upload %s: cutting %d uncommitted bytes from the partial file", upload.uuid, actual - upload.offset
        )
        handle.truncate(upload.offset)
    elif actual < upload.offset:
        reason = (
            f"the partial file on the server has {actual} bytes but {upload.offset} were committed, "
            "so the stored bytes are lost"
        )
        mark_failed(upload, reason)
        raise UploadError(
            f"The upload of {upload.filename} cannot resume: {reason}. Start a new upload of the file.",
            status=409,
            code="upload_failed",
            status_name=Status.FAILED,
        )


def spool_chunk(read: Callable[[int], bytes], length: int, upload: UploadSession) -> tuple[BinaryIO, str]:
    """Copy ``length`` bytes from ``read`` to a side file in UPLOAD_TEMP_DIR, hashing as it goes.

    Returns the open side file, positioned at its start, and the chunk's hex SHA-256.
    Memory use is one block whatever the chunk size. Raises UploadError when the body
    ends before ``length`` bytes.
    """
    side_file = tempfile.NamedTemporaryFile(dir=temp_dir(), prefix=f"{upload.uuid}.", suffix=CHUNK_SUFFIX)
    digest = hashlib.sha256()
    received = 0
    try:
        while received < length:
            block = read(min(BLOCK_SIZE, length - received))
            if not block:
                break
            digest.update(block)
            side_file.write(block)
            received += len(block)
        if received != length:
            raise UploadError(
                f"The chunk body ended after {received} of the {length} bytes that Content-Length announced. "
                f"Resend the chunk from offset {upload.offset}.",
                code="short_body",
                offset=upload.offset,
            )
        side_file.flush()
        side_file.seek(0)
    except BaseException:
        side_file.close()
        raise
    return side_file, digest.hexdigest()


def append_all(descriptor: int, offset: int, source: BinaryIO) -> None:
    """Write everything ``source`` contains at ``offset`` of ``descriptor``, then fsync.

    Short writes are continued. Unlike ``shutil.copyfileobj`` on an unbuffered file, this
    never drops the rest of a block that the disk accepted only in part.
    """
    os.lseek(descriptor, offset, os.SEEK_SET)
    while block := source.read(BLOCK_SIZE):
        view = memoryview(block)
        while view:
            view = view[os.write(descriptor, view) :]
    os.fsync(descriptor)


def receive_chunk(
    upload: UploadSession, read: Callable[[int], bytes], offset: int, length: int, chunk_sha256: str
) -> UploadSession:
    """Append one checked chunk to an upload and commit the new offset.

    ``read`` is the request body's read function and ``length`` its Content-Length.
    Returns the upload with its committed offset. Raises UploadError for a chunk that is
    out of order, too large, past the declared size or whose SHA-256 does not match. In
    each of these cases the committed offset and the partial file stay unchanged.
    """
    check_active(upload)
    if offset != upload.offset:
        raise out_of_order(upload, offset)
    if length <= 0:
        raise UploadError(
            "The chunk is empty. Send the bytes of the file in the request body.",
            code="empty_chunk",
            offset=upload.offset,
        )
    if length > settings.UPLOAD_MAX_CHUNK_SIZE:
        raise UploadError(
            f"The chunk is {format_size(length)}, over the limit of {format_size(settings.UPLOAD_MAX_CHUNK_SIZE)} per "
            f"chunk. Send chunks of at most {upload.chunk_size} bytes.",
            status=413,
            code="chunk_too_large",
            offset=upload.offset,
        )
    if offset + length > upload.size:
        raise UploadError(
            f"The chunk would end at byte {offset + length}, past the declared size of {upload.filename} "
            f"({upload.size} bytes). Send at most {upload.size - offset} bytes from offset {offset}.",
            code="past_end",
            offset=upload.offset,
        )

    try:
        side_file, actual_sha256 = spool_chunk(read, length, upload)
    except OSError as error:
        if not is_no_space(error):
            raise
        logger.warning("Upload %s: receiving a chunk at offset %d failed: %s", upload.uuid, offset, error)
        action = f"receiving a chunk of {upload.filename}"
        raise insufficient_storage(action, temp_dir(), file=upload.filename, offset=upload.offset) from error
    with side_file:
        if actual_sha256 != chunk_sha256:
            raise UploadError(
                f"Checksum mismatch for the chunk at offset {offset} of {upload.filename}: Chunk-Sha256 is "
                f"{chunk_sha256}, but the received bytes hash to {actual_sha256}. Nothing was stored. Resend the chunk.",
                code="chunk_checksum_mismatch",
                offset=upload.offset,
            )
        with locked_partial(upload) as partial:
            upload.refresh_from_db(fields=["offset", "status", "error"])
            check_active(upload)
            if offset != upload.offset:
                raise out_of_order(upload, offset)
            reconcile_partial(upload, partial)

            try:
                append_all(partial.fileno(), upload.offset, side_file)
            except OSError as error:
                if not is_no_space(error):
                    raise
                # Give back the space of the bytes that did fit, which were never committed.
                partial.truncate(upload.offset)
                logger.warning("Upload %s: appending the chunk at offset %d failed: %s", upload.uuid, offset, error)
                action = f"appending a chunk to {upload.filename}"
                raise insufficient_storage(action, temp_dir(), file=upload.filename, offset=upload.offset) from error

            new_offset = upload.offset + length
            committed = UploadSession.objects.filter(pk=upload.pk, offset=upload.offset, status=Status.ACTIVE).update(
                offset=new_offset, updated_at=timezone.now()
            )
            if not committed:
                # The row changed although this request holds the lock, which happens only when
                # a process that does not share this lock (another machine) aborted the upload.
                partial.truncate(upload.offset)
                upload.refresh_from_db(fields=["offset", "status", "error"])
                check_active(upload)
                raise out_of_order(upload, offset)
    upload.offset = new_offset
    return upload
