"""Set-difference comparisons: two image groups, the job that compares them, and its ranked hypotheses."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from biovlm_web.core.models import Job, Project


class Comparison(models.Model):
    """Two named image groups of one project and the options and results of comparing them."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    name = models.CharField(max_length=200)
    name_a = models.CharField(max_length=100, default="A")
    name_b = models.CharField(max_length=100, default="B")
    # Options of the last run: proposers, text_ranker, hypotheses, resamples, permutations.
    options = models.JSONField(default=dict, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Images named with the reason they were left out, such as a file that cannot be decoded.
    skipped = models.JSONField(default=list, blank=True)
    # The run's summary: models used, roles unavailable with their reasons, seconds per stage.
    summary = models.JSONField(default=dict, blank=True)
    # Measured features of every image: ``names`` of the features, ``rows`` in the order of
    # ``images_a`` then ``images_b`` (image UUIDs), kept so that a typed hypothesis is ranked
    # without measuring the images again.
    features = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    def group_name(self, group: str) -> str:
        return self.name_a if group == "a" else self.name_b


def image_storage_name(instance, filename):
    return (
        f"projects/{instance.comparison.project.uuid}/comparisons/{instance.comparison.uuid}/{instance.uuid}-{filename}"
    )


class ComparisonImage(models.Model):
    """One decoded image (one page or frame of a file) of group A or B, stored as 8-bit RGB PNG."""

    class Group(models.TextChoices):
        A = "a", "A"
        B = "b", "B"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="images")
    group = models.CharField(max_length=1, choices=Group.choices)
    name = models.CharField(max_length=500)
    # The normalised pixels the pipeline reads, so every run reads the same values.
    image = models.FileField(upload_to=image_storage_name, max_length=500)
    thumbnail = models.FileField(upload_to=image_storage_name, max_length=500)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    # SHA-256 of the normalised pixels and their shape, as analysis.setdiff.ingest computes it.
    sha256 = models.CharField(max_length=64)
    scaling = models.CharField(max_length=200, blank=True)
    source_file = models.ForeignKey(
        "uploads.DataFile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["group", "name", "id"]

    def __str__(self):
        return self.name

    @property
    def project(self):
        return self.comparison.project


@receiver(post_delete, sender=ComparisonImage)
def _delete_stored_files(sender, instance, **kwargs):
    """Remove an image's stored files with its row, also when its comparison is deleted."""
    for field in (instance.image, instance.thumbnail):
        if field.name:
            field.storage.delete(field.name)


class Hypothesis(models.Model):
    """One ranked description of what is more true of group A than of group B."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="hypotheses")
    # The text shown; a rename changes it and keeps ``original_description``.
    description = models.CharField(max_length=500)
    original_description = models.CharField(max_length=500)
    proposer = models.CharField(max_length=64)
    ranker = models.CharField(max_length=64)
    rank = models.PositiveIntegerField(default=0)
    auroc = models.FloatField()
    auroc_low = models.FloatField(null=True)
    auroc_high = models.FloatField(null=True)
    permutation_p = models.FloatField(null=True)
    q = models.FloatField(null=True)
    welch_t = models.FloatField(null=True)
    welch_p = models.FloatField(null=True)
    effect_size = models.FloatField(null=True)
    mean_a = models.FloatField(null=True)
    mean_b = models.FloatField(null=True)
    source = models.JSONField(default=dict, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    # One score per image, keyed by the image's UUID; higher means the description fits better.
    scores = models.JSONField(default=dict, blank=True)
    dismissed = models.BooleanField(default=False)
    typed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rank", "id"]
        verbose_name_plural = "hypotheses"

    def __str__(self):
        return self.description

    @property
    def project(self):
        return self.comparison.project


@receiver(post_delete, sender=Comparison)
def _delete_stored_embeddings(sender, instance, **kwargs):
    """Remove the stored CLIP image embeddings with their comparison."""
    from biovlm_web.comparisons.embeddings import delete_file, stored_entry

    delete_file(stored_entry(instance))
