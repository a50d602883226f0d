"""From a video to scored, explained anomalous segments.

``observe`` decodes, detects, tracks and measures one video. ``fit_scene`` fits a
SceneModel on normal videos. ``analyse`` scores a new video against a scene and returns
frame scores and segments, each with the facts and rules that raised it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.anomaly.detect import BackgroundDetector, median_background
from analysis.anomaly.facts import FactTracker, FrameFacts
from analysis.anomaly.masks import MAX_MASK_BYTES, bound_masks, track_masks
from analysis.anomaly.rules import RuleHit, RuleMonitor, Rules
from analysis.anomaly.scene import Component, SceneModel
from analysis.anomaly.track import Tracker
from analysis.anomaly.video import probe, read_frames
from analysis.progress import NullReporter, ProgressReporter

logger = logging.getLogger(__name__)

DEFAULT_FPS = 10.0
DEFAULT_MAX_SIDE = 320
DEFAULT_GRID = (24, 32)
BACKGROUND_SAMPLES = 40  # frames per video for the median background
BACKGROUND_DETECTOR = "background subtraction"


@dataclass
class Observation:
    """Per-frame facts and rule hits from one pass over a video."""

    path: str
    duration_s: float
    frame_size: tuple[int, int]
    frames: list[FrameFacts]
    hits: list[RuleHit] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Segment:
    start_s: float
    end_s: float
    peak_score: float
    peak_s: float
    components: list[dict]  # the strongest component of each name inside the segment
    rules: list[dict]  # rule hits that overlap the segment
    track_ids: list[int]
    explanation: dict | None = None

    def as_dict(self) -> dict:
        return {
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "peak_score": round(self.peak_score, 4),
            "peak_s": round(self.peak_s, 3),
            "components": self.components,
            "rules": self.rules,
            "track_ids": self.track_ids,
            "explanation": self.explanation,
        }


@dataclass
class AnalysisResult:
    video: str
    duration_s: float
    times: np.ndarray
    scores: np.ndarray
    threshold: float
    segments: list[Segment]
    frames: list[FrameFacts]
    hits: list[RuleHit]
    timings: dict[str, float]
    detector: str
    frame_size: tuple[int, int] = (0, 0)

    def masks_dict(self, max_bytes: int = MAX_MASK_BYTES) -> dict:
        """Return the kept track masks per frame as polygons, bounded by analysis.anomaly.masks.bound_masks."""
        times = [round(float(t), 3) for t in self.times]
        return bound_masks(times, [frame.masks for frame in self.frames], self.frame_size, max_bytes)

    def as_dict(self, with_frames: bool = True) -> dict:
        data = {
            "video": self.video,
            "duration_s": round(self.duration_s, 3),
            "threshold": self.threshold,
            "detector": self.detector,
            "anomalous": bool(self.segments),
            "segments": [segment.as_dict() for segment in self.segments],
            "rule_hits": [hit.as_dict() for hit in self.hits],
            "timings": {key: round(value, 3) for key, value in self.timings.items()},
        }
        if with_frames:
            data["frames"] = [
                {
                    "time_s": round(float(t), 3),
                    "score": round(float(s), 4),
                    "tracks": [fact.as_dict() for fact in frame.tracks],
                    "appeared": frame.appeared,
                    "disappeared": frame.disappeared,
                    "jump_speed": round(frame.jump_speed, 4),
                }
                for t, s, frame in zip(self.times, self.scores, self.frames, strict=True)
            ]
        return data


def _sample_background(
    paths: list[str | Path], fps: float, max_side: int, reporter: ProgressReporter, max_seconds: float | None
) -> np.ndarray:
    samples = []
    for number, path in enumerate(paths):
        info = probe(path)
        duration = min(info.duration_s or 10.0, max_seconds or float("inf"))
        step = max(1.0 / fps, duration / BACKGROUND_SAMPLES)
        decoded = read_frames(path, fps=1.0 / step, max_side=max_side, max_seconds=max_seconds)
        samples.extend(frame.image for frame in decoded)
        reporter.report("background", (number + 1) / len(paths), Path(path).name)
    sizes = {image.shape for image in samples}
    if len(sizes) != 1:
        raise ValueError(
            f"The normal videos must share one frame size after scaling, got {sorted(sizes)}; use videos from one camera setting."
        )
    return median_background(samples)


def observe(
    path: str | Path,
    rules: Rules,
    fps: float = DEFAULT_FPS,
    max_side: int = DEFAULT_MAX_SIDE,
    background: np.ndarray | None = None,
    detector=None,
    grid: tuple[int, int] = DEFAULT_GRID,
    reporter: ProgressReporter | None = None,
    max_seconds: float | None = None,
    keep_masks: bool = False,
) -> Observation:
    """Decode, detect, track and measure ``path``, or its first ``max_seconds``; check ``rules`` on every frame.

    Without ``detector``, a BackgroundDetector is used, on ``background`` when given and
    otherwise on the median of the video's first frames. With ``keep_masks``, each frame's
    ``masks`` gets the tracked objects' masks as polygons, when the detector gives masks.
    """
    reporter = reporter or NullReporter()
    started = time.perf_counter()
    info = probe(path)
    duration = min(info.duration_s or 0.0, max_seconds or float("inf"))
    if detector is None:
        detector = BackgroundDetector(background)
    tracker = Tracker(fps)
    monitor = RuleMonitor(rules)
    frames: list[FrameFacts] = []
    hits: list[RuleHit] = []
    fact_tracker = None

    decoded = read_frames(path, fps=fps, max_side=max_side, max_seconds=max_seconds)
    pending = []
    if isinstance(detector, BackgroundDetector) and detector.background is None:
        for frame in decoded:
            pending.append(frame)
            if len(pending) >= detector.warmup:
                break
        if not pending:
            raise ValueError(f"{Path(path).name}: no frames to learn a background from.")
        detector.prime([frame.image for frame in pending])

    def all_frames():
        yield from pending
        yield from decoded

    last_report = 0.0
    for frame in all_frames():
        height, width = frame.image.shape[:2]
        if fact_tracker is None:
            fact_tracker = FactTracker(width, height, rules, grid)
        detections = detector.detect_one(frame.image)
        tracked = tracker.update(detections)
        facts = fact_tracker.update(frame.index, frame.time_s, tracked, detections, detector.last_foreground)
        if keep_masks:
            facts.masks = track_masks(tracked, detections)
        frames.append(facts)
        hits.extend(monitor.update(frame.time_s, facts.tracks, facts.jump_speed))
        if duration and frame.time_s - last_report >= 1.0:
            last_report = frame.time_s
            reporter.report("track", frame.time_s / duration, f"{Path(path).name} at {frame.time_s:.1f} s")
    if fact_tracker is None:
        raise ValueError(f"{Path(path).name}: no frames were decoded.")
    size = (fact_tracker.width, fact_tracker.height)
    return Observation(
        str(path),
        max(duration, frames[-1].time_s if frames else 0.0),
        size,
        frames,
        hits,
        time.perf_counter() - started,
    )


def fit_scene(
    paths: list[str | Path],
    rules: Rules | None = None,
    fps: float = DEFAULT_FPS,
    max_side: int = DEFAULT_MAX_SIDE,
    grid: tuple[int, int] = DEFAULT_GRID,
    reporter: ProgressReporter | None = None,
    max_seconds: float | None = None,
    detector=None,
    detector_name: str = BACKGROUND_DETECTOR,
) -> SceneModel:
    """Fit a SceneModel on normal videos of one camera view, or on the first ``max_seconds`` of each.

    ``detector`` (a ModelDetector) replaces background subtraction; score new videos with the
    same detector, because the normal ranges of track facts depend on what it finds.
    """
    reporter = reporter or NullReporter()
    rules = rules or Rules()
    if not paths:
        raise ValueError("Fitting a scene needs at least one normal video.")
    background = _sample_background(paths, fps, max_side, reporter, max_seconds)
    observations = []
    for number, path in enumerate(paths):
        observation = observe(path, rules, fps, max_side, background, detector, grid, max_seconds=max_seconds)
        observations.append(observation)
        reporter.report("fit", (number + 1) / len(paths), Path(path).name)
    scene = SceneModel.fit(observations, background, rules, fps, max_side, grid)
    scene.detector = detector_name
    return scene


def frame_scores(scene: SceneModel, observation: Observation) -> tuple[np.ndarray, np.ndarray, list[list[Component]]]:
    """Score every frame: the largest scene-model component, raised to 1 where a rule hit covers it."""
    times = np.array([frame.time_s for frame in observation.frames], dtype=np.float64)
    components = [scene.score_frame(frame) for frame in observation.frames]
    scores = np.array([items[0].score if items else 0.0 for items in components], dtype=np.float64)
    half_frame = 0.5 / scene.fps
    for hit in observation.hits:
        covered = (times >= hit.start_s - half_frame) & (times <= hit.end_s + half_frame)
        scores[covered] = 1.0
    # A median over three frames removes single-frame flashes of noise but keeps edges.
    if len(scores) >= 3:
        padded = np.concatenate([scores[:1], scores, scores[-1:]])
        scores = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return times, scores, components


def find_segments(
    times: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    frame_s: float,
    merge_gap_s: float = 1.0,
    min_length_s: float = 0.5,
) -> list[tuple[int, int]]:
    """Return (first, last) frame indices of runs above ``threshold``, merged across short gaps."""
    runs: list[list[int]] = []
    for index, above in enumerate(scores >= threshold):
        if not above:
            continue
        if runs and times[index] - times[runs[-1][1]] <= merge_gap_s + frame_s:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return [(first, last) for first, last in runs if times[last] - times[first] + frame_s >= min_length_s]


def _segment(first: int, last: int, times, scores, components, hits: list[RuleHit], frame_s: float) -> Segment:
    start, end = float(times[first]), float(times[last]) + frame_s
    peak = first + int(np.argmax(scores[first : last + 1]))
    strongest: dict[str, Component] = {}
    track_ids = set()
    for items in components[first : last + 1]:
        for item in items:
            if item.score >= 0.3 and (item.name not in strongest or item.score > strongest[item.name].score):
                strongest[item.name] = item
            if item.track_id is not None and item.score >= 0.3:
                track_ids.add(item.track_id)
    overlapping = {}
    for hit in hits:
        if hit.end_s >= start - frame_s and hit.start_s <= end:
            key = (hit.rule, hit.track_id)
            if key not in overlapping or hit.end_s - hit.start_s > overlapping[key].end_s - overlapping[key].start_s:
                overlapping[key] = hit
            if hit.track_id is not None:
                track_ids.add(hit.track_id)
    ranked = sorted(strongest.values(), key=lambda item: item.score, reverse=True)
    return Segment(
        start,
        end,
        float(scores[peak]),
        float(times[peak]),
        [item.as_dict() for item in ranked],
        [hit.as_dict() for hit in overlapping.values()],
        sorted(track_ids),
    )


def analyse(
    path: str | Path,
    scene: SceneModel,
    detector=None,
    detector_name: str = BACKGROUND_DETECTOR,
    threshold: float | None = None,
    merge_gap_s: float = 1.0,
    min_length_s: float = 0.5,
    reporter: ProgressReporter | None = None,
    max_seconds: float | None = None,
    keep_masks: bool = False,
) -> AnalysisResult:
    """Score ``path``, or its first ``max_seconds``, against ``scene``; return frame scores and segments.

    With ``keep_masks``, the result keeps the tracked objects' masks for ``masks_dict``.
    """
    reporter = reporter or NullReporter()
    threshold = scene.threshold if threshold is None else threshold
    started = time.perf_counter()

    if detector is None:
        detector = BackgroundDetector(scene.background)
    observation = observe(
        path,
        scene.rules,
        scene.fps,
        scene.max_side,
        scene.background,
        detector,
        scene.grid,
        reporter,
        max_seconds,
        keep_masks=keep_masks,
    )
    if detector_name != scene.detector:
        logger.warning(
            "%s is scored with %s, but the scene was fitted with %s; track facts may not compare.",
            Path(path).name,
            detector_name,
            scene.detector,
        )
    if observation.frame_size != scene.frame_size:
        logger.warning(
            "%s is analysed at %s but the scene was fitted at %s; the background was rescaled.",
            Path(path).name,
            observation.frame_size,
            scene.frame_size,
        )
    observed = time.perf_counter()

    times, scores, components = frame_scores(scene, observation)
    frame_s = 1.0 / scene.fps
    segments = [
        _segment(first, last, times, scores, components, observation.hits, frame_s)
        for first, last in find_segments(times, scores, threshold, frame_s, merge_gap_s, min_length_s)
    ]
    reporter.report("score", 1.0, f"{len(segments)} segment(s)")

    timings = {"observe_s": observed - started, "score_s": time.perf_counter() - observed}
    return AnalysisResult(
        str(path),
        observation.duration_s,
        times,
        scores,
        threshold,
        segments,
        observation.frames,
        observation.hits,
        timings,
        detector_name,
        observation.frame_size,
    )
