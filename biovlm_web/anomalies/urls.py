from django.urls import path

from biovlm_web.anomalies import views

urlpatterns = [
    path("projects/<uuid:uuid>/anomaly-scenes/new/", views.scene_create, name="anomaly-scene-create"),
    path("anomaly-scenes/<uuid:uuid>/", views.scene_detail, name="anomaly-scene-detail"),
    path("anomaly-scenes/<uuid:uuid>/videos/", views.scene_videos, name="anomaly-scene-videos"),
    path("anomaly-scenes/<uuid:uuid>/fit/", views.scene_fit, name="anomaly-scene-fit"),
    path("anomaly-scenes/<uuid:uuid>/runs/", views.scene_runs, name="anomaly-scene-runs"),
    path("anomaly-scenes/<uuid:uuid>/upload/", views.scene_upload, name="anomaly-scene-upload"),
    path("anomaly-scenes/<uuid:uuid>/frame.png", views.scene_frame, name="anomaly-scene-frame"),
    path("anomaly-runs/<uuid:uuid>/", views.run_detail, name="anomaly-run-detail"),
    path("anomaly-runs/<uuid:uuid>/video.webm", views.run_video, name="anomaly-run-video"),
    path("anomaly-runs/<uuid:uuid>/masks.json", views.run_masks, name="anomaly-run-masks"),
    path("anomaly-runs/<uuid:uuid>/export.<str:export_format>", views.run_export, name="anomaly-run-export"),
]
