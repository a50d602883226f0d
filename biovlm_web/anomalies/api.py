"""REST API of anomaly scenes, video runs, flagged segments and reviewers' verdicts.

Objects are reached through the requesting user's projects, so a stranger gets 404 and an
anonymous client 401. Share-link visitors read a run on its page, not through the API.
"""

import json

from django.db import transaction
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from biovlm_web.anomalies.jobs import FIT_KIND, RUN_KIND, clean_options, clean_rules
from biovlm_web.anomalies.models import Scene, Segment, Verdict, VideoRun
from biovlm_web.anomalies.reviews import add_reviewed_segment, export_json, export_ucf_crime, scene_metrics
from biovlm_web.anomalies.serializers import (
    AddRunsSerializer,
    JobStartedSerializer,
    MetricsSerializer,
    ReviewedSegmentCreateSerializer,
    SceneSerializer,
    SceneWriteSerializer,
    SegmentSerializer,
    VerdictCreateSerializer,
    VerdictSerializer,
    VideoRunDetailSerializer,
    VideoRunSerializer,
    span_order_message,
)
from biovlm_web.comparisons.api import uuid_query_param
from biovlm_web.core.access import projects_for
from biovlm_web.core.jobs import JobError, submit_job
from biovlm_web.uploads.models import DataFile
from biovlm_web.uploads.serializers import ErrorSerializer

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request; `detail` names the value and the fix."),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or in a project you are not a member of."),
}
EXPORT_FORMAT = OpenApiParameter(
    "export_format", str, enum=["json", "ucf"], description="json (default) or ucf for UCF-Crime text lines."
)


def project_videos(project, uuids, field: str) -> list[DataFile]:
    """Return the video files of ``project`` with these UUIDs; raise ValidationError naming the others."""
    files = list(DataFile.objects.filter(dataset__project=project, uuid__in=uuids))
    missing = sorted({str(item) for item in uuids} - {str(item.uuid) for item in files})
    if missing:
        raise ValidationError({field: [f"No file of project {project.name!r} has the UUID {', '.join(missing)}."]})
    not_video = sorted(item.original_name for item in files if item.kind != DataFile.Kind.VIDEO)
    if not_video:
        raise ValidationError({field: [f"Not video files: {', '.join(not_video)}; choose uploaded videos."]})
    return files


def export_response(runs, export_format: str, filename: str):
    if export_format == "ucf":
        try:
            text = export_ucf_crime(runs)
        except ValueError as error:
            raise ValidationError({"export_format": [str(error)]}) from error
        response = HttpResponse(text, content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}-ucf-crime.txt"'
        return response
    if export_format != "json":
        raise ValidationError({"export_format": [f"Use json or ucf; got {export_format!r}."]})
    response = Response(export_json(runs))
    response["Content-Disposition"] = f'attachment; filename="{filename}-annotations.json"'
    return response


def check_span(run, start_s: float, end_s: float) -> None:
    """Raise ValidationError on end_s unless start_s < end_s and end_s is within the run's video."""
    if end_s <= start_s:
        raise ValidationError({"end_s": [span_order_message(start_s, end_s)]})
    if run.duration_s is not None and end_s > run.duration_s + 1e-6:
        raise ValidationError({"end_s": [f"End ({end_s:g} s) is past the end of the video ({run.duration_s:.3f} s)."]})


def submit(project, kind: str, params: dict, user, field: str):
    try:
        return submit_job(project, kind, params, user)
    except JobError as error:
        raise ValidationError({field: [str(error)]}) from error


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.UUID, description="Only scenes of this project.")]
    ),
    partial_update=extend_schema(request=SceneWriteSerializer, responses={200: SceneSerializer, **ERRORS}),
)
class SceneViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Anomaly scenes of the projects the requesting user belongs to."""

    serializer_class = SceneSerializer
    lookup_field = "uuid"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        scenes = Scene.objects.filter(project__in=projects_for(self.request.user)).select_related(
            "project", "fit_job", "created_by"
        )
        project = uuid_query_param(self.request, "project") if self.action == "list" else None
        if project is not None:
            scenes = scenes.filter(project__uuid=project)
        return scenes

    def _apply(self, scene: Scene, data: dict) -> None:
        for field, clean in (("rules", clean_rules), ("options", clean_options)):
            if field not in data:
                continue
            try:
                setattr(scene, field, clean(data[field] or {}))
            except JobError as error:
                raise ValidationError({field: [str(error)]}) from error
        if "name" in data:
            scene.name = data["name"]

    @extend_schema(request=SceneWriteSerializer, responses={201: SceneSerializer, **ERRORS})
    def create(self, request):
        serializer = SceneWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = projects_for(request.user).filter(uuid=data["project"]).first()
        if project is None:
            raise NotFound("No project with this UUID is visible to you.")
        videos = project_videos(project, data.get("normal_videos") or [], "normal_videos")
        scene = Scene(project=project, created_by=request.user, options=clean_options({}))
        self._apply(scene, data)
        with transaction.atomic():
            scene.save()
            scene.normal_videos.set(videos)
        return Response(SceneSerializer(scene).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, uuid=None):
        scene = self.get_object()
        serializer = SceneWriteSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        self._apply(scene, data)
        with transaction.atomic():
            scene.save()
            if "normal_videos" in data:
                scene.normal_videos.set(project_videos(scene.project, data["normal_videos"], "normal_videos"))
        return Response(SceneSerializer(scene).data)

    @extend_schema(request=None, responses={202: JobStartedSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def fit(self, request, uuid=None):
        """Start fitting the scene model on the scene's normal videos, with its rules and options."""
        scene = self.get_object()
        with transaction.atomic():
            job = submit(scene.project, FIT_KIND, {"scene": str(scene.uuid)}, request.user, "normal_videos")
            scene.fit_job = job
            scene.save(update_fields=["fit_job"])
        body = {"job": job.uuid, "job_url": reverse("job-detail", args=[job.uuid])}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=AddRunsSerializer, responses={201: VideoRunSerializer(many=True), **ERRORS})
    @action(detail=True, methods=["post"])
    def runs(self, request, uuid=None):
        """Analyse one or more videos of the project against the fitted scene, one job per video."""
        scene = self.get_object()
        serializer = AddRunsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not scene.fitted:
            raise ValidationError(
                {"videos": [f"Scene {scene.name!r} is not fitted yet; fit it on normal videos first."]}
            )
        videos = project_videos(scene.project, serializer.validated_data["videos"], "videos")
        runs = []
        with transaction.atomic():
            for video in videos:
                run = VideoRun.objects.create(scene=scene, video=video, created_by=request.user)
                run.job = submit(scene.project, RUN_KIND, {"run": str(run.uuid)}, request.user, "videos")
                run.save(update_fields=["job"])
                runs.append(run)
        return Response(VideoRunSerializer(runs, many=True).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: MetricsSerializer})
    @action(detail=True, methods=["get"])
    def metrics(self, request, uuid=None):
        """Compare the flagged segments of every fully reviewed run with the reviewers' verdicts."""
        return Response(scene_metrics(self.get_object()))

    @extend_schema(parameters=[EXPORT_FORMAT], responses={(200, "application/json"): OpenApiTypes.OBJECT, **ERRORS})
    @action(detail=True, methods=["get"])
    def export(self, request, uuid=None):
        """Download the reviewed annotations of every run of the scene."""
        scene = self.get_object()
        runs = scene.runs.select_related("video").order_by("created_at", "id")
        return export_response(runs, request.query_params.get("export_format", "json"), f"scene-{scene.uuid}")


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("scene", OpenApiTypes.UUID, description="Only runs of this scene.")]
    ),
    retrieve=extend_schema(responses=VideoRunDetailSerializer),
)
class VideoRunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Videos analysed against scenes; the detail includes per-frame scores and tracks."""

    serializer_class = VideoRunSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        runs = VideoRun.objects.filter(scene__project__in=projects_for(self.request.user)).select_related(
            "scene", "video", "job"
        )
        scene = uuid_query_param(self.request, "scene") if self.action == "list" else None
        if scene is not None:
            runs = runs.filter(scene__uuid=scene)
        return runs

    def get_serializer_class(self):
        return VideoRunDetailSerializer if self.action == "retrieve" else VideoRunSerializer

    @extend_schema(parameters=[EXPORT_FORMAT], responses={(200, "application/json"): OpenApiTypes.OBJECT, **ERRORS})
    @action(detail=True, methods=["get"])
    def export(self, request, uuid=None):
        """Download the reviewed annotations of this run."""
        run = self.get_object()
        return export_response([run], request.query_params.get("export_format", "json"), f"run-{run.uuid}")

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **ERRORS})
    @action(detail=True, methods=["get"])
    def masks(self, request, uuid=None):
        """Return the track masks per analysed frame, as polygons in pixels of the analysed frame.

        The object has ``format`` ("polygons"), ``frame_size`` [width, height], ``max_points``
        per polygon, ``missing_from_s`` (the time from which masks were dropped to bound the
        file's size, or null), and ``frames``: one list per frame of the run's ``frames``, each
        item ``{"track_id", "polygons": [[x0, y0, x1, y1, ...], ...]}``.
        """
        run = self.get_object()
        if not run.masks.name:
            raise NotFound("This run has no masks; they are written when the analysis finishes.")
        with run.masks.storage.open(run.masks.name, "rb") as handle:
            return Response(json.load(handle))

    @extend_schema(request=ReviewedSegmentCreateSerializer, responses={201: SegmentSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def segments(self, request, uuid=None):
        """Confirm a span flagged on the timeline at another threshold; it is stored as a reviewed segment."""
        run = self.get_object()
        serializer = ReviewedSegmentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        check_span(run, data["start_s"], data["end_s"])
        try:
            segment = add_reviewed_segment(
                run, data["start_s"], data["end_s"], data["threshold"], data["category"], data["note"], request.user
            )
        except ValueError as error:
            raise ValidationError({"span": [str(error)]}) from error
        return Response(SegmentSerializer(segment).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("run", OpenApiTypes.UUID, description="Only segments of this run.")]
    ),
)
class SegmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Flagged segments with their facts, rules, reasoning and newest verdict."""

    serializer_class = SegmentSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        segments = Segment.objects.filter(run__scene__project__in=projects_for(self.request.user)).select_related("run")
        run = uuid_query_param(self.request, "run") if self.action == "list" else None
        if run is not None:
            segments = segments.filter(run__uuid=run)
        return segments.order_by("run_id", "start_s", "id")

    @extend_schema(request=VerdictCreateSerializer, responses={201: VerdictSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def verdicts(self, request, uuid=None):
        """Record a reviewer's verdict: confirm, reject, relabel (category) or adjust (start_s, end_s)."""
        segment = self.get_object()
        serializer = VerdictCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        previous = segment.latest_verdict()
        base = previous or segment
        start_s = data.get("start_s", base.start_s)
        end_s = data.get("end_s", base.end_s)
        check_span(segment.run, start_s, end_s)
        verdict = Verdict.objects.create(
            segment=segment,
            decision=data["decision"],
            category=data.get("category", base.category),
            start_s=start_s,
            end_s=end_s,
            note=data.get("note", ""),
            user=request.user,
        )
        return Response(VerdictSerializer(verdict).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("segment", OpenApiTypes.UUID, description="Only verdicts on this segment.")]
    ),
)
class VerdictViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every verdict reviewers gave, newest first, with who decided and when."""

    serializer_class = VerdictSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        verdicts = Verdict.objects.filter(
            segment__run__scene__project__in=projects_for(self.request.user)
        ).select_related("segment", "user")
        segment = uuid_query_param(self.request, "segment") if self.action == "list" else None
        if segment is not None:
            verdicts = verdicts.filter(segment__uuid=segment)
        return verdicts
