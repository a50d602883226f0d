"""Create the demo account and project, start the demo analyses, and print how to sign in."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from biovlm_web.core.models import Membership, Project

DEMO_USERNAME = "demo"
DEMO_PROJECT = "Demo lab"


class Command(BaseCommand):
    help = (
        "Create the 'demo' account and the 'Demo lab' project with sample files, fetch the demo data "
        "and submit the demo analyses as jobs (idempotent: a second run submits nothing)."
    )

    def add_arguments(self, parser):
        from biovlm_web.core.demo_data import SCALES

        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Address printed in the sign-in hint.")
        parser.add_argument(
            "--scale", choices=sorted(SCALES), default="full", help="Size of the demo data and analyses (default full)."
        )
        parser.add_argument(
            "--skip-analyses", action="store_true", help="Only create the account, project and sample files."
        )

    def handle(self, *args, url, scale, skip_analyses, **options):
        credentials = settings.VAR_DIR / "demo_credentials"
        user = get_user_model().objects.filter(username=DEMO_USERNAME).first()
        if user is None or not credentials.is_file():
            password = secrets.token_urlsafe(12)
            with transaction.atomic():
                user = user or get_user_model().objects.create_user(username=DEMO_USERNAME)
                user.set_password(password)
                user.save()
            credentials.write_text(password + "\n")
            credentials.chmod(0o600)
        password = credentials.read_text().strip()

        project = Project.objects.filter(owner=user, name=DEMO_PROJECT).first()
        if project is None:
            with transaction.atomic():
                project = Project.objects.create(
                    owner=user, name=DEMO_PROJECT, description="Sample data for trying BioVLM Web."
                )
                Membership.objects.create(project=project, user=user, role=Membership.Role.OWNER)

        from biovlm_web.uploads.samples import ensure_sample_dataset

        dataset, created = ensure_sample_dataset(project, user)
        if created:
            self.stdout.write(f"Added {dataset.files.count()} sample files to dataset {dataset.name!r}.")

        if not skip_analyses:
            from analysis.data import DataFetchError
            from biovlm_web.core.demo import start_demo
            from biovlm_web.core.demo_data import SCALES

            try:
                start_demo(project, user, SCALES[scale], report=self.stdout.write)
            except DataFetchError as error:
                # The platform still starts; only the demo analyses are missing.
                self.stderr.write(
                    f"Fetching the demo data failed, so no demo analysis was started: {error}\n"
                    "Run `manage.py demo_setup` again when pip can reach PyPI."
                )

        self.stdout.write(
            f"Sign in at {url} as {DEMO_USERNAME!r} with password {password!r} (stored in {credentials})."
        )
