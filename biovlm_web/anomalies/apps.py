from django.apps import AppConfig


class AnomaliesConfig(AppConfig):
    name = "biovlm_web.anomalies"
    label = "anomalies"
    verbose_name = "Anomalies"

    def ready(self):
        from django.urls import reverse

        from biovlm_web.anomalies import jobs  # noqa: F401  registers the job kinds
        from biovlm_web.anomalies.models import VideoRun
        from biovlm_web.core.sharing import register_shareable

        register_shareable("video_run", VideoRun, lambda item: reverse("anomaly-run-detail", args=[item.uuid]))
