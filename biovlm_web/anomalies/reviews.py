"""Reviewed annotations from reviewers' verdicts, their exports, and metrics of flagged against reviewed."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from analysis.anomaly.metrics import VideoAnnotation, segment_metrics, video_metrics, write_ucf_crime
from analysis.anomaly.reason import describe_rule_hit


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
    """Return the segments the analysis flagged at the run's threshold, without reviewer-added ones."""
    segments = list(run.segments.filter(origin="analysis"))
    return VideoAnnotation(
        run.video.original_name,
        [(item.start_s, item.end_s) for item in segments],
        [item.category for item in segments],
        run.duration_s,
    )


def export_json(runs) -> dict:
    """Return the reviewed annotations of ``runs`` in the layout analysis.anomaly.metrics reads.

    Each segment carries its category id, which the metrics read, and the category's label as
    the review page shows it.
    """
    from analysis.anomaly.categories import CATEGORIES

    videos = []
    for run in runs:
        annotation = reviewed_annotation(run)
        videos.append(
            {
                "video": annotation.video,
                "duration_s": annotation.duration_s,
                "segments": [
                    {
                        "start_s": round(start, 3),
                        "end_s": round(end, 3),
                        "category": category,
                        "category_label": CATEGORIES.get(category, category),
                    }
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


def span_facts(run, start_s: float, end_s: float) -> dict:
    """Measure a span of a run from its stored frames and rule hits: peak score, tracks and rules."""
    inside = [frame for frame in run.frames if start_s <= frame["time_s"] < end_s]
    if not inside:
        raise ValueError(f"No analysed frame lies between {start_s:.3f} s and {end_s:.3f} s; choose a longer span.")
    peak = max(inside, key=lambda frame: frame["score"])
    track_ids = sorted({track["track_id"] for frame in inside for track in frame["tracks"]})
    frame_s = 1.0 / run.fps if run.fps else 0.0
    rules = [hit for hit in run.rule_hits if hit["end_s"] >= start_s - frame_s and hit["start_s"] <= end_s]
    return {"peak_score": peak["score"], "peak_s": peak["time_s"], "track_ids": track_ids, "rules": rules}


def reviewed_segment_reasoning(facts: dict, start_s: float, end_s: float, threshold: float) -> str:
    """Describe a reviewer-added segment from its measured scores, tracks and rule hits."""
    lines = [
        f"Found on the timeline at threshold {threshold:.2f}: frames from {start_s:.1f} s to {end_s:.1f} s "
        f"scored up to {facts['peak_score']:.2f}, at {facts['peak_s']:.1f} s."
    ]
    if facts["track_ids"]:
        lines.append("Tracks seen: " + ", ".join(f"#{track_id}" for track_id in facts["track_ids"]) + ".")
    rule_lines = [describe_rule_hit(hit["rule"], hit.get("message", "")) for hit in facts["rules"]]
    # A rule fires again each time a track re-enters its condition; list each distinct message once.
    lines.extend(dict.fromkeys(rule_lines))
    return "\n".join(lines)


def add_reviewed_segment(run, start_s: float, end_s: float, threshold: float, category: str, note: str, user):
    """Store a segment a reviewer confirmed at ``threshold`` with its confirm verdict; return the segment.

    The caller checks that the span lies within the video. Raises ValueError when the span
    contains no analysed frame or is already stored as a segment of the run.
    """
    from django.db import transaction

    from analysis.anomaly.categories import CATEGORIES
    from biovlm_web.anomalies.models import Segment, Verdict

    same = run.segments.filter(
        start_s__range=(start_s - 1e-3, start_s + 1e-3), end_s__range=(end_s - 1e-3, end_s + 1e-3)
    )
    existing = same.first()
    if existing is not None:
        raise ValueError(
            f"The span {start_s:.3f}-{end_s:.3f} s is already stored as segment {existing.uuid}; give it a verdict instead."
        )
    facts = span_facts(run, start_s, end_s)
    with transaction.atomic():
        segment = Segment.objects.create(
            run=run,
            start_s=start_s,
            end_s=end_s,
            peak_score=facts["peak_score"],
            peak_s=facts["peak_s"],
            category=category,
            category_label=CATEGORIES[category],
            facts={"components": [], "track_ids": facts["track_ids"]},
            rules=facts["rules"],
            reasoning=reviewed_segment_reasoning(facts, start_s, end_s, threshold),
            path=Segment.Path.MEASURED,
            origin=Segment.Origin.REVIEWER,
            found_threshold=threshold,
            created_by=user,
        )
        Verdict.objects.create(
            segment=segment,
            decision=Verdict.Decision.CONFIRM,
            category=category,
            start_s=start_s,
            end_s=end_s,
            note=note,
            user=user,
        )
    return segment
