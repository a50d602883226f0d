"""Run the demo headless and check its results, or check the results of a demo already run.

``--check`` runs the demo in a new temporary var directory, with SQLite and the embedded Redis
even when DATABASE_URL or REDIS_URL is set. It migrates, runs ``demo_setup``, works off every
job with a burst worker, and then runs ``demo --verify`` there. ``--verify`` checks the demo
project of the configured database. Both exit with status 1 unless every check passes.
"""

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

WORKER_CLASS = "biovlm_web.core.worker.JobWorker"
# Variables that point a process at other services or files; the check runs without them.
ISOLATED_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "MEDIA_ROOT",
    "SECRET_KEY_FILE",
    "UPLOAD_TEMP_DIR",
    "STORAGE_BACKEND",
)


def stop_idle_embedded_redis() -> None:
    """Stop the embedded Redis of the configured var directory when no other process uses it.

    Django's start-up in this process started it, and the check never used it. A Redis that a
    running server or worker is connected to is left alone.
    """
    if not settings.REDIS_EMBEDDED:
        return
    import redis

    from biovlm_web import embedded_redis

    path = embedded_redis.socket_path(settings.VAR_DIR)
    try:
        clients = redis.Redis(unix_socket_path=str(path), socket_timeout=2).client_list()
    except (redis.RedisError, OSError):
        return
    # The connection that asked is one of the clients.
    if len(clients) <= 1:
        embedded_redis.shutdown(settings.VAR_DIR, save=True)


class Command(BaseCommand):
    help = "Run the demo headless and check every job's result (--check), or check an existing demo (--verify)."
    # Set for `manage.py demo`, whose process ends after the check; call_command leaves it False.
    from_command_line = False

    def run_from_argv(self, argv):
        self.from_command_line = True
        return super().run_from_argv(argv)

    def add_arguments(self, parser):
        from biovlm_web.core.demo_data import SCALES

        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--check", action="store_true", help="Run the demo in a temporary directory and check it.")
        mode.add_argument("--verify", action="store_true", help="Check the demo project of the configured database.")
        parser.add_argument(
            "--scale",
            choices=sorted(SCALES),
            default="check",
            help="Size of the demo that --check runs (default check).",
        )
        parser.add_argument(
            "--timeout", type=float, default=900, help="Seconds the burst worker may take for all jobs (default 900)."
        )
        parser.add_argument("--keep", action="store_true", help="Keep the temporary directory of --check.")

    def handle(self, *args, check, verify, scale, timeout, keep, **options):
        if verify:
            self._verify()
        else:
            self._check(scale, timeout, keep)

    def _verify(self):
        from biovlm_web.core.demo import verify_demo
        from biovlm_web.core.management.commands.demo_setup import DEMO_PROJECT, DEMO_USERNAME
        from biovlm_web.core.models import Project

        project = Project.objects.filter(name=DEMO_PROJECT, owner__username=DEMO_USERNAME).first()
        if project is None:
            raise CommandError(
                f"No project {DEMO_PROJECT!r} of user {DEMO_USERNAME!r}; run manage.py demo_setup first."
            )
        checks = verify_demo(project)
        for item in checks:
            self.stdout.write(f"{'PASS' if item.passed else 'FAIL'}  {item.name}: {item.detail}")
        failed = [item.name for item in checks if not item.passed]
        if failed:
            raise CommandError(f"{len(failed)} of {len(checks)} demo checks failed: {', '.join(failed)}.")
        self.stdout.write(f"All {len(checks)} demo checks passed.")

    def _check(self, scale, timeout, keep):
        from biovlm_web import embedded_redis

        folder = Path(tempfile.mkdtemp(prefix="biovlm-demo-check-"))
        env = {key: value for key, value in os.environ.items() if key not in ISOLATED_VARIABLES}
        env.update(
            BIOVLM_VAR_DIR=str(folder),
            DJANGO_SETTINGS_MODULE="biovlm_web.settings",
            SECRET_KEY=secrets.token_urlsafe(50),
            PYTHONPATH=str(settings.BASE_DIR),
        )
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        steps = [
            ("migrate", [*manage, "migrate", "--noinput", "-v", "0"], 300),
            ("demo_setup", [*manage, "demo_setup", "--scale", scale], 600),
            (
                "burst worker",
                [*manage, "rqworker", "--burst", "--worker-class", WORKER_CLASS, "gpu", "default"],
                timeout,
            ),
            ("verify", [*manage, "demo", "--verify"], 120),
        ]
        started = time.perf_counter()
        failure = None
        try:
            for name, command, limit in steps:
                self.stdout.write(f"==> {name} ({time.perf_counter() - started:.0f} s)")
                self.stdout.flush()
                failure = self._run_step(name, command, env, limit, settings.BASE_DIR)
                if failure:
                    break
        finally:
            embedded_redis.shutdown(folder)
            if self.from_command_line:
                stop_idle_embedded_redis()
            if keep:
                self.stdout.write(f"Kept {folder}.")
            else:
                subprocess.run(["rm", "-rf", str(folder)], check=False)
        if failure:
            raise CommandError(failure)
        self.stdout.write(f"Demo check passed in {time.perf_counter() - started:.0f} s.")

    def _run_step(self, name, command, env, limit, cwd) -> str | None:
        """Run one step, echoing its output unless it is the worker's; return a failure message or None."""
        quiet = name == "burst worker"
        try:
            result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return f"The {name} step did not finish within {limit:.0f} s."
        if not quiet or result.returncode != 0:
            self.stdout.write(result.stdout.rstrip())
        if result.returncode != 0:
            self.stdout.write(result.stderr.rstrip()[-4000:])
            return f"The {name} step failed with exit status {result.returncode}."
        return None
