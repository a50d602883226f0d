"""Delete abandoned chunked uploads and leftover temporary files in UPLOAD_TEMP_DIR."""

from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from biovlm_web.uploads.models import UploadSession
from biovlm_web.uploads.storage import (
    CHUNK_SUFFIX,
    PARTIAL_SUFFIX,
    UploadError,
    locked_partial,
    remove_partial,
    temp_dir,
)

Status = UploadSession.Status
# Django's TemporaryFileUploadHandler names its files tmp<random>.upload<extension>.
MULTIPART_TEMP_PATTERN = "tmp*.upload*"


class Command(BaseCommand):
    help = (
        "Delete chunked uploads that received no chunk for UPLOAD_ABANDON_HOURS, partial files that no active "
        "upload owns, and request temporary files older than that."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--hours",
            type=float,
            default=None,
            help="Hours without a chunk after which an upload is abandoned (default: UPLOAD_ABANDON_HOURS).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Print what would be removed, remove nothing.")

    def handle(self, *args, hours=None, dry_run=False, **options):
        hours = settings.UPLOAD_ABANDON_HOURS if hours is None else hours
        cutoff = timezone.now() - timedelta(hours=hours)
        self.dry_run = dry_run
        directory = temp_dir()
        # Listed before the active uploads are read: an upload's row always exists before its
        # partial file, so every file listed here whose upload is active shows up in that query.
        partial_files = sorted(directory.glob(f"*{PARTIAL_SUFFIX}"))

        abandoned = self.remove_abandoned(cutoff, hours)
        orphans = self.remove_orphans(partial_files)
        temporary = self.remove_old_temporary_files(directory, cutoff)
        verb = "Would remove" if dry_run else "Removed"
        self.stdout.write(
            f"{verb} {abandoned} abandoned upload(s), {orphans} orphaned partial file(s) and "
            f"{temporary} old temporary file(s) from {directory}."
        )

    def remove_abandoned(self, cutoff: datetime, hours: float) -> int:
        count = 0
        for upload in UploadSession.objects.filter(status=Status.ACTIVE, updated_at__lt=cutoff):
            description = (
                f"abandoned upload {upload.uuid} ({upload.filename}, {upload.offset} of {upload.size} bytes, "
                f"last change {upload.updated_at:%Y-%m-%d %H:%M} UTC)"
            )
            if self.dry_run:
                self.stdout.write(f"Would remove {description}")
                count += 1
                continue
            try:
                removed = self.abort(upload, cutoff, hours)
            except UploadError:
                self.stdout.write(f"Skipped {description}: a request is writing it right now")
                continue
            if removed:
                self.stdout.write(f"Removed {description}")
                count += 1
        return count

    def abort(self, upload: UploadSession, cutoff: datetime, hours: float) -> bool:
        """Mark the upload aborted unless a chunk arrived since it was listed; delete its partial file."""

        def claim() -> int:
            # Filtered on the cutoff again, so an upload that received a chunk meanwhile is kept.
            return UploadSession.objects.filter(pk=upload.pk, status=Status.ACTIVE, updated_at__lt=cutoff).update(
                status=Status.ABORTED,
                error=f"Abandoned: no chunk arrived for {hours:g} hours.",
                updated_at=timezone.now(),
            )

        try:
            with locked_partial(upload, create=False):
                if not claim():
                    return False
                remove_partial(upload)
        except FileNotFoundError:
            return bool(claim())
        return True

    def remove_orphans(self, partial_files: list[Path]) -> int:
        active = {
            str(uuid) for uuid in UploadSession.objects.filter(status=Status.ACTIVE).values_list("uuid", flat=True)
        }
        count = 0
        for path in partial_files:
            if path.name.removesuffix(PARTIAL_SUFFIX) in active:
                continue
            count += self.remove_file(path, "orphaned partial file")
        return count

    def remove_old_temporary_files(self, directory: Path, cutoff: datetime) -> int:
        count = 0
        candidates = sorted([*directory.glob(f"*{CHUNK_SUFFIX}"), *directory.glob(MULTIPART_TEMP_PATTERN)])
        for path in candidates:
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if modified < cutoff.timestamp():
                count += self.remove_file(path, "old temporary file")
        return count

    def remove_file(self, path: Path, description: str) -> int:
        if self.dry_run:
            self.stdout.write(f"Would remove {description} {path.name}")
            return 1
        try:
            path.unlink()
        except FileNotFoundError:
            return 0  # Completed or removed by a request in the meantime.
        self.stdout.write(f"Removed {description} {path.name}")
        return 1
