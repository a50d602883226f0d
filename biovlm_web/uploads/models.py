import uuid

from django.conf import settings
from django.db import models

from biovlm_web.core.models import Project


class Dataset(models.Model):
    """A named group of files in a project, such as one session's micrographs."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name


def storage_name(instance, filename):
    # The server chooses the stored name; the user's name is kept only as display text.
    return f"projects/{instance.dataset.project.uuid}/files/{instance.uuid}{instance.extension}"


class DataFile(models.Model):
    class Kind(models.TextChoices):
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        VOLUME = "volume", "Volume (MRC)"
        TABLE = "table", "Table or particle list"
        ARCHIVE = "archive", "Archive"
        OTHER = "other", "Other"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="files")
    original_name = models.CharField(max_length=255)
    extension = models.CharField(max_length=16, blank=True)
    file = models.FileField(upload_to=storage_name, max_length=500)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER)
    content_type = models.CharField(max_length=100, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["original_name", "id"]

    def __str__(self):
        return self.original_name

    @property
    def project(self):
        return self.dataset.project


class UploadSession(models.Model):
    """A resumable chunked upload: its bytes so far live in a partial file on the server.

    ``offset`` is the number of bytes committed. The partial file may be longer after a
    crash between writing a chunk and saving the row; the next chunk truncates it back.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Receiving chunks"
        COMPLETE = "complete", "Complete"
        FAILED = "failed", "Failed"
        ABORTED = "aborted", "Aborted"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="upload_sessions")
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True)
    chunk_size = models.PositiveIntegerField()
    offset = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    error = models.TextField(blank=True)
    data_file = models.OneToOneField(DataFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    @property
    def project(self):
        return self.dataset.project
