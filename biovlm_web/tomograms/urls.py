from django.urls import path

from biovlm_web.tomograms import views

urlpatterns = [
    path("projects/<uuid:uuid>/tomograms/", views.tomogram_list, name="tomogram-list"),
    path("projects/<uuid:uuid>/tomograms/upload/", views.tomogram_upload, name="tomogram-upload"),
    path("projects/<uuid:uuid>/tomograms/register/", views.tomogram_register, name="tomogram-register"),
    path("tomograms/<uuid:uuid>/", views.tomogram_detail, name="tomogram-detail"),
    path("tomograms/<uuid:uuid>/voxel-size/", views.tomogram_voxel_size, name="tomogram-voxel-size"),
    path("tomograms/<uuid:uuid>/references/", views.tomogram_references, name="tomogram-references"),
    path("tomograms/<uuid:uuid>/runs/new/", views.run_create, name="tomogram-run-create"),
    path("tomogram-runs/<uuid:uuid>/", views.run_detail, name="tomogram-run-detail"),
]
