from django.apps import AppConfig


class UploadsConfig(AppConfig):
    name = "biovlm_web.uploads"
    label = "uploads"
    verbose_name = "Uploads"

    def ready(self):
        from biovlm_web.uploads import jobs  # noqa: F401  registers the job kinds
