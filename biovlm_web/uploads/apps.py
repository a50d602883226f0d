from django.apps import AppConfig


class UploadsConfig(AppConfig):
    name = "biovlm_web.uploads"
    label = "uploads"
    verbose_name = "Uploads"
