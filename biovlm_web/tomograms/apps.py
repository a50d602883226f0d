from django.apps import AppConfig


class TomogramsConfig(AppConfig):
    name = "biovlm_web.tomograms"
    label = "tomograms"
    verbose_name = "Tomograms"

    def ready(self):
        from django.urls import reverse

        from biovlm_web.core.sharing import register_shareable
        from biovlm_web.tomograms import jobs  # noqa: F401  registers the job kinds
        from biovlm_web.tomograms.models import TomogramRun

        register_shareable("tomogram-run", TomogramRun, lambda run: reverse("tomogram-run-detail", args=[run.uuid]))
