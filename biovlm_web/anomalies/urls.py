from django.urls import path

from biovlm_web.anomalies import views

urlpatterns = [
    path("anomaly-scenes/<uuid:uuid>/", views.scene_detail, name="anomaly-scene-detail"),
    path("anomaly-runs/<uuid:uuid>/", views.run_detail, name="anomaly-run-detail"),
]
