from django.urls import path

from biovlm_web.core import views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<uuid:uuid>/", views.project_detail, name="project-detail"),
    path("projects/<uuid:uuid>/members/", views.project_members, name="project-members"),
    path("jobs/<uuid:uuid>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:uuid>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:uuid>/retry/", views.job_retry, name="job-retry"),
    path("share/new/<str:target_type>/<uuid:uuid>/", views.share_create, name="share-create"),
    path("share/<uuid:uuid>/revoke/", views.share_revoke, name="share-revoke"),
    path("s/<str:token>/", views.share_open, name="share-open"),
    path("models/", views.models_page, name="models"),
    path("models/check/", views.models_check, name="models-check"),
]
