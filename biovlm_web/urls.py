from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from biovlm_web.anomalies.api import SceneViewSet, SegmentViewSet, VerdictViewSet, VideoRunViewSet
from biovlm_web.comparisons.api import ComparisonViewSet, HypothesisViewSet
from biovlm_web.core.api.models_views import ModelsCheckView, ModelsView
from biovlm_web.core.api.views import JobViewSet, ProjectViewSet, ShareLinkViewSet
from biovlm_web.tomograms.api import TomogramRunViewSet, TomogramViewSet
from biovlm_web.uploads.api import DataFileViewSet, DatasetViewSet, UploadSessionViewSet

UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"


class UUIDRouter(DefaultRouter):
    """A router whose ``uuid`` lookups match only UUIDs, so any other text is 404 and never reaches the database.

    With DRF's default ``[^/.]+``, a path such as /api/jobs/null/ made the UUID field raise a
    ValidationError inside the view, which became a 500.
    """

    # No ".json" suffix routes: custom actions do not take a ``format`` argument, so those
    # routes raised TypeError (500). Clients choose JSON with Accept or ``?format=json``.
    include_format_suffixes = False

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        if getattr(viewset, "lookup_field", None) == "uuid" and not hasattr(viewset, "lookup_value_regex"):
            return f"(?P<{lookup_prefix}uuid>{UUID_PATTERN})"
        return super().get_lookup_regex(viewset, lookup_prefix)


# API route names start with "api-", so "api-job-detail" never shadows the "job-detail" page.
router = UUIDRouter()
router.register("projects", ProjectViewSet, basename="api-project")
router.register("jobs", JobViewSet, basename="api-job")
router.register("share-links", ShareLinkViewSet, basename="api-share-link")
router.register("datasets", DatasetViewSet, basename="api-dataset")
router.register("files", DataFileViewSet, basename="api-file")
router.register("uploads", UploadSessionViewSet, basename="api-upload")
router.register("tomograms", TomogramViewSet, basename="api-tomogram")
router.register("tomogram-runs", TomogramRunViewSet, basename="api-tomogram-run")
router.register("comparisons", ComparisonViewSet, basename="api-comparison")
router.register("hypotheses", HypothesisViewSet, basename="api-hypothesis")
router.register("scenes", SceneViewSet, basename="api-scene")
router.register("video-runs", VideoRunViewSet, basename="api-video-run")
router.register("segments", SegmentViewSet, basename="api-segment")
router.register("verdicts", VerdictViewSet, basename="api-verdict")

urlpatterns = [
    # Browsers ask for /favicon.ico before they read the page's icon link.
    path("favicon.ico", RedirectView.as_view(url=static("icons/favicon.svg"), permanent=True)),
    path("", include("biovlm_web.core.urls")),
    path("", include("biovlm_web.uploads.urls")),
    path("", include("biovlm_web.tomograms.urls")),
    path("", include("biovlm_web.comparisons.urls")),
    path("", include("biovlm_web.anomalies.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/models/", ModelsView.as_view(), name="api-models"),
    path("api/models/check/", ModelsCheckView.as_view(), name="api-models-check"),
    path("api/", include(router.urls)),
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file, so the page needs no inline script under the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]
