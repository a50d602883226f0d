"""Anomaly detection metrics, and the UCF-Crime and JSON formats of temporal annotations.

Frame level: ROC-AUC (the Mann-Whitney statistic, ties counted half) and average precision
(the step-wise area under the precision-recall curve, as scikit-learn computes it).
Video level: a video is predicted anomalous when it has at least one segment.
Segment level: temporal IoU of [start, end) intervals; mIoU is the mean over true segments
of the best IoU with any predicted segment of the same video, and recall at IoU t is the
share of true segments whose best IoU reaches t.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def roc_auc(labels, scores) -> float:
    """Return the area under the ROC curve; raise ValueError when only one class is present."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both anomalous and normal frames.")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1  # the average rank of a tie group
        start = end + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(labels, scores) -> float:
    """Return average precision: the sum over thresholds of (recall step) times precision."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(labels.sum())
    if positives == 0:
        raise ValueError("Average precision needs at least one anomalous frame.")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # One point per distinct score, so tied frames enter together.
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_group]
    precision = true_positives / (last_of_group + 1)
    recall = true_positives / positives
    steps = np.diff(np.r_[0.0, recall])
    return float((steps * precision).sum())


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    intersection = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0]) if intersection > 0 else (a[1] - a[0]) + (b[1] - b[0])
    return intersection / union if union > 0 else 0.0


def frame_labels(times, segments: list[tuple[float, float]]) -> np.ndarray:
    """Label each frame time 1 when it falls inside any [start, end) segment."""
    times = np.asarray(times, dtype=np.float64)
    labels = np.zeros(len(times), dtype=bool)
    for start, end in segments:
        labels |= (times >= start) & (times < end)
    return labels


@dataclass
class VideoAnnotation:
    """The anomalous segments of one video, in seconds; ``categories`` runs parallel to ``segments``."""

    video: str
    segments: list[tuple[float, float]] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    duration_s: float | None = None


def segment_metrics(truth: list[VideoAnnotation], predicted: list[VideoAnnotation], thresholds=(0.3, 0.5)) -> dict:
    """Return mIoU and recall at each IoU threshold over every true segment."""
    by_video = {item.video: item for item in predicted}
    best = []
    for video in truth:
        guesses = by_video.get(video.video, VideoAnnotation(video.video)).segments
        for segment in video.segments:
            best.append(max((temporal_iou(segment, guess) for guess in guesses), default=0.0))
    result = {"true_segments": len(best), "miou": float(np.mean(best)) if best else float("nan")}
    for threshold in thresholds:
        result[f"recall@{threshold}"] = float(np.mean([iou >= threshold for iou in best])) if best else float("nan")
    return result


def video_metrics(truth: list[VideoAnnotation], predicted: list[VideoAnnotation]) -> dict:
    """Return accuracy, precision, recall and F1 of the anomalous-or-not call per video."""
    by_video = {item.video: item for item in predicted}
    tp = fp = fn = tn = 0
    for video in truth:
        actual = bool(video.segments)
        guess = bool(by_video.get(video.video, VideoAnnotation(video.video)).segments)
        tp += actual and guess
        fp += guess and not actual
        fn += actual and not guess
        tn += not actual and not guess
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = tp + fp + fn + tn
    return {
        "videos": total,
        "accuracy": (tp + tn) / total if total else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


# Formats -------------------------------------------------------------------------------


def read_ucf_crime(path: str | Path, fps: float) -> list[VideoAnnotation]:
    """Read UCF-Crime temporal annotations: ``name class start1 end1 start2 end2`` in frames, -1 for none.

    Frame numbers become seconds with ``fps``; the end frame is included, so it maps to (end + 1) / fps.
    """
    path = Path(path)
    videos = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise ValueError(
                f"{path.name}:{number}: expected 6 fields (name, class, 2 start/end frame pairs), got {len(parts)}."
            )
        name, category, *numbers = parts
        try:
            frames = [int(value) for value in numbers]
        except ValueError as error:
            raise ValueError(f"{path.name}:{number}: frame numbers must be whole numbers: {line!r}.") from error
        segments, categories = [], []
        for start, end in (frames[0:2], frames[2:4]):
            if start < 0 or end < 0:
                continue
            if end < start:
                raise ValueError(f"{path.name}:{number}: segment ends (frame {end}) before it starts (frame {start}).")
            segments.append((start / fps, (end + 1) / fps))
            categories.append(category)
        videos.append(VideoAnnotation(name, segments, categories))
    return videos


def write_ucf_crime(path: str | Path, videos: list[VideoAnnotation], fps: float) -> None:
    """Write UCF-Crime temporal annotations; the format holds at most two segments per video."""
    lines = []
    for video in videos:
        if len(video.segments) > 2:
            raise ValueError(f"{video.video} has {len(video.segments)} segments; the UCF-Crime format holds at most 2.")
        category = video.categories[0] if video.categories else ("Normal" if not video.segments else "Anomaly")
        frames = []
        for start, end in video.segments:
            frames += [int(round(start * fps)), max(int(round(start * fps)), int(round(end * fps)) - 1)]
        frames += [-1] * (4 - len(frames))
        lines.append("  ".join([video.video, category.replace(" ", "_"), *map(str, frames)]))
    Path(path).write_text("\n".join(lines) + "\n")


def read_json_annotations(path: str | Path) -> list[VideoAnnotation]:
    """Read ``{"videos": [{"video", "duration_s", "segments": [{"start_s", "end_s", "category"}]}]}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name}: not valid JSON ({error}).") from error
    videos = []
    for index, item in enumerate(data.get("videos", [])):
        try:
            segments = [(float(s["start_s"]), float(s["end_s"])) for s in item.get("segments", [])]
            categories = [str(s.get("category", "other")) for s in item.get("segments", [])]
            videos.append(VideoAnnotation(str(item["video"]), segments, categories, item.get("duration_s")))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path.name}: videos[{index}] is invalid ({error}); each needs video and segments with start_s and end_s."
            ) from error
    return videos


def write_json_annotations(path: str | Path, videos: list[VideoAnnotation]) -> None:
    data = {
        "videos": [
            {
                "video": video.video,
                "duration_s": video.duration_s,
                "segments": [
                    {"start_s": round(start, 3), "end_s": round(end, 3), "category": category}
                    for (start, end), category in zip(
                        video.segments, video.categories or ["other"] * len(video.segments), strict=True
                    )
                ],
            }
            for video in videos
        ]
    }
    Path(path).write_text(json.dumps(data, indent=2))
