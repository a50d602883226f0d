"""The anomaly jobs: fit a scene model on normal videos, and analyse one video against a scene.

Both use the weight-free detector (background subtraction), so no model files are needed.
Segments are explained by the VLM role of the model registry when it loads, and from the
measured facts otherwise. Videos are read through the storage API into local temporary copies.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from django.core.files.base import ContentFile
from django.db import transaction
from django.urls import reverse

from analysis.anomaly import Rules, SceneModel, VideoError, analyse, fit_scene
from analysis.anomaly.reason import MEASURED, explain_segments
from analysis.backends import ModelUnavailable
from biovlm_web.anomalies.media import local_copy
from biovlm_web.core.jobs import JobError, JobKind, register_job_kind

FIT_KIND = "anomaly_fit_scene"
RUN_KIND = "anomaly_video_run"
DEFAULT_OPTIONS = {"fps": 10.0, "max_side": 320}
OPTION_LIMITS = {"fps": (1.0, 30.0), "max_side": (64, 1280)}


def clean_options(options: dict) -> dict:
    """Check analysis options; raise JobError naming the field and its allowed range."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise JobError(f"Unknown option(s) {', '.join(unknown)}; the options are {', '.join(DEFAULT_OPTIONS)}.")
    cleaned = {**DEFAULT_OPTIONS, **options}
    for name, (low, high) in OPTION_LIMITS.items():
        value = cleaned[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise JobError(f"{name} must be a number from {low} to {high}; got {value!r}.")
    cleaned["max_side"] = int(cleaned["max_side"])
    cleaned["fps"] = float(cleaned["fps"])
    return cleaned


def clean_rules(data: dict) -> dict:
    """Check rules as analysis.anomaly.Rules reads them; raise JobError with its message."""
    try:
        return Rules.from_dict(data).as_dict()
    except (ValueError, TypeError, KeyError) as error:
        raise JobError(f"Invalid rules: {error}") from error


def _scene_in(project, params: dict):
    from biovlm_web.anomalies.models import Scene

    scene = Scene.objects.filter(project=project, uuid=str(params.get("scene", ""))).first()
    if scene is None:
        raise JobError(f"params.scene must be the UUID of a scene in project {project.name!r}.")
    return scene


def _validate_fit(project, params: dict) -> dict:
    scene = _scene_in(project, params)
    if not scene.normal_videos.exists():
        raise JobError(f"Scene {scene.name!r} has no normal videos; choose at least one before fitting.")
    return {"scene": str(scene.uuid)}


def _validate_run(project, params: dict) -> dict:
    from biovlm_web.anomalies.models import VideoRun

    run = VideoRun.objects.filter(scene__project=project, uuid=str(params.get("run", ""))).first()
    if run is None:
        raise JobError(f"params.run must be the UUID of a video run in project {project.name!r}.")
    if not run.scene.fitted:
        raise JobError(f"Scene {run.scene.name!r} is not fitted yet; fit it on normal videos first.")
    return {"run": str(run.uuid)}


def run_fit(job, reporter) -> dict:
    """Fit the scene model on the scene's normal videos and store it on the scene."""
    from biovlm_web.anomalies.models import Scene

    scene = Scene.objects.filter(uuid=job.params["scene"], project=job.project).first()
    if scene is None:
        raise JobError("The scene of this job was deleted.")
    videos = list(scene.normal_videos.order_by("original_name", "id"))
    if not videos:
        raise JobError(f"Scene {scene.name!r} has no normal videos; choose at least one before fitting.")
    options = clean_options(scene.options)
    rules = Rules.from_dict(scene.rules)
    reporter.log(
        f"Fitting {scene.name!r} on {len(videos)} normal video(s): {', '.join(v.original_name for v in videos)}"
    )
    with contextlib.ExitStack() as stack:
        paths = [stack.enter_context(local_copy(video.file, video.original_name)) for video in videos]
        try:
            model = fit_scene(paths, rules, fps=options["fps"], max_side=options["max_side"], reporter=reporter)
        except (ValueError, VideoError) as error:
            raise JobError(f"Fitting the scene failed: {error}") from error
    model.videos = [video.original_name for video in videos]
    scene.model = model.as_dict()
    scene.save(update_fields=["model"])
    return {
        "scene": str(scene.uuid),
        "scene_name": scene.name,
        "scene_url": reverse("anomaly-scene-detail", args=[scene.uuid]),
        "videos": model.videos,
        "frames": model.frame_count,
        "threshold": model.threshold,
    }


VLM_RECORD_KEYS = ("model", "description", "reasoning", "error")


def segment_rows(result) -> list[dict]:
    """Turn the explained segments of an AnalysisResult into Segment field values.

    ``facts["vlm"]`` keeps the VLM's model, scene description and reasoning, or its error
    when the segment fell back to the measured facts.
    """
    rows = []
    for segment in result.segments:
        explanation = segment.explanation or {}
        facts = {"components": segment.components, "track_ids": segment.track_ids}
        if explanation.get("vlm"):
            facts["vlm"] = {key: explanation["vlm"][key] for key in VLM_RECORD_KEYS if key in explanation["vlm"]}
        rows.append(
            {
                "start_s": segment.start_s,
                "end_s": segment.end_s,
                "peak_score": segment.peak_score,
                "peak_s": segment.peak_s,
                "category": explanation.get("category", "other"),
                "category_label": explanation.get("category_label", ""),
                "facts": facts,
                "rules": segment.rules,
                "reasoning": str(explanation.get("explanation", "")),
                "path": "measured" if explanation.get("source", MEASURED) == MEASURED else "vlm",
            }
        )
    return rows


def load_vlm(reporter):
    """Return the registry's VLM and a record of it, or None and the reason it is unavailable."""
    from biovlm_web.core.model_registry import get_registry

    try:
        vlm = get_registry().get("vlm")
    except ModelUnavailable as error:
        reporter.log(f"Explaining segments from the measured facts: the VLM is unavailable ({error.reason})")
        return None, {"vlm_available": False, "source": error.source, "reason": error.reason}
    reporter.log(f"Explaining segments with the VLM {vlm.info.version}")
    return vlm, {"vlm_available": True, "source": vlm.info.source, "model": vlm.info.version}


def preview_file(run, path: str, model: SceneModel):
    """Encode the run's preview into a temporary file; return it as a Django File and the frame size."""
    from biovlm_web.anomalies.media import write_preview

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "preview.webm"
        try:
            size = write_preview(path, target, model.fps, model.max_side)
        except (ValueError, VideoError) as error:
            raise JobError(f"Encoding the preview of {run.video.original_name} failed: {error}") from error
        return ContentFile(target.read_bytes(), name="preview.webm"), size


def run_video(job, reporter) -> dict:
    """Analyse the run's video against its scene and replace the run's frames and segments."""
    from biovlm_web.anomalies.models import Segment, VideoRun

    run = VideoRun.objects.filter(uuid=job.params["run"], scene__project=job.project).select_related("scene").first()
    if run is None:
        raise JobError("The video run of this job was deleted.")
    if not run.scene.fitted:
        raise JobError(f"Scene {run.scene.name!r} is not fitted yet; fit it on normal videos first.")
    model = SceneModel.from_dict(run.scene.model, run.scene.name)
    with local_copy(run.video.file, run.video.original_name) as path:
        try:
            result = analyse(path, model, reporter=reporter, keep_masks=True)
        except (ValueError, VideoError) as error:
            raise JobError(f"Analysing {run.video.original_name} failed: {error}") from error
        vlm, reasoner = load_vlm(reporter) if result.segments else (None, {})
        explain_segments(result, model, vlm, path, reporter)
        reporter.report("preview", 0.0, "Encoding a browser-playable preview")
        preview = preview_file(run, path, model)
    data = result.as_dict(with_frames=True)
    rows = segment_rows(result)
    if result.segments:
        reasoner["vlm_segments"] = sum(row["path"] == "vlm" for row in rows)
        reasoner["measured_segments"] = len(rows) - reasoner["vlm_segments"]
    masks = result.masks_dict()
    if masks["missing_from_s"] is not None:
        reporter.log(f"Masks after {masks['missing_from_s']:.1f} s were dropped to keep the masks file small")
    masks_file = ContentFile(json.dumps(masks, separators=(",", ":")).encode(), name="masks.json")
    with transaction.atomic():
        run.segments.filter(origin=Segment.Origin.ANALYSIS).delete()
        Segment.objects.bulk_create([Segment(run=run, found_threshold=result.threshold, **row) for row in rows])
        run.duration_s = result.duration_s
        run.fps = model.fps
        run.threshold = result.threshold
        run.detector = result.detector
        run.frames = data["frames"]
        run.rule_hits = data["rule_hits"]
        run.timings = data["timings"]
        run.reasoner = reasoner
        for field_file in (run.preview, run.masks):
            if field_file.name:
                field_file.storage.delete(field_file.name)
        run.preview, (run.frame_width, run.frame_height) = preview
        run.masks = masks_file
        run.save()
    return {
        "run": str(run.uuid),
        "run_url": reverse("anomaly-run-detail", args=[run.uuid]),
        "video": run.video.original_name,
        "segments": len(result.segments),
    }


register_job_kind(
    JobKind(
        name=FIT_KIND,
        title="Fit anomaly scene",
        function=run_fit,
        validate=_validate_fit,
        result_template="anomalies/job_fit_result.html",
    )
)
register_job_kind(
    JobKind(
        name=RUN_KIND,
        title="Anomaly video analysis",
        function=run_video,
        validate=_validate_run,
        result_template="anomalies/job_run_result.html",
    )
)
