"""Pages of the anomalies app: creating and fitting a scene, adding videos, and reviewing one run."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from analysis.anomaly.categories import CATEGORIES
from analysis.anomaly.reason import COMPONENT_LABELS, RULE_LABELS
from analysis.anomaly.rules import ZONE_KINDS
from analysis.anomaly.video import VideoError
from biovlm_web.anomalies.api import project_videos, submit
from biovlm_web.anomalies.jobs import DEFAULT_OPTIONS, FIT_KIND, RUN_KIND
from biovlm_web.anomalies.media import first_frame_png, local_copy, ranged_file_response
from biovlm_web.anomalies.models import Scene, VideoRun
from biovlm_web.anomalies.reviews import latest_verdicts, run_review, scene_metrics
from biovlm_web.anomalies.serializers import SegmentSerializer
from biovlm_web.core.access import can_change, is_member, request_can_view
from biovlm_web.core.models import Project, ShareLink
from biovlm_web.core.views import ShareLinkForm, _login_url
from biovlm_web.uploads.handlers import disk_upload_handlers
from biovlm_web.uploads.ingest import (
    Received,
    receive_uploaded_file,
    store_files,
    too_large,
)
from biovlm_web.uploads.models import DataFile, Dataset
from biovlm_web.uploads.storage import UploadError

logger = logging.getLogger(__name__)


def _member_scene_or_404(request, uuid) -> Scene:
    scene = get_object_or_404(Scene.objects.select_related("project", "fit_job"), uuid=uuid)
    if not is_member(request.user, scene.project):
        raise Http404("No scene with this UUID is visible to you.")
    return scene


def _error_text(error: ValidationError) -> str:
    detail = error.detail
    if isinstance(detail, dict):
        return " ".join(str(message) for messages_ in detail.values() for message in messages_)
    return " ".join(str(message) for message in detail)


def project_video_files(project) -> list[dict]:
    files = DataFile.objects.filter(dataset__project=project, kind=DataFile.Kind.VIDEO).select_related("dataset")
    return [{"uuid": str(item.uuid), "name": item.original_name, "dataset": item.dataset.name} for item in files]


@login_required
@require_POST
def scene_create(request, uuid):
    project = get_object_or_404(Project, uuid=uuid)
    if not is_member(request.user, project):
        raise Http404("No project with this UUID is visible to you.")
    name = request.POST.get("name", "").strip()
    if not name or len(name) > 200:
        messages.error(request, "A scene needs a name of 1 to 200 characters.")
        return redirect("project-detail", uuid=project.uuid)
    try:
        videos = project_videos(project, request.POST.getlist("normal_videos"), "normal_videos")
    except ValidationError as error:
        messages.error(request, _error_text(error))
        return redirect("project-detail", uuid=project.uuid)
    with transaction.atomic():
        scene = Scene.objects.create(project=project, name=name, options=dict(DEFAULT_OPTIONS), created_by=request.user)
        scene.normal_videos.set(videos)
    return redirect("anomaly-scene-detail", uuid=scene.uuid)


def scene_detail(request, uuid):
    scene = get_object_or_404(Scene.objects.select_related("project", "fit_job"), uuid=uuid)
    if not is_member(request.user, scene.project):
        if not request.user.is_authenticated:
            return redirect(f"{_login_url()}?next={request.path}")
        raise Http404("No scene with this UUID is visible to you.")
    runs = scene.runs.select_related("video", "job").order_by("-created_at", "-id")
    normal = {str(item.uuid) for item in scene.normal_videos.all()}
    editor = {
        "scene_url": reverse("api-scene-detail", args=[scene.uuid]),
        "frame_url": reverse("anomaly-scene-frame", args=[scene.uuid]) if normal else "",
        "rules": scene.rules,
        "zone_kinds": list(ZONE_KINDS),
    }
    metrics = scene_metrics(scene)
    context = {
        "scene": scene,
        "project": scene.project,
        "runs": [{"run": run, "review": run_review(run)} for run in runs],
        "metrics": metrics,
        # (IoU threshold, recall) pairs; the keys are those analysis.anomaly.metrics.segment_metrics returns.
        "segment_recalls": [(iou, metrics.get("segments", {}).get(f"recall@{iou}")) for iou in (0.3, 0.5)],
        "editor": editor,
        "video_files": [dict(item, normal=item["uuid"] in normal) for item in project_video_files(scene.project)],
        "job": scene.fit_job,
    }
    return render(request, "anomalies/scene_detail.html", context)


@login_required
@require_POST
def scene_videos(request, uuid):
    scene = _member_scene_or_404(request, uuid)
    try:
        scene.normal_videos.set(project_videos(scene.project, request.POST.getlist("normal_videos"), "normal_videos"))
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return redirect("anomaly-scene-detail", uuid=scene.uuid)


@login_required
@require_POST
def scene_fit(request, uuid):
    scene = _member_scene_or_404(request, uuid)
    try:
        with transaction.atomic():
            scene.fit_job = submit(scene.project, FIT_KIND, {"scene": str(scene.uuid)}, request.user, "normal_videos")
            scene.save(update_fields=["fit_job"])
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return redirect("anomaly-scene-detail", uuid=scene.uuid)


@login_required
@require_POST
def scene_runs(request, uuid):
    scene = _member_scene_or_404(request, uuid)
    if not scene.fitted:
        messages.error(request, f"Scene {scene.name!r} is not fitted yet; fit it on normal videos first.")
        return redirect("anomaly-scene-detail", uuid=scene.uuid)
    try:
        videos = project_videos(scene.project, request.POST.getlist("videos"), "videos")
        if not videos:
            raise ValidationError({"videos": ["Choose at least one video to analyse."]})
        with transaction.atomic():
            for video in videos:
                run = VideoRun.objects.create(scene=scene, video=video, created_by=request.user)
                run.job = submit(scene.project, RUN_KIND, {"run": str(run.uuid)}, request.user, "videos")
                run.save(update_fields=["job"])
    except ValidationError as error:
        messages.error(request, _error_text(error))
    return redirect("anomaly-scene-detail", uuid=scene.uuid)


@login_required
def scene_frame(request, uuid):
    """Return the first frame of the scene's first normal video as PNG, for drawing zones on."""
    scene = _member_scene_or_404(request, uuid)
    video = scene.normal_videos.order_by("original_name", "id").first()
    if video is None:
        raise Http404("This scene has no normal video to take a frame from.")
    max_side = int(scene.options.get("max_side", DEFAULT_OPTIONS["max_side"]))
    try:
        with local_copy(video.file, video.original_name) as path:
            png = first_frame_png(path, max_side)
    except (ValueError, VideoError) as error:
        return HttpResponse(str(error), status=422, content_type="text/plain; charset=utf-8")
    return HttpResponse(png, content_type="image/png")


def _viewable_run_or_404(request, uuid) -> VideoRun:
    run = get_object_or_404(VideoRun.objects.select_related("scene__project", "video", "job"), uuid=uuid)
    if not request_can_view(request, run):
        raise Http404("No video run with this UUID is visible to you.")
    return run


def run_detail(request, uuid):
    run = get_object_or_404(VideoRun.objects.select_related("scene__project", "video", "job"), uuid=uuid)
    if not request_can_view(request, run):
        if not request.user.is_authenticated:
            return redirect(f"{_login_url()}?next={request.path}")
        raise Http404("No video run with this UUID is visible to you.")
    member = can_change(request.user, run)
    segments = list(run.segments.all())
    verdicts = latest_verdicts(segments)
    review = {
        "read_only": not member,
        "video_url": reverse("anomaly-run-video", args=[run.uuid]) if run.preview.name else "",
        "masks_url": reverse("anomaly-run-masks", args=[run.uuid]) if run.masks.name else "",
        "segments_url": reverse("api-video-run-segments", args=[run.uuid]),
        "frame_size": [run.frame_width, run.frame_height],
        "duration_s": run.duration_s,
        "fps": run.fps,
        "threshold": run.threshold,
        "times": [frame["time_s"] for frame in run.frames],
        "scores": [frame["score"] for frame in run.frames],
        "tracks": [frame["tracks"] for frame in run.frames],
        "segments": SegmentSerializer(segments, many=True).data,
        "categories": CATEGORIES,
        "fact_labels": COMPONENT_LABELS,
        "rule_labels": RULE_LABELS,
        "verdicts_url": "/api/segments/{uuid}/verdicts/",
    }
    context = {
        "run": run,
        "scene": run.scene,
        "project": run.scene.project,
        "member": member,
        "read_only": not member,
        "job": run.job,
        "review": review,
        "segments": [{"segment": segment, "verdict": verdicts.get(segment.id)} for segment in segments],
    }
    if member:
        context["share_links"] = ShareLink.objects.for_object(run).select_related("created_by")
        context["share_form"] = ShareLinkForm()
    return render(request, "anomalies/run_detail.html", context)


def run_video(request, uuid):
    run = _viewable_run_or_404(request, uuid)
    if not run.preview.name:
        raise Http404("This run has no preview yet; it is written when the analysis finishes.")
    return ranged_file_response(request, run.preview, "video/webm")


def run_masks(request, uuid):
    """Return the run's track masks (polygons per frame) as stored, for the review page's overlay."""
    run = _viewable_run_or_404(request, uuid)
    if not run.masks.name:
        raise Http404("This run has no masks; they are written when the analysis finishes.")
    return ranged_file_response(request, run.masks, "application/json")


def run_export(request, uuid, export_format):
    """Download the reviewed annotations of a run; share-link visitors may download them too."""
    from biovlm_web.anomalies.reviews import export_json, export_ucf_crime

    run = _viewable_run_or_404(request, uuid)
    if export_format == "ucf":
        try:
            body, content_type, suffix = export_ucf_crime([run]), "text/plain; charset=utf-8", "ucf-crime.txt"
        except ValueError as error:
            return HttpResponse(str(error), status=400, content_type="text/plain; charset=utf-8")
    elif export_format == "json":
        import json

        body, content_type, suffix = json.dumps(export_json([run]), indent=2), "application/json", "annotations.json"
    else:
        raise Http404(f"No export format {export_format!r}; use json or ucf.")
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="run-{run.uuid}-{suffix}"'
    return response


SCENE_DATASET_NAME = "Scene videos"


def _received_video(uploaded_file) -> Received:
    received = receive_uploaded_file(uploaded_file)
    if received.inspection.file_type.kind != DataFile.Kind.VIDEO:
        raise UploadError(
            f"{received.filename} is not a video ({received.inspection.file_type.kind}); "
            "upload MP4, MOV, AVI, MKV or WebM files."
        )
    return received


@csrf_exempt
@login_required
@require_POST
def scene_upload(request, uuid):
    # Upload handlers must be set before anything reads the body, the CSRF check included.
    request.upload_handlers = disk_upload_handlers(request)
    return _scene_upload(request, uuid)


@csrf_protect
def _scene_upload(request, uuid):
    """Store uploaded videos in the project, then use them as normal videos or analyse them."""
    scene = _member_scene_or_404(request, uuid)
    back = redirect("anomaly-scene-detail", uuid=scene.uuid)
    purpose = request.POST.get("purpose")
    uploaded = request.FILES.getlist("videos")
    rejected = request.upload_handlers[0].rejected_name
    if rejected is not None:
        messages.error(request, too_large(rejected).detail)
        return back
    if purpose not in ("normal", "review"):
        messages.error(request, f"Choose what the videos are for: normal or review, not {purpose!r}.")
        return back
    if not uploaded:
        messages.error(request, "Choose one or more video files in the field 'Videos'.")
        return back
    if purpose == "review" and not scene.fitted:
        messages.error(request, f"Scene {scene.name!r} is not fitted yet; fit it on normal videos first.")
        return back
    try:
        received = [_received_video(item) for item in uploaded]
    except UploadError as error:
        logger.info("Video upload to scene %s by %s rejected: %s", scene.uuid, request.user, error.detail)
        messages.error(request, f"Nothing was stored: {error.detail}")
        return back

    def use_videos(stored):
        if purpose == "normal":
            scene.normal_videos.add(*stored)
            return
        for video in stored:
            run = VideoRun.objects.create(scene=scene, video=video, created_by=request.user)
            run.job = submit(scene.project, RUN_KIND, {"run": str(run.uuid)}, request.user, "videos")
            run.save(update_fields=["job"])

    dataset = Dataset.objects.filter(project=scene.project, name=SCENE_DATASET_NAME).order_by("id").first()
    if dataset is None:
        dataset = Dataset.objects.create(
            project=scene.project,
            name=SCENE_DATASET_NAME,
            description="Videos uploaded on anomaly scene pages.",
            created_by=request.user,
        )
    try:
        store_files(dataset, received, request.user, in_transaction=use_videos)
    except ValidationError as error:
        messages.error(request, f"Nothing was stored: {_error_text(error)}")
        return back
    names = ", ".join(item.filename for item in received)
    messages.success(request, f"Stored {names} as {'normal videos' if purpose == 'normal' else 'videos to analyse'}.")
    return back
