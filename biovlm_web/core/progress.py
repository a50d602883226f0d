"""The worker's progress reporter: throttle, store on the job row, then push to the browser."""

from __future__ import annotations

import logging
import threading
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from analysis.progress import Cancelled, clamp_fraction

logger = logging.getLogger(__name__)


def job_group(job_uuid) -> str:
    return f"job-{job_uuid}"


class _FailureCount:
    """Failures in a row of one repeated operation, so that an outage logs one traceback and not one per call."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def failed(self) -> int:
        with self._lock:
            self.count += 1
            return self.count

    def succeeded(self) -> int:
        """Reset the count and return how many failures preceded this success."""
        with self._lock:
            count, self.count = self.count, 0
            return count


_broadcast_failures = _FailureCount()
_progress_write_failures = _FailureCount()


def broadcast_job(job) -> None:
    """Send the job's current state to every websocket watching it, logging instead of raising on failure."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job.uuid), {"type": "job.update", "job": job.snapshot()})
    except Exception as error:
        # The row already contains the state, so a browser that reconnects still gets it.
        failures = _broadcast_failures.failed()
        if failures == 1:
            logger.warning("Sending the progress of job %s to its websocket group failed", job.uuid, exc_info=True)
        else:
            logger.warning("Sending the progress of job %s failed again (%d in a row): %s", job.uuid, failures, error)
        return
    failures = _broadcast_failures.succeeded()
    if failures:
        logger.info("Sending job progress works again after %d failures", failures)


class JobProgressReporter:
    """A ``ProgressReporter`` bound to one running Job row.

    Updates closer together than ``min_interval`` seconds are merged, except a new stage
    or a finished fraction, which are written at once. Each write stores the row first
    and then broadcasts, so a browser that connects late loses nothing.
    """

    def __init__(self, job, cancel_event: threading.Event | None = None, min_interval: float | None = None) -> None:
        self.job = job
        self.cancel_event = cancel_event or threading.Event()
        self.min_interval = settings.JOB_PROGRESS_MIN_INTERVAL if min_interval is None else min_interval
        self.max_lines = settings.JOB_LOG_MAX_LINES
        self._lines = list(job.log or [])
        self._dirty = False
        self._last_write = 0.0
        self.writes = 0

    def _check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()

    def report(self, stage: str, fraction: float, message: str | None = None) -> None:
        self._check_cancel()
        fraction = clamp_fraction(fraction)
        new_stage = stage != self.job.stage
        if message:
            self._append(message)
        self.job.stage = stage[:200]
        self.job.progress = fraction
        self._dirty = True
        if new_stage or fraction >= 1.0 or time.monotonic() - self._last_write >= self.min_interval:
            self.flush()

    def log(self, message: str) -> None:
        self._check_cancel()
        self._append(message)
        self._dirty = True
        if time.monotonic() - self._last_write >= self.min_interval:
            self.flush()

    def _append(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self._lines.append(f"{stamp} {line[:1000]}")
        del self._lines[: -self.max_lines]

    def flush(self, force_running: bool = True) -> None:
        """Write pending progress to the row and broadcast it.

        Raises ``Cancelled`` when the row is no longer running (the reaper or a user ended
        it) or a cancel was requested, unless ``force_running`` is false, as when the job is
        already ending.
        """
        if not self._dirty:
            return
        from biovlm_web.core.jobs import DATABASE_UNAVAILABLE, drop_broken_connection
        from biovlm_web.core.models import Job

        self.job.log = list(self._lines)
        # Filtering on cancel_requested makes a cancel take effect at the next write, without
        # waiting for the heartbeat thread.
        try:
            changed = Job.objects.filter(pk=self.job.pk, status=Job.Status.RUNNING, cancel_requested=False).update(
                stage=self.job.stage, progress=self.job.progress, log=self.job.log, heartbeat_at=timezone.now()
            )
        except DATABASE_UNAVAILABLE as error:
            # Progress is not worth failing the job for, so it stays pending and the next write sends it.
            failures = _progress_write_failures.failed()
            if failures == 1:
                logger.warning("Saving the progress of job %s failed; the job continues: %s", self.job.uuid, error)
            drop_broken_connection()
            self._last_write = time.monotonic()
            return
        failures = _progress_write_failures.succeeded()
        if failures:
            logger.info("Saving the progress of job %s works again after %d failures", self.job.uuid, failures)
        self._dirty = False
        self._last_write = time.monotonic()
        self.writes += 1
        if not changed:
            if force_running:
                raise Cancelled()
            return
        self.job.status = Job.Status.RUNNING
        broadcast_job(self.job)
