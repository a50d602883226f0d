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


def broadcast_job(job) -> None:
    """Send the job's current state to every websocket watching it, logging instead of raising on failure."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(job_group(job.uuid), {"type": "job.update", "job": job.snapshot()})
    except Exception:
        # The row already contains the state, so a browser that reconnects still gets it.
        logger.warning("Sending the progress of job %s to its websocket group failed", job.uuid, exc_info=True)


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
        from biovlm_web.core.models import Job

        self.job.log = list(self._lines)
        # Filtering on cancel_requested makes a cancel take effect at the next write, without
        # waiting for the heartbeat thread.
        changed = Job.objects.filter(pk=self.job.pk, status=Job.Status.RUNNING, cancel_requested=False).update(
            stage=self.job.stage, progress=self.job.progress, log=self.job.log, heartbeat_at=timezone.now()
        )
        self._dirty = False
        self._last_write = time.monotonic()
        self.writes += 1
        if not changed:
            if force_running:
                raise Cancelled()
            return
        self.job.status = Job.Status.RUNNING
        broadcast_job(self.job)
