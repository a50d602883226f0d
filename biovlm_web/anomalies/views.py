"""Pages of the anomalies app: a scene with its runs and metrics, and the review page of one run."""

from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from biovlm_web.anomalies.models import Scene, VideoRun
from biovlm_web.anomalies.reviews import latest_verdicts, run_review, scene_metrics
from biovlm_web.core.access import can_change, is_member, request_can_view
from biovlm_web.core.models import ShareLink
from biovlm_web.core.views import ShareLinkForm, _login_url


def scene_detail(request, uuid):
    scene = get_object_or_404(Scene.objects.select_related("project", "fit_job"), uuid=uuid)
    if not is_member(request.user, scene.project):
        if not request.user.is_authenticated:
            return redirect(f"{_login_url()}?next={request.path}")
        raise Http404("No scene with this UUID is visible to you.")
    runs = scene.runs.select_related("video", "job").order_by("-created_at", "-id")
    context = {
        "scene": scene,
        "project": scene.project,
        "runs": [{"run": run, "review": run_review(run)} for run in runs],
        "metrics": scene_metrics(scene),
    }
    return render(request, "anomalies/scene_detail.html", context)


def run_detail(request, uuid):
    run = get_object_or_404(VideoRun.objects.select_related("scene__project", "video", "job"), uuid=uuid)
    if not request_can_view(request, run):
        if not request.user.is_authenticated:
            return redirect(f"{_login_url()}?next={request.path}")
        raise Http404("No video run with this UUID is visible to you.")
    member = can_change(request.user, run)
    segments = list(run.segments.all())
    verdicts = latest_verdicts(segments)
    context = {
        "run": run,
        "scene": run.scene,
        "project": run.scene.project,
        "member": member,
        "read_only": not member,
        "segments": [{"segment": segment, "verdict": verdicts.get(segment.id)} for segment in segments],
    }
    if member:
        context["share_links"] = ShareLink.objects.for_object(run).select_related("created_by")
        context["share_form"] = ShareLinkForm()
    return render(request, "anomalies/run_detail.html", context)
