from rest_framework import viewsets

from biovlm_web.core.access import projects_for
from biovlm_web.uploads.models import DataFile, Dataset, UploadSession


class DatasetViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "uuid"

    def get_queryset(self):
        return Dataset.objects.filter(project__in=projects_for(self.request.user))


class DataFileViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "uuid"

    def get_queryset(self):
        return DataFile.objects.filter(dataset__project__in=projects_for(self.request.user))


class UploadSessionViewSet(viewsets.ReadOnlyModelViewSet):
    lookup_field = "uuid"

    def get_queryset(self):
        return UploadSession.objects.filter(dataset__project__in=projects_for(self.request.user))
