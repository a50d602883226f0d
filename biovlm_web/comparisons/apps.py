from django.apps import AppConfig


class ComparisonsConfig(AppConfig):
    name = "biovlm_web.comparisons"
    label = "comparisons"
    verbose_name = "Comparisons"

    def ready(self):
        from django.urls import reverse

        from biovlm_web.comparisons import jobs  # noqa: F401  registers the job kind
        from biovlm_web.comparisons.models import Comparison
        from biovlm_web.core.sharing import register_shareable

        register_shareable("comparison", Comparison, lambda item: reverse("comparison-detail", args=[item.uuid]))
