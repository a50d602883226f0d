import logging
import uuid

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from biovlm_web.core.models import Job, Project
from biovlm_web.uploads.models import DataFile

logger = logging.getLogger(__name__)


class Tomogram(models.Model):
    """An MRC tomogram of a project, with optional reference picks to score runs against."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tomograms")
    name = models.CharField(max_length=255)
    # Deleting the MRC file (through the files API) deletes the tomogram and its runs.
    volume = models.ForeignKey(DataFile, on_delete=models.CASCADE, related_name="tomograms")
    # Angstroms per voxel used by runs: the header's x size, or the value a member corrected it to.
    voxel_size = models.FloatField(null=True, blank=True)
    references = models.ManyToManyField(DataFile, blank=True, related_name="reference_of")
    # Reference particle counts per class and warnings from reading the reference files.
    reference_summary = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def header(self) -> dict:
        """The MRC header facts read at upload: shape (z, y, x), mode, voxel size and warnings."""
        return self.volume.metadata or {}

    @property
    def shape(self) -> tuple[int, int, int] | None:
        shape = self.header.get("shape")
        return tuple(shape) if shape and len(shape) == 3 else None

    @property
    def header_voxel_size(self) -> float | None:
        voxel = self.header.get("voxel_size_angstrom")
        return float(voxel["x"]) if voxel else None


def map_storage_name(instance, filename):
    return f"projects/{instance.tomogram.project.uuid}/tomogram-runs/{instance.uuid}.npz"


class TomogramRun(models.Model):
    """One picking and classification run of a tomogram; its job does the work."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tomogram = models.ForeignKey(Tomogram, on_delete=models.CASCADE, related_name="runs")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="tomogram_run")
    params = models.JSONField(default=dict, blank=True)
    # Run facts from the pipeline: counts per class, timings, warnings, producing model.
    summary = models.JSONField(default=dict, blank=True)
    # Per-class precision, recall and F-beta against the reference picks, when the tomogram has some.
    evaluation = models.JSONField(null=True, blank=True)
    # The particles as a SpatialMap .npz; empty until the run succeeds.
    map_file = models.FileField(upload_to=map_storage_name, max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"run {self.uuid} of {self.tomogram}"

    @property
    def project(self):
        return self.tomogram.project

    @property
    def is_ready(self) -> bool:
        return self.job.status == Job.Status.SUCCEEDED and bool(self.map_file)


@receiver(post_delete, sender=TomogramRun)
def delete_map_file(sender, instance, **kwargs):
    """Remove a deleted run's particle map from storage."""
    if not instance.map_file:
        return
    try:
        instance.map_file.storage.delete(instance.map_file.name)
    except Exception:  # Storage backends raise their own types (botocore for S3); the row is gone either way.
        logger.exception(
            "Run %s was deleted, but removing %s from storage failed", instance.uuid, instance.map_file.name
        )
