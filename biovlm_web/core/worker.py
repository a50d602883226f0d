"""The RQ worker class for BioVLM jobs.

Start it with ``python manage.py rqworker --worker-class biovlm_web.core.worker.JobWorker
gpu default``. Beyond a plain RQ worker it marks a job failed at once when its work-horse
process dies. It also runs the stale-job reaper in a background thread: any live worker marks
failed a job whose whole worker died, and enqueues again a queued job whose queue entry was lost.
"""

import logging
import threading

from django.conf import settings
from django.db import connections
from rq import Worker

logger = logging.getLogger(__name__)


class ReaperThread(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(name="job-reaper", daemon=True)
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        from biovlm_web.core.jobs import drop_broken_connection, reap_stale_jobs, requeue_lost_jobs

        failures = 0
        while not self._stop_event.wait(self.interval):
            try:
                reap_stale_jobs()
                requeue_lost_jobs()
            except Exception as error:
                # When Redis or the database is unavailable, log one traceback per outage and retry.
                failures += 1
                if failures == 1:
                    logger.exception("Reaping stale jobs failed; retrying every %.1f s", self.interval)
                else:
                    logger.warning("Reaping stale jobs failed again (%d in a row): %s", failures, error)
                drop_broken_connection()
                continue
            if failures:
                logger.info("Reaping stale jobs works again after %d failures", failures)
                failures = 0
        connections.close_all()

    def stop(self) -> None:
        self._stop_event.set()


class JobWorker(Worker):
    def work(self, *args, **kwargs):
        reaper = ReaperThread(interval=max(1.0, settings.JOB_STALE_SECONDS / 3))
        reaper.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            reaper.stop()

    def subscribe(self):
        # rq 3.0 polls its command channel with sleep_time=60, and redis-py 8's
        # PubSubWorkerThread.stop() waits for that poll to end, so each worker shutdown took
        # up to a minute. A 1 s poll keeps shutdown prompt.
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        super().handle_job_failure(
            job, queue, started_job_registry=started_job_registry, exc_string=exc_string, execution=execution
        )
        if self.is_horse:
            return
        # In the parent process this means the work-horse died without reporting.
        from biovlm_web.core.jobs import mark_worker_died

        reason = (exc_string or "work-horse terminated unexpectedly").strip().splitlines()[0][:500]
        try:
            if mark_worker_died(job.id, reason):
                logger.warning("Job %s marked failed: %s", job.id, reason)
        except Exception:
            logger.exception("Marking job %s failed after its work-horse died failed", job.id)
        finally:
            # The next work-horse is forked from this process and must not share its sockets.
            connections.close_all()
