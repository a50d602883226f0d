"""Benchmark lab video anomaly detection on synthetic videos against a frame-difference baseline.

Writes (or reuses) a synthetic set: ``--fit`` normal videos to fit the scene, ``--normal``
unseen normal videos, and ``--per-kind`` videos of each anomaly kind, at 640x480 and 30 frames
per second. Then, in one process, it runs

- the weight-free pipeline: background subtraction, ByteTrack, track facts, the scene model
  fitted on the normal videos, and the simulated bench's rules (``lab_rules``);
- a baseline: the mean absolute grey-level difference between consecutive sampled frames,
  divided by its 99th percentile on the fitting videos, flagged above 1.

Both sample frames at the same rate and size. For each anomaly kind (its videos plus the unseen
normal videos) and overall, it prints frame ROC-AUC, frame F1 at each method's threshold,
segment mIoU and recall at IoU 0.5, then video-level accuracy and F1, seconds per sampled
frame, the speed as a multiple of real time, and peak RSS with its growth during each
method's run. Run it as
``.venv/bin/python bench/anomaly.py [--folder DIR] [--per-kind N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_rss import PeakRss  # noqa: E402

from analysis.anomaly.metrics import (  # noqa: E402
    VideoAnnotation,
    frame_labels,
    roc_auc,
    segment_metrics,
    video_metrics,
)
from analysis.anomaly.pipeline import analyse, find_segments, fit_scene  # noqa: E402
from analysis.anomaly.simulate import ANOMALY_KINDS, GroundTruth, lab_rules, simulate_video  # noqa: E402
from analysis.anomaly.video import probe, read_frames  # noqa: E402


def make_set(
    folder: Path, fit: int, normal: int, per_kind: int, duration: float, fps: float, size: tuple[int, int]
) -> dict:
    """Write the videos that are missing and return {"fit": [...], "test": [...]} of (path, truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = [("fit", f"fit_{i:02d}", None, 5000 + i) for i in range(fit)]
    plan += [("test", f"normal_{i:02d}", None, 6000 + i) for i in range(normal)]
    plan += [
        ("test", f"{kind}_{i:02d}", kind, 100 * k + i) for k, kind in enumerate(ANOMALY_KINDS) for i in range(per_kind)
    ]
    videos: dict[str, list] = {"fit": [], "test": []}
    started = time.perf_counter()
    for group, name, kind, seed in plan:
        path = folder / f"{name}.mp4"
        truth_path = path.with_suffix(".json")
        if truth_path.exists():
            truth = GroundTruth.from_dict(json.loads(truth_path.read_text()))
        else:
            # H.264, as phones record, so decoding costs what it would on real footage.
            truth = simulate_video(path, kind, seed, duration_s=duration, fps=fps, size=size, codec="libx264")
        videos[group].append((path, truth, kind or "normal"))
    print(f"Videos: {len(plan)} in {folder} ({time.perf_counter() - started:.0f} s to write the missing ones)")
    return videos


def frame_difference(path: Path, fps: float, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sample times and the mean absolute grey-level change from the previous sampled frame."""
    times, values = [], []
    previous = None
    for frame in read_frames(path, fps=fps, max_side=max_side):
        gray = frame.image.astype(np.float32).mean(axis=2)
        values.append(0.0 if previous is None else float(np.abs(gray - previous).mean()))
        previous = gray
        times.append(frame.time_s)
    return np.asarray(times), np.asarray(values)


def f1_score(labels: np.ndarray, flagged: np.ndarray) -> float:
    tp = int((labels & flagged).sum())
    fp = int((~labels & flagged).sum())
    fn = int((labels & ~flagged).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def summarise(rows: list[dict], kinds: list[str]) -> list[tuple]:
    """Return (group, AUC, F1, mIoU, R@0.5) per anomaly kind, each with the unseen normal videos, and overall."""
    table = []
    for kind in [*kinds, "overall"]:
        chosen = [row for row in rows if row["kind"] in (kind, "normal") or kind == "overall"]
        labels = np.concatenate([row["labels"] for row in chosen])
        scores = np.concatenate([row["scores"] for row in chosen])
        flagged = np.concatenate([row["flagged"] for row in chosen])
        truth = [row["truth"] for row in chosen if row["kind"] != "normal"]
        predicted = [row["predicted"] for row in chosen]
        segments = segment_metrics(truth, predicted, thresholds=(0.5,))
        table.append(
            (kind, roc_auc(labels, scores), f1_score(labels, flagged), segments["miou"], segments["recall@0.5"])
        )
    return table


def evaluate_rows(results: list[tuple], threshold: float, fps: float) -> list[dict]:
    rows = []
    for path, truth, kind, times, scores, segments in results:
        spans = [(anomaly.start_s, anomaly.end_s) for anomaly in truth.anomalies]
        if segments is None:
            segments = [
                (float(times[a]), float(times[b]) + 1 / fps)
                for a, b in find_segments(times, scores, threshold, 1 / fps)
            ]
        rows.append(
            {
                "kind": kind,
                "labels": frame_labels(times, spans),
                "scores": scores,
                "flagged": scores >= threshold,
                "truth": VideoAnnotation(path.name, spans),
                "predicted": VideoAnnotation(path.name, segments),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="Folder for the synthetic videos; reused when it contains them.")
    parser.add_argument("--fit", type=int, default=4, help="Normal videos to fit the scene on (default 4).")
    parser.add_argument("--normal", type=int, default=2, help="Unseen normal test videos (default 2).")
    parser.add_argument("--per-kind", type=int, default=2, help="Test videos per anomaly kind (default 2).")
    parser.add_argument("--duration", type=float, default=14.0, help="Seconds per video (default 14).")
    parser.add_argument("--analysis-fps", type=float, default=10.0, help="Frames per second analysed (default 10).")
    parser.add_argument("--max-side", type=int, default=320, help="Longer side analysed, in pixels (default 320).")
    args = parser.parse_args()

    folder = args.folder or Path(tempfile.mkdtemp(prefix="anomaly-bench-"))
    videos = make_set(folder, args.fit, args.normal, args.per_kind, args.duration, 30.0, (640, 480))
    video_seconds = sum(truth.duration_s for _, truth, _ in videos["test"])
    info = probe(videos["test"][0][0])
    print(
        f"Test videos: {len(videos['test'])}, {video_seconds:.0f} s at {info.width}x{info.height}, {info.average_fps:.0f} fps; analysed at {args.analysis_fps:g} fps, longer side {args.max_side} px"
    )

    started = time.perf_counter()
    scene = fit_scene(
        [path for path, _, _ in videos["fit"]], lab_rules(), fps=args.analysis_fps, max_side=args.max_side
    )
    fit_seconds = time.perf_counter() - started

    pipeline_results, frames = [], 0
    with PeakRss() as pipeline_rss:
        started = time.perf_counter()
        for path, truth, kind in videos["test"]:
            result = analyse(path, scene)
            frames += len(result.times)
            segments = [(segment.start_s, segment.end_s) for segment in result.segments]
            pipeline_results.append((path, truth, kind, result.times, result.scores, segments))
        pipeline_seconds = time.perf_counter() - started

    # The baseline's scale comes from the fitting videos, like the scene model, and is not timed.
    reference = np.concatenate(
        [frame_difference(path, args.analysis_fps, args.max_side)[1][1:] for path, _, _ in videos["fit"]]
    )
    scale = max(float(np.quantile(reference, 0.99)), 1e-6)
    with PeakRss() as baseline_rss:
        started = time.perf_counter()
        baseline_results = []
        for path, truth, kind in videos["test"]:
            times, values = frame_difference(path, args.analysis_fps, args.max_side)
            baseline_results.append((path, truth, kind, times, values / scale, None))
        baseline_seconds = time.perf_counter() - started

    kinds = list(ANOMALY_KINDS)
    pipeline_rows = evaluate_rows(pipeline_results, scene.threshold, args.analysis_fps)
    baseline_rows = evaluate_rows(baseline_results, 1.0, args.analysis_fps)
    print(f"Scene fitted on {len(videos['fit'])} normal videos ({scene.frame_count} frames) in {fit_seconds:.1f} s")
    print()
    print(
        f"{'group':18}  {'pipeline AUC':>12} {'F1':>6} {'mIoU':>6} {'R@0.5':>6}   {'baseline AUC':>12} {'F1':>6} {'mIoU':>6} {'R@0.5':>6}"
    )
    for ours, theirs in zip(summarise(pipeline_rows, kinds), summarise(baseline_rows, kinds), strict=True):
        print(
            f"{ours[0]:18}  {ours[1]:12.3f} {ours[2]:6.3f} {ours[3]:6.3f} {ours[4]:6.3f}   {theirs[1]:12.3f} {theirs[2]:6.3f} {theirs[3]:6.3f} {theirs[4]:6.3f}"
        )
    print()
    for name, rows, seconds, rss in (
        ("pipeline", pipeline_rows, pipeline_seconds, pipeline_rss),
        ("baseline", baseline_rows, baseline_seconds, baseline_rss),
    ):
        per_video = video_metrics([row["truth"] for row in rows], [row["predicted"] for row in rows])
        print(
            f"{name:9} video accuracy {per_video['accuracy']:.3f}  F1 {per_video['f1']:.3f}  "
            f"{seconds / frames * 1000:6.1f} ms per sampled frame  {video_seconds / seconds:5.1f}x real time  "
            f"peak RSS {rss.peak_bytes / 2**20:.0f} MiB (+{(rss.peak_bytes - rss.start_bytes) / 2**20:.0f} MiB during the run)"
        )


if __name__ == "__main__":
    main()
