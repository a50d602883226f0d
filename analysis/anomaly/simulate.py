"""Synthetic lab-bench videos with anomalies inserted at known times.

A scene has a tube rack, a work mat, a storage box and a restricted zone drawn on a bench.
A hand with a pipette runs a routine (rack, then work mat, then storage, then back to the
rack) while the lighting flickers and the camera shakes slightly. One anomaly can be
inserted per video: a dropped tube, a spreading spill, a tube left in the wrong place, a
bottle left in the restricted zone, erratic fast motion, or a skipped protocol step. Each
video is written as MP4 (MPEG-4 Part 2, or H.264 on request) with a JSON ground-truth file beside it. Everything is drawn
from a seeded NumPy generator, so a seed always gives the same video.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from analysis.anomaly.rules import Rules, Step, Zone

# Zones as (x1, y1, x2, y2) in fractions of the frame width and height.
ZONE_BOXES = {
    "rack": (0.06, 0.08, 0.32, 0.40),
    "work": (0.38, 0.46, 0.66, 0.84),
    "storage": (0.72, 0.08, 0.95, 0.38),
    "restricted": (0.74, 0.60, 0.96, 0.93),
}
WAYPOINTS = {"rack": (0.19, 0.24), "work": (0.52, 0.65), "storage": (0.835, 0.23)}
ROUTINE = ("rack", "work", "storage")
DWELL_S = {"rack": 0.6, "work": 1.0, "storage": 0.6}
MOVE_S = 1.0
ANOMALY_KINDS = ("dropped_tube", "spill", "wrong_zone", "restricted_zone", "fast_motion", "skipped_step")
KIND_CATEGORIES = {
    "dropped_tube": "dropped_object",
    "spill": "spill",
    "wrong_zone": "wrong_placement",
    "restricted_zone": "restricted_zone",
    "fast_motion": "fast_handling",
    "skipped_step": "protocol_step",
}
BENCH_RGB = (188, 190, 184)


@dataclass
class TrueAnomaly:
    kind: str
    category: str
    start_s: float
    end_s: float


@dataclass
class GroundTruth:
    video: str
    duration_s: float
    fps: float
    width: int
    height: int
    seed: int
    anomalies: list[TrueAnomaly] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GroundTruth:
        anomalies = [TrueAnomaly(**item) for item in data.get("anomalies", [])]
        return cls(**{**data, "anomalies": anomalies})


@dataclass
class Keyframe:
    time_s: float
    position: tuple[float, float]


def lab_rules() -> Rules:
    """Return the zones, limits and protocol a user would set for the simulated bench."""
    kinds = {"rack": "storage", "work": "work", "storage": "storage", "restricted": "restricted"}
    zones = [
        Zone(name, kinds[name], [(x1, y1), (x2, y1), (x2, y2), (x1, y2)])
        for name, (x1, y1, x2, y2) in ZONE_BOXES.items()
    ]
    protocol = [Step("pick up", "rack", "work"), Step("dispense", "work", "storage"), Step("return", "storage", "rack")]
    return Rules(
        zones=zones,
        max_speed=1.8,
        max_unattended_s=2.5,
        spill_min_area=0.004,
        spill_min_static_s=2.0,
        protocol=protocol,
    )


class _HandPath:
    """The hand's keyframes, interpolated with smoothstep easing between them."""

    def __init__(self) -> None:
        self.keyframes: list[Keyframe] = []

    def add(self, time_s: float, position: tuple[float, float]) -> None:
        self.keyframes.append(Keyframe(time_s, position))

    @property
    def end_s(self) -> float:
        return self.keyframes[-1].time_s if self.keyframes else 0.0

    @property
    def last(self) -> tuple[float, float]:
        return self.keyframes[-1].position

    def move(self, target: tuple[float, float], move_s: float, dwell_s: float) -> tuple[float, float]:
        """Move to ``target`` over ``move_s`` and stay ``dwell_s``; return (arrival, departure) times."""
        arrival = self.end_s + move_s
        self.add(arrival, target)
        self.add(arrival + dwell_s, target)
        return arrival, arrival + dwell_s

    def position(self, time_s: float) -> tuple[float, float]:
        frames = self.keyframes
        if time_s <= frames[0].time_s:
            return frames[0].position
        for before, after in zip(frames, frames[1:], strict=False):
            if before.time_s <= time_s <= after.time_s:
                span = after.time_s - before.time_s
                u = 0.0 if span <= 0 else (time_s - before.time_s) / span
                u = u * u * (3 - 2 * u)
                return (
                    before.position[0] + (after.position[0] - before.position[0]) * u,
                    before.position[1] + (after.position[1] - before.position[1]) * u,
                )
        return frames[-1].position


@dataclass
class _PlacedObject:
    """A rectangle object (tube or bottle) on the bench from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    position: tuple[float, float]
    size: tuple[float, float]  # width, height in frame fractions
    body_rgb: tuple[int, int, int]
    cap_rgb: tuple[int, int, int]
    fall_from: tuple[float, float] | None = None  # a dropped tube falls from here before lying down

    def state(self, time_s: float) -> tuple[tuple[float, float], tuple[float, float]] | None:
        if not self.start_s <= time_s < self.end_s:
            return None
        if self.fall_from is None:
            return self.position, self.size
        gravity = 2.4  # frame heights per second squared
        elapsed = time_s - self.start_s
        y = self.fall_from[1] + 0.5 * gravity * elapsed**2
        if y < self.position[1]:
            return (self.fall_from[0], y), self.size
        return self.position, (self.size[1], self.size[0])  # lying on its side


@dataclass
class _Spill:
    start_s: float
    end_s: float
    center: tuple[float, float]
    max_radius: float
    growth_s: float

    def radius(self, time_s: float) -> float | None:
        if not self.start_s <= time_s < self.end_s:
            return None
        fraction = min(1.0, (time_s - self.start_s) / self.growth_s)
        return self.max_radius * (0.3 + 0.7 * math.sqrt(fraction))


class LabScene:
    """One simulated video: the hand's path, the objects, and the true anomaly if any."""

    def __init__(self, duration_s: float, anomaly: str | None, seed: int) -> None:
        if anomaly is not None and anomaly not in ANOMALY_KINDS:
            raise ValueError(f"Unknown anomaly kind {anomaly!r}; kinds are {', '.join(ANOMALY_KINDS)}.")
        self.duration_s = duration_s
        self.rng = np.random.default_rng(seed)
        self.path = _HandPath()
        self.objects: list[_PlacedObject] = []
        self.spills: list[_Spill] = []
        self.erratic: tuple[float, float] | None = None
        self.truth: list[TrueAnomaly] = []
        self._plan(anomaly)

    def _jitter(self, point: tuple[float, float], amount: float = 0.015) -> tuple[float, float]:
        dx, dy = self.rng.uniform(-amount, amount, 2)
        return point[0] + dx, point[1] + dy

    def _timing(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.9, 1.1)

    def _plan(self, anomaly: str | None) -> None:
        self.path.add(0.0, self._jitter(WAYPOINTS["rack"]))
        self.path.add(self._timing(DWELL_S["rack"]), self.path.last)
        # The anomaly starts when the hand leaves the rack in the second cycle, or later for long videos.
        anomaly_cycle = 1
        cycle = 0
        while self.path.end_s < self.duration_s + 2.0:
            if anomaly is not None and cycle == anomaly_cycle:
                self._anomalous_cycle(anomaly)
            else:
                self._normal_cycle()
            cycle += 1

    def _normal_cycle(self) -> None:
        for name in (*ROUTINE[1:], ROUTINE[0]):
            self.path.move(self._jitter(WAYPOINTS[name]), self._timing(MOVE_S), self._timing(DWELL_S[name]))

    def _finish_cycle(self, start_from: str) -> None:
        names = (*ROUTINE[1:], ROUTINE[0])
        for name in names[names.index(start_from) :]:
            self.path.move(self._jitter(WAYPOINTS[name]), self._timing(MOVE_S), self._timing(DWELL_S[name]))

    def _anomalous_cycle(self, kind: str) -> None:
        start = self.path.end_s
        category = KIND_CATEGORIES[kind]
        if kind == "skipped_step":
            arrival, _ = self.path.move(
                self._jitter(WAYPOINTS["storage"]), self._timing(MOVE_S * 1.4), DWELL_S["storage"]
            )
            self.truth.append(TrueAnomaly(kind, category, round(start, 3), round(arrival, 3)))
            self._finish_cycle("rack")
        elif kind == "fast_motion":
            end = start + self.rng.uniform(2.0, 3.0)
            time_s = start
            while time_s < end:
                time_s += self.rng.uniform(0.12, 0.2)
                self.path.add(time_s, (self.rng.uniform(0.1, 0.7), self.rng.uniform(0.15, 0.85)))
            self.truth.append(TrueAnomaly(kind, category, round(start, 3), round(time_s, 3)))
            self._finish_cycle("work")
        elif kind in ("wrong_zone", "restricted_zone"):
            if kind == "wrong_zone":
                spot = self._jitter((0.22, 0.70), 0.03)
                size, body, cap = (0.035, 0.10), (235, 235, 240), (40, 90, 210)
            else:
                spot = self._jitter((0.85, 0.77), 0.02)
                size, body, cap = (0.06, 0.13), (150, 85, 40), (30, 30, 30)
            arrival, departure = self.path.move(spot, self._timing(MOVE_S), 0.5)
            end = departure + self.rng.uniform(3.0, 4.0)
            self.objects.append(_PlacedObject(arrival + 0.25, end, spot, size, body, cap))
            self.truth.append(TrueAnomaly(kind, category, round(start, 3), round(end, 3)))
            self._finish_cycle("work")
        elif kind == "dropped_tube":
            x = self.rng.uniform(0.12, 0.28)
            floor = self.rng.uniform(0.62, 0.78)
            end = start + self.rng.uniform(3.5, 4.5)
            self.objects.append(
                _PlacedObject(start, end, (x, floor), (0.035, 0.10), (235, 235, 240), (200, 40, 40), (x, 0.42))
            )
            self.truth.append(TrueAnomaly(kind, category, round(start, 3), round(end, 3)))
            self._normal_cycle()
        elif kind == "spill":
            center = self._jitter((0.22, 0.68), 0.03)
            end = start + self.rng.uniform(3.5, 4.5)
            self.spills.append(_Spill(start, end, center, self.rng.uniform(0.07, 0.09), 1.5))
            self.truth.append(TrueAnomaly(kind, category, round(start, 3), round(end, 3)))
            self._normal_cycle()

    # Drawing ------------------------------------------------------------------------------

    def background(self, width: int, height: int) -> np.ndarray:
        """Draw the static bench: surface texture, rack with tubes, work mat, storage box, restricted zone."""
        rng = np.random.default_rng(1234)  # the same bench for every video of the scene
        image = np.empty((height, width, 3), dtype=np.float32)
        image[:] = BENCH_RGB
        low = cv2.resize(rng.normal(0, 6, (6, 8)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        image += low[:, :, None]
        image += rng.normal(0, 2.5, (height, width, 1)).astype(np.float32)
        image = np.clip(image, 0, 255).astype(np.uint8)

        def box(name):
            x1, y1, x2, y2 = ZONE_BOXES[name]
            return (int(x1 * width), int(y1 * height)), (int(x2 * width), int(y2 * height))

        top_left, bottom_right = box("work")
        cv2.rectangle(image, top_left, bottom_right, (120, 160, 130), -1)
        top_left, bottom_right = box("storage")
        cv2.rectangle(image, top_left, bottom_right, (150, 120, 90), max(1, width // 160))
        top_left, bottom_right = box("restricted")
        cv2.rectangle(image, top_left, bottom_right, (210, 60, 50), max(1, width // 160))
        zone = image[top_left[1] : bottom_right[1], top_left[0] : bottom_right[0]]
        zone_height, zone_width = zone.shape[:2]
        step = max(4, width // 32)
        for offset in range(-zone_height, zone_width, step):
            cv2.line(zone, (offset, 0), (offset + zone_height, zone_height), (220, 190, 60), 1)
        top_left, bottom_right = box("rack")
        cv2.rectangle(image, top_left, bottom_right, (70, 72, 80), -1)
        x1, y1 = top_left
        x2, y2 = bottom_right
        for row in range(3):
            for column in range(5):
                cx = int(x1 + (column + 0.5) * (x2 - x1) / 5)
                cy = int(y1 + (row + 0.5) * (y2 - y1) / 3)
                colour = ((230, 230, 235), (60, 120, 220), (230, 200, 60))[(row + column) % 3]
                cv2.circle(image, (cx, cy), max(2, int(0.018 * width)), colour, -1, cv2.LINE_AA)
        return image

    def render(self, time_s: float, background: np.ndarray) -> np.ndarray:
        """Draw the frame at ``time_s`` over ``background`` with flicker, shake and sensor noise."""
        height, width = background.shape[:2]
        image = background.copy()
        for spill in self.spills:
            radius = spill.radius(time_s)
            if radius:
                center = (int(spill.center[0] * width), int(spill.center[1] * height))
                axes = (int(radius * width), int(radius * width * 0.7))
                cv2.ellipse(image, center, axes, 15, 0, 360, (150, 170, 60), -1, cv2.LINE_AA)
        for placed in self.objects:
            state = placed.state(time_s)
            if state:
                (x, y), (w, h) = state
                x1, y1 = int((x - w / 2) * width), int((y - h / 2) * height)
                x2, y2 = int((x + w / 2) * width), int((y + h / 2) * height)
                cv2.rectangle(image, (x1, y1), (x2, y2), placed.body_rgb, -1)
                if h >= w:
                    cv2.rectangle(image, (x1, y1), (x2, y1 + max(1, (y2 - y1) // 4)), placed.cap_rgb, -1)
                else:
                    cv2.rectangle(image, (x1, y1), (x1 + max(1, (x2 - x1) // 4), y2), placed.cap_rgb, -1)
        hx, hy = self.path.position(time_s)
        center = (int(hx * width), int(hy * height))
        tip = (int((hx - 0.05) * width), int((hy + 0.09) * height))
        cv2.line(image, center, tip, (40, 40, 45), max(2, width // 100), cv2.LINE_AA)
        cv2.ellipse(
            image, center, (int(0.055 * width), int(0.045 * width)), 30, 0, 360, (225, 180, 150), -1, cv2.LINE_AA
        )

        gain = 1.0 + 0.04 * math.sin(2 * math.pi * 0.7 * time_s) + self.rng.normal(0, 0.008)
        shake = self.rng.normal(0, 0.003 * width, 2)
        matrix = np.float32([[1, 0, shake[0]], [0, 1, shake[1]]])
        image = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
        noisy = self.rng.standard_normal(image.shape, dtype=np.float32)
        noisy *= 2.0
        noisy += image
        noisy *= gain
        return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def write_video(path: Path, frames, fps: float, width: int, height: int, codec: str = "mpeg4") -> None:
    """Encode RGB frames to an MP4 at a constant ``fps`` with ``codec`` (``mpeg4`` or ``libx264``).

    With PyAV 18, libx264 gave slightly different files for the same frames from run to run,
    even with one thread, while mpeg4 gave identical files. So mpeg4 is the default, and a
    seed always gives the same video.
    """
    import av

    options = {"crf": "23", "preset": "veryfast"} if codec == "libx264" else {"qscale": "3"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, int(round(fps)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def simulate_video(
    path: str | Path,
    anomaly: str | None = None,
    seed: int = 0,
    duration_s: float = 14.0,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    codec: str = "mpeg4",
) -> GroundTruth:
    """Write one synthetic lab video to ``path`` and its ground truth to ``path`` with ``.json``."""
    path = Path(path)
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"The frame size must be even for 4:2:0 video, got {width}x{height}.")
    scene = LabScene(duration_s, anomaly, seed)
    background = scene.background(width, height)
    count = int(round(duration_s * fps))
    frames = (scene.render(index / fps, background) for index in range(count))
    write_video(path, frames, fps, width, height, codec)
    truth = GroundTruth(path.name, count / fps, fps, width, height, seed, scene.truth)
    path.with_suffix(".json").write_text(json.dumps(truth.as_dict(), indent=2))
    return truth


def simulate_set(
    folder: str | Path,
    kinds: tuple[str, ...] = ANOMALY_KINDS,
    normal: int = 2,
    per_kind: int = 1,
    seed: int = 0,
    **options,
) -> dict[str, list[GroundTruth]]:
    """Write ``normal`` normal videos and ``per_kind`` videos of each anomaly kind into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truths: dict[str, list[GroundTruth]] = {"normal": []}
    for index in range(normal):
        truths["normal"].append(
            simulate_video(folder / f"normal_{index:02d}.mp4", None, seed + 1000 + index, **options)
        )
    for kind_index, kind in enumerate(kinds):
        truths[kind] = [
            simulate_video(folder / f"{kind}_{index:02d}.mp4", kind, seed + 100 * kind_index + index, **options)
            for index in range(per_kind)
        ]
    return truths
