"""Per-frame track facts: position, speed, acceleration, area and its growth, zones, rest time.

Positions are fractions of the frame (x of the width, y of the height). Speeds are in frame
widths per second for both axes, so a diagonal move counts the same on any aspect ratio.
Times come from the frames' own timestamps, so variable frame rates give true speeds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from analysis.anomaly.rules import Rules

# A track counts as resting below this speed (frame widths per second), or when its box centre
# moved at most STATIC_PIXELS over the speed window, which absorbs the jitter of a box from
# compression noise on small frames.
STATIC_SPEED = 0.06
STATIC_PIXELS = 4.0
HISTORY = 6


@dataclass
class TrackFact:
    track_id: int
    class_name: str
    x: float
    y: float
    width: float
    height: float
    area: float  # fraction of the frame covered by the mask, or by the box without a mask
    speed: float  # frame widths per second
    acceleration: float  # frame widths per second squared, change of speed
    area_growth: float  # change of log area per second
    zones: list[str]
    zone_s: float  # time since the track entered its current set of zones
    static_s: float  # time the track has rested, 0 while it moves
    age_s: float
    first_s: float
    box: tuple[float, float, float, float]  # pixels, for drawing

    def as_dict(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 4)
        return data


@dataclass
class FrameFacts:
    index: int
    time_s: float
    tracks: list[TrackFact]
    appeared: list[int] = field(default_factory=list)
    disappeared: list[int] = field(default_factory=list)
    foreground_fraction: float = 0.0
    occupancy: np.ndarray | None = None  # bool grid of cells with foreground
    jump_speed: float = 0.0  # frame widths per second, see FactTracker.jump_speed
    masks: list[dict] = field(default_factory=list)  # analysis.anomaly.masks.track_masks, when kept


@dataclass
class _History:
    first_s: float
    samples: deque  # (time_s, x_px, y_px, area)
    speeds: deque  # (time_s, speed)
    zones: tuple[str, ...] = ()
    zone_since: float = 0.0
    static_since: float | None = None


class FactTracker:
    """Turn tracked objects frame by frame into TrackFact records."""

    def __init__(self, width: int, height: int, rules: Rules | None = None, grid: tuple[int, int] = (24, 32)) -> None:
        self.width = width
        self.height = height
        self.rules = rules or Rules()
        self.grid = grid
        self._histories: dict[int, _History] = {}
        self._previous_centres: np.ndarray | None = None
        self._previous_time: float | None = None

    def update(self, index: int, time_s: float, tracked: list, detections, foreground: np.ndarray | None) -> FrameFacts:
        facts = []
        appeared = []
        present = set()
        for item in tracked:
            present.add(item.track_id)
            history = self._histories.get(item.track_id)
            if history is None:
                history = _History(time_s, deque(maxlen=HISTORY), deque(maxlen=HISTORY))
                self._histories[item.track_id] = history
                appeared.append(item.track_id)
            facts.append(self._fact(item, history, time_s, detections))
        disappeared = [track_id for track_id in self._histories if track_id not in present]
        for track_id in disappeared:
            del self._histories[track_id]
        fraction = 0.0
        occupancy = None
        if foreground is not None:
            fraction = float(foreground.mean())
            occupancy = occupancy_grid(foreground, self.grid)
        jump = self.jump_speed(time_s, detections)
        return FrameFacts(index, time_s, facts, appeared, disappeared, fraction, occupancy, jump)

    def jump_speed(self, time_s: float, detections, stay_radius: float = 0.03) -> float:
        """Return how fast the fastest object moved since the previous frame, in frame widths per second.

        Each detection is paired with the nearest detection of the previous frame, and the pair
        counts only when that previous detection has left its place (no current detection
        within ``stay_radius`` frame widths of it). This measures speed without track ids,
        which break when an object jumps further than its own size between sampled frames, and
        gives 0 for an object that appears while everything else stays put.
        """
        boxes = np.asarray(detections.boxes, dtype=np.float64).reshape(-1, 4)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / self.width
        previous, previous_time = self._previous_centres, self._previous_time
        self._previous_centres, self._previous_time = centres, time_s
        if previous is None or not len(previous) or not len(centres) or time_s <= previous_time:
            return 0.0
        distances = np.sqrt(((centres[:, None, :] - previous[None, :, :]) ** 2).sum(axis=2))
        left = distances.min(axis=0) > stay_radius
        nearest = distances.argmin(axis=1)
        moved = left[nearest]
        if not moved.any():
            return 0.0
        return float(distances[np.arange(len(centres)), nearest][moved].max()) / (time_s - previous_time)

    def _fact(self, item, history: _History, time_s: float, detections) -> TrackFact:
        x1, y1, x2, y2 = item.box
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        area = max(1.0, (x2 - x1) * (y2 - y1))
        masks = getattr(detections, "masks", None)
        if masks is not None and 0 <= item.detection_index < len(masks):
            area = max(1.0, float(masks[item.detection_index].sum()))
        history.samples.append((time_s, cx, cy, area))

        speed = 0.0
        growth = 0.0
        shift_pixels = 0.0
        if len(history.samples) >= 2:
            back = history.samples[max(0, len(history.samples) - 3)]
            elapsed = time_s - back[0]
            shift_pixels = math.hypot(cx - back[1], cy - back[2])
            if elapsed > 0:
                speed = shift_pixels / self.width / elapsed
                growth = math.log(area / back[3]) / elapsed
        acceleration = 0.0
        if history.speeds:
            previous_time, previous_speed = history.speeds[-1]
            if time_s > previous_time:
                acceleration = (speed - previous_speed) / (time_s - previous_time)
        history.speeds.append((time_s, speed))

        x, y = cx / self.width, cy / self.height
        zones = tuple(self.rules.zones_at(x, y))
        if zones != history.zones:
            history.zones = zones
            history.zone_since = time_s
        if speed < STATIC_SPEED or shift_pixels <= STATIC_PIXELS:
            if history.static_since is None:
                history.static_since = history.samples[-2][0] if len(history.samples) >= 2 else time_s
        else:
            history.static_since = None
        static_s = 0.0 if history.static_since is None else time_s - history.static_since
        return TrackFact(
            track_id=item.track_id,
            class_name=item.class_name,
            x=x,
            y=y,
            width=(x2 - x1) / self.width,
            height=(y2 - y1) / self.height,
            area=area / (self.width * self.height),
            speed=speed,
            acceleration=acceleration,
            area_growth=growth,
            zones=list(zones),
            zone_s=time_s - history.zone_since,
            static_s=static_s,
            age_s=time_s - history.first_s,
            first_s=history.first_s,
            box=(float(x1), float(y1), float(x2), float(y2)),
        )


def occupancy_grid(foreground: np.ndarray, grid: tuple[int, int], min_fraction: float = 0.2) -> np.ndarray:
    """Return a (rows, columns) bool grid: cells where at least ``min_fraction`` of pixels are foreground."""
    import cv2

    rows, columns = grid
    small = cv2.resize(foreground.astype(np.float32), (columns, rows), interpolation=cv2.INTER_AREA)
    return small >= min_fraction


def grid_cell(x: float, y: float, grid: tuple[int, int]) -> tuple[int, int]:
    rows, columns = grid
    return min(rows - 1, max(0, int(y * rows))), min(columns - 1, max(0, int(x * columns)))
