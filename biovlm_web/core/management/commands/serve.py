"""Run the whole platform on one machine: Redis (embedded unless REDIS_URL is set), RQ
workers and the ASGI server, stopping them all together on Ctrl-C."""

import logging
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger(__name__)

WORKER_CLASS = "biovlm_web.core.worker.JobWorker"


class Command(BaseCommand):
    help = "Start RQ workers and the Uvicorn ASGI server; stop all of them on Ctrl-C or SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address the web server binds to (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument("--workers", type=int, default=1, help="Number of RQ worker processes (default 1).")
        parser.add_argument(
            "--queues", default="gpu,default", help="Comma-separated queues each worker serves, in priority order."
        )

    def handle(self, *args, host, port, workers, queues, **options):
        if workers < 0:
            raise CommandError("--workers must be 0 or more.")
        queue_names = [name.strip() for name in queues.split(",") if name.strip()]
        unknown = [name for name in queue_names if name not in settings.RQ_QUEUES]
        if unknown:
            raise CommandError(f"Unknown queue(s): {', '.join(unknown)}; known: {', '.join(settings.RQ_QUEUES)}.")

        python = sys.executable
        children = []
        for _ in range(workers):
            children.append(
                subprocess.Popen([python, "manage.py", "rqworker", "--worker-class", WORKER_CLASS, *queue_names])
            )
        # Uvicorn rather than Daphne: Twisted, under Daphne, parses a multipart body in memory
        # (about 13 times the body size, measured by bench/upload.py), while Uvicorn streams it.
        server = [python, "-m", "uvicorn", "biovlm_web.asgi:application", "--host", host, "--port", str(port)]
        children.append(subprocess.Popen([*server, "--ws", "websockets-sansio", "--lifespan", "off"]))
        redis_note = "embedded Redis" if settings.REDIS_EMBEDDED else "Redis at REDIS_URL"
        self.stdout.write(
            f"BioVLM Web on http://{host}:{port}/ with {workers} worker(s) on {', '.join(queue_names)} and {redis_note}. "
            "Press Ctrl-C to stop."
        )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for child in children:
                    if child.poll() is not None:
                        raise CommandError(f"Process {' '.join(child.args[1:4])} exited with code {child.returncode}.")
                time.sleep(0.5)
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
            if settings.REDIS_EMBEDDED:
                from biovlm_web import embedded_redis

                embedded_redis.shutdown(settings.VAR_DIR, save=True)
            self.stdout.write("Stopped.")
