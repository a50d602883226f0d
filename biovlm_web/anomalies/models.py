"""Video anomaly review: scenes fitted on normal videos, analysed videos, flagged segments and verdicts."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from biovlm_web.core.models import Job, Project


class Scene(models.Model):
    """One camera view: its normal videos, zones and rules, and the scene model fitted on them."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="anomaly_scenes")
    name = models.CharField(max_length=200)
    normal_videos = models.ManyToManyField("uploads.DataFile", blank=True, related_name="+")
    # analysis.anomaly.Rules.as_dict(): zones as polygons in fractions of the frame, limits, protocol.
    rules = models.JSONField(default=dict, blank=True)
    # Analysis options: fps and max_side, the frame rate and longer frame side analysed.
    options = models.JSONField(default=dict, blank=True)
    # analysis.anomaly.SceneModel.as_dict() of the last successful fit; empty until fitted.
    model = models.JSONField(default=dict, blank=True)
    fit_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.name

    @property
    def fitted(self) -> bool:
        return bool(self.model)


def preview_storage_name(instance, filename):
    return f"projects/{instance.scene.project.uuid}/anomalies/{instance.uuid}-preview.webm"


def masks_storage_name(instance, filename):
    return f"projects/{instance.scene.project.uuid}/anomalies/{instance.uuid}-masks.json"


class VideoRun(models.Model):
    """One video analysed against a scene: its frame scores, tracks and flagged segments."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    scene = models.ForeignKey(Scene, on_delete=models.CASCADE, related_name="runs")
    video = models.ForeignKey("uploads.DataFile", on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    duration_s = models.FloatField(null=True)
    fps = models.FloatField(null=True)
    # The scene model's threshold when the run was scored; segments were found at this score.
    threshold = models.FloatField(null=True)
    detector = models.CharField(max_length=100, blank=True)
    # VP8 WebM of the analysed frames, which browsers play; the uploaded file may use any codec.
    preview = models.FileField(upload_to=preview_storage_name, max_length=500, blank=True)
    # JSON of analysis.anomaly.AnalysisResult.masks_dict: track masks per frame as polygons.
    masks = models.FileField(upload_to=masks_storage_name, max_length=500, blank=True)
    # How segments were explained: path ("vlm" or "measured"), the VLM's model, or why it was unavailable.
    reasoner = models.JSONField(default=dict, blank=True)
    frame_width = models.PositiveIntegerField(null=True)
    frame_height = models.PositiveIntegerField(null=True)
    # One row per analysed frame: time_s, score, tracks (id, box, zones, speed); see AnalysisResult.as_dict.
    frames = models.JSONField(default=list, blank=True)
    rule_hits = models.JSONField(default=list, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return self.video.original_name

    @property
    def project(self):
        return self.scene.project


@receiver(post_delete, sender=VideoRun)
def _delete_run_files(sender, instance, **kwargs):
    """Remove a run's preview and masks files with its row, also when its scene is deleted."""
    for field_file in (instance.preview, instance.masks):
        if field_file.name:
            field_file.storage.delete(field_file.name)


class Segment(models.Model):
    """A span of a video scored above a threshold, with what raised it and why.

    The analysis stores the segments found at the run's threshold. A reviewer may add a
    segment found on the timeline at another threshold; it comes with the reviewer's verdict.
    """

    class Path(models.TextChoices):
        VLM = "vlm", "VLM"
        MEASURED = "measured", "measured facts"

    class Origin(models.TextChoices):
        ANALYSIS = "analysis", "found by the analysis"
        REVIEWER = "reviewer", "added by a reviewer"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    run = models.ForeignKey(VideoRun, on_delete=models.CASCADE, related_name="segments")
    start_s = models.FloatField()
    end_s = models.FloatField()
    peak_score = models.FloatField()
    peak_s = models.FloatField()
    category = models.CharField(max_length=64)
    category_label = models.CharField(max_length=200, blank=True)
    # Scene-model components that scored high inside the segment, and the track ids involved.
    facts = models.JSONField(default=dict, blank=True)
    rules = models.JSONField(default=list, blank=True)
    reasoning = models.TextField(blank=True)
    path = models.CharField(max_length=16, choices=Path.choices)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.ANALYSIS)
    # The score threshold the segment was found at: the run's, or the reviewer's timeline slider.
    found_threshold = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["start_s", "id"]

    def __str__(self):
        return f"{self.category} {self.start_s:.1f}-{self.end_s:.1f} s"

    @property
    def project(self):
        return self.run.scene.project

    def latest_verdict(self):
        return self.verdicts.order_by("-created_at", "-id").first()


class Verdict(models.Model):
    """A reviewer's decision on a segment; every decision is kept and the newest one counts."""

    class Decision(models.TextChoices):
        CONFIRM = "confirm", "confirmed"
        REJECT = "reject", "rejected"
        RELABEL = "relabel", "category changed"
        ADJUST = "adjust", "start and end adjusted"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="verdicts")
    decision = models.CharField(max_length=16, choices=Decision.choices)
    # The reviewed annotation: the category and span this verdict settles on.
    category = models.CharField(max_length=64)
    start_s = models.FloatField()
    end_s = models.FloatField()
    note = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.decision} {self.segment_id}"

    @property
    def project(self):
        return self.segment.run.scene.project
