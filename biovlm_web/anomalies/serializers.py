from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analysis.anomaly.categories import CATEGORIES
from biovlm_web.anomalies.models import Scene, Segment, Verdict, VideoRun


class SceneSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project.uuid", read_only=True)
    normal_videos = serializers.SerializerMethodField()
    fitted = serializers.BooleanField(read_only=True)
    threshold = serializers.SerializerMethodField()
    fit_job = serializers.UUIDField(source="fit_job.uuid", read_only=True, default=None)
    fit_status = serializers.CharField(source="fit_job.status", read_only=True, default=None)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = Scene
        fields = [
            "uuid", "project", "name", "normal_videos", "rules", "options", "fitted", "threshold", "fit_job",
            "fit_status", "created_by", "created_at", "page_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_normal_videos(self, scene) -> list[str]:
        return [str(item.uuid) for item in scene.normal_videos.all()]

    def get_threshold(self, scene) -> float | None:
        """Return the fitted model's score threshold, or None before the first fit."""
        return scene.model.get("threshold") if scene.model else None

    def get_page_url(self, scene) -> str:
        return reverse("anomaly-scene-detail", args=[scene.uuid])


class SceneWriteSerializer(serializers.Serializer):
    project = serializers.UUIDField(help_text="UUID of a project you are a member of; only when creating.")
    name = serializers.CharField(max_length=200)
    normal_videos = serializers.ListField(
        child=serializers.UUIDField(), required=False, help_text="UUIDs of video files of the project."
    )
    rules = serializers.JSONField(
        required=False,
        help_text="Zones (name, kind, polygon in fractions of the frame), limits and an optional protocol.",
    )
    options = serializers.JSONField(required=False, help_text="fps and max_side of the analysis.")


class JobStartedSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    job_url = serializers.CharField()


class AddRunsSerializer(serializers.Serializer):
    videos = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, help_text="UUIDs of video files of the project to analyse."
    )


class VideoRunSerializer(serializers.ModelSerializer):
    scene = serializers.UUIDField(source="scene.uuid", read_only=True)
    video = serializers.UUIDField(source="video.uuid", read_only=True)
    video_name = serializers.CharField(source="video.original_name", read_only=True)
    job = serializers.UUIDField(source="job.uuid", read_only=True, default=None)
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)
    segment_count = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = VideoRun
        fields = [
            "uuid", "scene", "video", "video_name", "job", "job_status", "duration_s", "fps", "threshold", "detector",
            "segment_count", "reasoner", "timings", "created_at", "page_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_segment_count(self, run) -> int:
        return run.segments.count()

    def get_page_url(self, run) -> str:
        return reverse("anomaly-run-detail", args=[run.uuid])


class VideoRunDetailSerializer(VideoRunSerializer):
    class Meta(VideoRunSerializer.Meta):
        fields = [*VideoRunSerializer.Meta.fields, "frames", "rule_hits"]
        read_only_fields = fields


class VerdictSerializer(serializers.ModelSerializer):
    segment = serializers.UUIDField(source="segment.uuid", read_only=True)
    user = serializers.CharField(source="user.username", read_only=True, default=None)

    class Meta:
        model = Verdict
        fields = ["uuid", "segment", "decision", "category", "start_s", "end_s", "note", "user", "created_at"]
        read_only_fields = fields


class SegmentSerializer(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run.uuid", read_only=True)
    path_label = serializers.CharField(source="get_path_display", read_only=True)
    origin_label = serializers.CharField(source="get_origin_display", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    verdict = serializers.SerializerMethodField()

    class Meta:
        model = Segment
        fields = [
            "uuid", "run", "start_s", "end_s", "peak_score", "peak_s", "category", "category_label", "facts", "rules",
            "reasoning", "path", "path_label", "origin", "origin_label", "found_threshold", "created_by",
            "created_at", "verdict",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(VerdictSerializer(allow_null=True))
    def get_verdict(self, segment) -> dict | None:
        verdict = segment.latest_verdict()
        return VerdictSerializer(verdict).data if verdict else None


def span_order_message(start_s: float, end_s: float) -> str:
    """Return the error for a span whose end is not after its start, in the review form's labels."""
    return f"End ({end_s:g} s) must be after Start ({start_s:g} s)."


class VerdictCreateSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Verdict.Decision.choices)
    category = serializers.ChoiceField(
        choices=list(CATEGORIES), required=False, help_text="The new category; required for relabel."
    )
    start_s = serializers.FloatField(required=False, min_value=0, help_text="The new start in seconds; for adjust.")
    end_s = serializers.FloatField(required=False, min_value=0, help_text="The new end in seconds; for adjust.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    def validate(self, data):
        decision = data["decision"]
        if decision == "relabel" and "category" not in data:
            raise serializers.ValidationError({"category": ["relabel needs the new category."]})
        if decision == "adjust" and ("start_s" not in data or "end_s" not in data):
            raise serializers.ValidationError({"start_s": ["adjust needs both start_s and end_s."]})
        if "start_s" in data and "end_s" in data and data["end_s"] <= data["start_s"]:
            raise serializers.ValidationError({"end_s": [span_order_message(data["start_s"], data["end_s"])]})
        return data


class ReviewedSegmentCreateSerializer(serializers.Serializer):
    start_s = serializers.FloatField(min_value=0, help_text="Start of the span in seconds.")
    end_s = serializers.FloatField(min_value=0, help_text="End of the span in seconds.")
    threshold = serializers.FloatField(
        min_value=0, max_value=1, help_text="The timeline threshold at which the span was flagged."
    )
    category = serializers.ChoiceField(choices=list(CATEGORIES), help_text="The category the reviewer confirms.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    def validate(self, data):
        if data["end_s"] <= data["start_s"]:
            raise serializers.ValidationError({"end_s": [span_order_message(data["start_s"], data["end_s"])]})
        return data


class MetricsSerializer(serializers.Serializer):
    reviewed_videos = serializers.IntegerField(help_text="Runs whose every segment has a verdict.")
    videos = serializers.DictField(required=False, help_text="Video-level accuracy, precision, recall and F1.")
    segments = serializers.DictField(required=False, help_text="Segment mIoU and recall at IoU 0.3 and 0.5.")
