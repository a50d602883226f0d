"""Reviewed annotations from reviewers' verdicts, their exports, and metrics of flagged against reviewed."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from analysis.anomaly.metrics import VideoAnnotation, segment_metrics, video_metrics, write_ucf_crime


def latest_verdicts(segments) -> dict[int, object]:
    """Return the newest verdict of each segment that has one, keyed by segment id."""
    from biovlm_web.anomalies.models import Verdict

    newest = {}
    for verdict in Verdict.objects.filter(segment__in=segments).select_related("user").order_by("created_at", "id"):
        newest[verdict.segment_id] = verdict
    return newest


def run_review(run) -> dict:
    """Summarise one run's review: the kept segments, and how many segments are still unreviewed."""
    segments = list(run.segments.all())
    verdicts = latest_verdicts(segments)
    kept = []
    for segment in segments:
        verdict = verdicts.get(segment.id)
        if verdict is None or verdict.decision == "reject":
            continue
        kept.append({"start_s": verdict.start_s, "end_s": verdict.end_s, "category": verdict.category})
    return {
        "segments": kept,
        "reviewed": len(verdicts),
        "unreviewed": len(segments) - len(verdicts),
        "complete": bool(segments) and len(verdicts) == len(segments),
    }


def reviewed_annotation(run) -> VideoAnnotation:
    review = run_review(run)
    return VideoAnnotation(
        run.video.original_name,
        [(item["start_s"], item["end_s"]) for item in review["segments"]],
        [item["category"] for item in review["segments"]],
        run.duration_s,
    )


def flagged_annotation(run) -> VideoAnnotation:
    segments = list(run.segments.all())
    return VideoAnnotation(
        run.video.original_name,
        [(item.start_s, item.end_s) for item in segments],
        [item.category for item in segments],
        run.duration_s,
    )


def export_json(runs) -> dict:
    """Return the reviewed annotations of ``runs`` in the layout analysis.anomaly.metrics reads."""
    videos = []
    for run in runs:
        annotation = reviewed_annotation(run)
        videos.append(
            {
                "video": annotation.video,
                "duration_s": annotation.duration_s,
                "segments": [
                    {"start_s": round(start, 3), "end_s": round(end, 3), "category": category}
                    for (start, end), category in zip(annotation.segments, annotation.categories, strict=True)
                ],
            }
        )
    return {"videos": videos}


def export_ucf_crime(runs) -> str:
    """Return the reviewed annotations of ``runs`` as UCF-Crime temporal annotation lines.

    Raises ValueError when a video keeps more than the two segments the format holds.
    """
    runs = list(runs)
    fps = {run.fps for run in runs if run.fps}
    if len(fps) > 1:
        raise ValueError(f"The runs were analysed at different frame rates ({sorted(fps)}); export them one by one.")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "annotations.txt"
        write_ucf_crime(path, [reviewed_annotation(run) for run in runs], fps.pop() if fps else 10.0)
        return path.read_text()


def scene_metrics(scene) -> dict:
    """Compare the flagged segments of every fully reviewed run of ``scene`` with the reviewed ones."""
    runs = [run for run in scene.runs.select_related("video") if run_review(run)["complete"]]
    if not runs:
        return {"reviewed_videos": 0}
    truth = [reviewed_annotation(run) for run in runs]
    predicted = [flagged_annotation(run) for run in runs]
    return {
        "reviewed_videos": len(runs),
        "videos": _finite(video_metrics(truth, predicted)),
        "segments": _finite(segment_metrics(truth, predicted)),
    }


def _finite(values: dict) -> dict:
    """Replace NaN (a metric with nothing to average) by None, which JSON can carry."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in values.items()}
