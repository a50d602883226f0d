from django.core.management.base import BaseCommand

from biovlm_web.core.jobs import reap_stale_jobs


class Command(BaseCommand):
    help = "Mark running jobs whose worker stopped sending heartbeats as failed (workers also do this)."

    def handle(self, *args, **options):
        reaped = reap_stale_jobs()
        for job_uuid in reaped:
            self.stdout.write(f"Marked job {job_uuid} failed: its worker stopped responding.")
        self.stdout.write(f"{len(reaped)} stale job(s) found.")
