from django.urls import path

from biovlm_web.uploads import views

urlpatterns = [
    path("projects/<uuid:uuid>/datasets/new/", views.dataset_create, name="dataset-create"),
    path("datasets/<uuid:uuid>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<uuid:uuid>/verify/", views.dataset_verify, name="dataset-verify"),
]
