"""Job kinds, submission, execution in the worker, cancellation and the stale-job reaper.

A job is a row first: ``submit_job`` creates the Job row and enqueues it on the RQ queue
only after the surrounding transaction commits, with the row's UUID as the RQ job id.
Every status change is an atomic claim: an UPDATE filtered on the expected old status
that must change exactly one row. So two workers never run one job, and a job that the
reaper marked failed is never turned back into a success.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection, transaction
from django.utils import timezone

from analysis.progress import Cancelled
from biovlm_web.core.models import Job
from biovlm_web.core.progress import JobProgressReporter, broadcast_job

logger = logging.getLogger(__name__)

Status = Job.Status

# How long a worker keeps retrying a job's claim or final state while the database is unreachable.
DATABASE_RETRY_SECONDS = 60.0
# Errors of a lost or locked database connection: a restarted server, a killed backend, or a
# SQLite write lock held past the busy timeout.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


class JobError(Exception):
    """A failure the user can act on; its message is shown as the job's error."""


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    function: Callable  # function(job, reporter) -> dict stored as the job's result
    queue: str = "default"
    validate: Callable[[object, dict], dict] | None = None  # (project, params) -> cleaned params
    model_versions: Callable[[dict], dict] = field(default=lambda params: {})
    # Template that renders a succeeded job's result on the job page, with ``job`` in its context.
    result_template: str = "core/job_result.html"


_KINDS: dict[str, JobKind] = {}


def register_job_kind(kind: JobKind) -> JobKind:
    if kind.queue not in settings.RQ_QUEUES:
        raise ValueError(f"Job kind {kind.name!r} names an unknown queue {kind.queue!r}.")
    _KINDS[kind.name] = kind
    return kind


def get_job_kind(name: str) -> JobKind:
    try:
        return _KINDS[name]
    except KeyError:
        known = ", ".join(sorted(_KINDS)) or "none"
        raise JobError(f"Unknown job kind {name!r}; known kinds: {known}.") from None


def job_kinds() -> dict[str, JobKind]:
    return dict(_KINDS)


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the running code, or the package version outside a checkout."""
    try:
        output = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(settings.BASE_DIR),
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return output.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return settings.BIOVLM_VERSION


def _get_queue(name: str):
    import django_rq

    return django_rq.get_queue(name)


def _enqueue(job_id: int) -> None:
    job = Job.objects.get(pk=job_id)
    try:
        _get_queue(job.queue).enqueue(
            execute_job,
            str(job.uuid),
            job_id=str(job.uuid),
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"{job.kind} {job.uuid}",
        )
    except Exception as error:  # Redis down or misconfigured: the row must not wait forever.
        logger.exception("Enqueueing job %s failed", job.uuid)
        _finish(job.uuid, Status.QUEUED, Status.FAILED, error=f"The job queue is unavailable ({error}); retry later.")


def submit_job(
    project, kind: str, params: dict | None = None, user=None, retry_of: Job | None = None, queue: str | None = None
) -> Job:
    """Create a job row and enqueue it once the current transaction commits.

    ``queue`` replaces the kind's queue for this job, for example to run it after the jobs
    already waiting on another queue.
    """
    spec = get_job_kind(kind)
    queue = queue or spec.queue
    if queue not in settings.RQ_QUEUES:
        raise ValueError(f"Job kind {kind!r} cannot be sent to the unknown queue {queue!r}.")
    params = dict(params or {})
    if spec.validate is not None:
        params = spec.validate(project, params)

    job = Job.objects.create(
        project=project,
        kind=spec.name,
        queue=queue,
        params=params,
        created_by=user if user is not None and user.is_authenticated else None,
        code_version=code_version(),
        model_versions=spec.model_versions(params),
        retry_of=retry_of,
        stage="queued",
    )
    transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def retry_job(job: Job, user=None) -> Job:
    if job.status not in (Status.FAILED, Status.CANCELLED):
        raise JobError(f"Only failed or cancelled jobs can be retried; this job is {job.status}.")
    return submit_job(job.project, job.kind, job.params, user=user, retry_of=job)


def cancel_job(job: Job) -> bool:
    """Cancel a queued job at once, or ask a running job to stop; return whether anything changed."""
    now = timezone.now()
    if Job.objects.filter(pk=job.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, cancel_requested=True, finished_at=now, stage="cancelled"
    ):
        _cancel_in_queue(job)
        broadcast_job(Job.objects.get(pk=job.pk))
        return True
    if Job.objects.filter(pk=job.pk, status=Status.RUNNING, cancel_requested=False).update(cancel_requested=True):
        job.refresh_from_db()
        broadcast_job(job)
        return True
    return False


def _cancel_in_queue(job: Job) -> None:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    queue = _get_queue(job.queue)
    try:
        RQJob.fetch(str(job.uuid), connection=queue.connection).cancel()
    except NoSuchJobError:
        pass
    except Exception:
        # The row is already cancelled, and execute_job skips rows that are not queued.
        logger.warning("Removing job %s from queue %s failed", job.uuid, job.queue, exc_info=True)


def drop_broken_connection() -> None:
    """Close this thread's database connection so that the next query opens a new one.

    Django does not reconnect a connection that the server closed, so without this every
    later query of the thread fails as well.
    """
    try:
        connection.close()
    except DATABASE_UNAVAILABLE:
        pass


def with_database_retry(action: Callable, description: str, timeout: float = DATABASE_RETRY_SECONDS):
    """Run ``action`` and return its value, retrying while the database is unreachable.

    Retries with a growing pause of 0.5 to 5 s and raises the last error after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    pause = 0.5
    while True:
        try:
            return action()
        except DATABASE_UNAVAILABLE as error:
            if time.monotonic() + pause > deadline:
                raise
            logger.warning(
                "%s failed because the database is unavailable (%s); retrying in %.1f s", description, error, pause
            )
            drop_broken_connection()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _finish(job_uuid, expected: str, status: str, *, error: str = "", result: dict | None = None) -> bool:
    values = {"status": status, "finished_at": timezone.now(), "error": error[:10_000]}
    if status == Status.SUCCEEDED:
        values.update(progress=1.0, stage="done", result=result or {})
    elif status == Status.CANCELLED:
        values["stage"] = "cancelled"
    changed = (
        with_database_retry(
            lambda: Job.objects.filter(uuid=job_uuid, status=expected).update(**values),
            f"Saving the final state of job {job_uuid}",
        )
        == 1
    )
    if changed:
        broadcast_job(Job.objects.get(uuid=job_uuid))
    return changed


class Heartbeat:
    """A thread that stamps the job row while the job runs and notices cancel requests."""

    def __init__(self, job_pk: int, interval: float) -> None:
        self.job_pk = job_pk
        self.interval = interval
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_pk}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.wait(self.interval):
                try:
                    self._beat()
                except DATABASE_UNAVAILABLE as error:
                    # Keep beating: the database may be back before the job is reaped as stale.
                    failures += 1
                    if failures == 1:
                        logger.warning("Heartbeat of job %s failed, retrying: %s", self.job_pk, error)
                    drop_broken_connection()
                    continue
                if failures:
                    logger.info("Heartbeat of job %s works again after %d failures", self.job_pk, failures)
                    failures = 0
        except Exception:
            logger.exception("Heartbeat of job %s failed", self.job_pk)
        finally:
            close_old_connections()
            connection.close()

    def _beat(self) -> None:
        rows = Job.objects.filter(pk=self.job_pk, status=Status.RUNNING)
        if not rows.update(heartbeat_at=timezone.now()):
            self.cancelled.set()  # reaped or finished elsewhere: stop working on it
        elif rows.filter(cancel_requested=True).exists():
            self.cancelled.set()


def worker_name() -> str:
    try:
        from rq import get_current_job

        current = get_current_job()
        if current is not None and current.worker_name:
            return current.worker_name
    except Exception:
        pass
    return f"{socket.gethostname()}"


def execute_job(job_uuid: str) -> str:
    """Run one job in an RQ worker. This is the function RQ calls."""
    close_old_connections()
    name = worker_name()[:200]

    def claim() -> int:
        now = timezone.now()
        return Job.objects.filter(uuid=job_uuid, status=Status.QUEUED).update(
            status=Status.RUNNING, started_at=now, heartbeat_at=now, worker_name=name, stage="starting"
        )

    claimed = with_database_retry(claim, f"Claiming job {job_uuid}")
    if claimed != 1:
        logger.info("Job %s is no longer queued; skipping it", job_uuid)
        return "skipped"

    job = Job.objects.get(uuid=job_uuid)
    logger.info("Job %s (%s) started", job.uuid, job.kind)
    broadcast_job(job)
    heartbeat = Heartbeat(job.pk, settings.JOB_HEARTBEAT_SECONDS).start()
    reporter = JobProgressReporter(job, cancel_event=heartbeat.cancelled)
    try:
        spec = get_job_kind(job.kind)
        result = spec.function(job, reporter)
        reporter.flush()
    except Cancelled:
        reporter.flush(force_running=False)
        _finish(job.uuid, Status.RUNNING, Status.CANCELLED, error="Cancelled by a user.")
        logger.info("Job %s cancelled", job.uuid)
        return "cancelled"
    except JobError as error:
        reporter.flush(force_running=False)
        _finish(job.uuid, Status.RUNNING, Status.FAILED, error=str(error))
        logger.warning("Job %s failed: %s", job.uuid, error)
        return "failed"
    except Exception as error:
        reporter.flush(force_running=False)
        logger.exception("Job %s raised an unexpected error", job.uuid)
        _finish(job.uuid, Status.RUNNING, Status.FAILED, error=f"Internal error: {type(error).__name__}: {error}")
        return "failed"
    finally:
        heartbeat.stop()

    if not _finish(job.uuid, Status.RUNNING, Status.SUCCEEDED, result=result if isinstance(result, dict) else {}):
        logger.warning("Job %s finished, but its row was no longer running; its result was dropped", job.uuid)
        return "dropped"
    logger.info("Job %s succeeded", job.uuid)
    return "succeeded"


def mark_worker_died(job_uuid: str, reason: str) -> bool:
    """Mark a running job failed because its work-horse process died."""
    return _finish(job_uuid, Status.RUNNING, Status.FAILED, error=f"The worker process died: {reason}. Retry the job.")


def reap_stale_jobs(stale_seconds: float | None = None) -> list[str]:
    """Mark running jobs whose heartbeat stopped as failed; return their UUIDs."""
    stale_seconds = settings.JOB_STALE_SECONDS if stale_seconds is None else stale_seconds
    cutoff = timezone.now() - timedelta(seconds=stale_seconds)
    reaped = []
    for job in Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff):
        age = (timezone.now() - job.heartbeat_at).total_seconds()
        error = (
            f"The worker {job.worker_name or '(unknown)'} stopped responding: no heartbeat for {age:.0f} s "
            f"(limit {stale_seconds:.0f} s). Retry the job."
        )
        changed = Job.objects.filter(pk=job.pk, status=Status.RUNNING, heartbeat_at__lt=cutoff).update(
            status=Status.FAILED, finished_at=timezone.now(), error=error
        )
        if changed:
            logger.warning("Job %s marked failed: %s", job.uuid, error)
            broadcast_job(Job.objects.get(pk=job.pk))
            reaped.append(str(job.uuid))
    return reaped


def requeue_lost_jobs(min_age_seconds: float | None = None) -> list[str]:
    """Enqueue again the queued jobs whose RQ entry is gone, such as after Redis lost its data.

    A queued row whose RQ job already ended also counts as lost: its worker could not claim
    the row, for example because the database was unavailable. Only jobs queued for at least
    ``min_age_seconds`` are checked, so a job whose enqueue is still waiting for its
    transaction to commit is left alone. Returns their UUIDs.
    """
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob
    from rq.job import JobStatus

    ended = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
    min_age_seconds = settings.JOB_STALE_SECONDS if min_age_seconds is None else min_age_seconds
    cutoff = timezone.now() - timedelta(seconds=min_age_seconds)
    requeued = []
    for job in Job.objects.filter(status=Status.QUEUED, created_at__lte=cutoff):
        redis_connection = _get_queue(job.queue).connection
        try:
            rq_job = RQJob.fetch(str(job.uuid), connection=redis_connection)
        except NoSuchJobError:
            reason = "missing from"
        else:
            if rq_job.get_status(refresh=False) not in ended:
                continue
            reason = f"{rq_job.get_status(refresh=False)} without being claimed in"
            rq_job.delete()
        logger.warning("Job %s was queued but %s queue %s; enqueueing it again", job.uuid, reason, job.queue)
        _enqueue(job.pk)
        requeued.append(str(job.uuid))
    return requeued
