from django.core.management.base import BaseCommand

from biovlm_web.core.jobs import reap_stale_jobs, requeue_lost_jobs


class Command(BaseCommand):
    help = "Mark jobs whose worker stopped as failed and enqueue lost queued jobs again (workers also do this)."

    def handle(self, *args, **options):
        reaped = reap_stale_jobs()
        for job_uuid in reaped:
            self.stdout.write(f"Marked job {job_uuid} failed: its worker stopped responding.")
        requeued = requeue_lost_jobs()
        for job_uuid in requeued:
            self.stdout.write(f"Enqueued job {job_uuid} again: its queue entry was missing.")
        self.stdout.write(f"{len(reaped)} stale job(s) marked failed, {len(requeued)} lost job(s) enqueued again.")
