from django.urls import path

from biovlm_web.comparisons import views

urlpatterns = [
    path("projects/<uuid:uuid>/comparisons/new/", views.comparison_create, name="comparison-create"),
    path("comparisons/<uuid:uuid>/", views.comparison_detail, name="comparison-detail"),
    path("comparisons/<uuid:uuid>/run/", views.comparison_run, name="comparison-run"),
    path(
        "comparisons/<uuid:uuid>/images/<uuid:image_uuid>/<str:variant>/",
        views.comparison_image,
        name="comparison-image",
    ),
    path("comparisons/<uuid:uuid>/export.<str:export_format>", views.comparison_export, name="comparison-export"),
]
