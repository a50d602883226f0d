from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


class CoreConfig(AppConfig):
    name = "biovlm_web.core"
    label = "core"
    verbose_name = "Core"

    def ready(self):
        from django.urls import reverse

        from biovlm_web.core.models import Job
        from biovlm_web.core.sharing import register_shareable

        register_shareable("job", Job, lambda job: reverse("job-detail", args=[job.uuid]))

        from biovlm_web.core import job_kinds  # noqa: F401  registers the platform job kinds

        for directory in (settings.VAR_DIR, settings.UPLOAD_TEMP_DIR, Path(settings.STATIC_ROOT)):
            directory.mkdir(parents=True, exist_ok=True)
        if settings.STORAGE_BACKEND == "filesystem":
            settings.MEDIA_ROOT.mkdir(parents=True, exist_ok=True)

        if settings.REDIS_EMBEDDED:
            from biovlm_web import embedded_redis

            embedded_redis.ensure_running(settings.VAR_DIR)
