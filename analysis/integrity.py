"""Verify stored files against the sha256 and size recorded when they arrived."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import BinaryIO

from analysis.progress import NullReporter, ProgressReporter

BLOCK_SIZE = 1024 * 1024


@dataclass(frozen=True)
class FileToVerify:
    name: str
    expected_size: int | None
    expected_sha256: str | None
    open: Callable[[], BinaryIO]


@dataclass
class FileCheck:
    name: str
    size: int
    sha256: str
    ok: bool
    problem: str = ""


def hash_stream(stream: BinaryIO, on_block: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Return the sha256 hex digest and byte count of ``stream``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    while block := stream.read(BLOCK_SIZE):
        digest.update(block)
        size += len(block)
        if on_block is not None:
            on_block(len(block))
    return digest.hexdigest(), size


def verify_files(files: Iterable[FileToVerify], reporter: ProgressReporter | None = None) -> dict:
    """Re-read every file, compare its size and sha256 with the recorded ones, and report per file.

    Returns a JSON-ready dict: ``files`` (one entry per file), ``checked``, ``failed`` and
    ``bytes`` (total bytes read). A file that cannot be opened counts as failed with the
    reason; the check goes on with the next file.
    """
    reporter = reporter or NullReporter()
    files = list(files)
    total = sum(item.expected_size or 0 for item in files) or 1
    done = 0
    checks: list[FileCheck] = []

    def advance(count: int) -> None:
        nonlocal done
        done += count
        reporter.report("hashing", min(done / total, 0.999))

    reporter.report("hashing", 0.0, f"Checking {len(files)} file(s), {total} bytes")
    for item in files:
        try:
            with item.open() as stream:
                sha256, size = hash_stream(stream, advance)
        except OSError as error:
            checks.append(FileCheck(item.name, 0, "", False, f"cannot be read: {error}"))
            reporter.log(f"{item.name}: cannot be read ({error})")
            continue
        problem = ""
        if item.expected_size is not None and size != item.expected_size:
            problem = f"size is {size} bytes, expected {item.expected_size}"
        elif item.expected_sha256 and sha256 != item.expected_sha256.lower():
            problem = f"sha256 is {sha256}, expected {item.expected_sha256}"
        checks.append(FileCheck(item.name, size, sha256, not problem, problem))
        reporter.log(f"{item.name}: {problem or 'intact'}")

    failed = sum(not check.ok for check in checks)
    reporter.report("hashing", 1.0, f"{len(checks) - failed} intact, {failed} with problems")
    return {"files": [asdict(check) for check in checks], "checked": len(checks), "failed": failed, "bytes": done}
