"""A scene model fitted on normal videos of one camera view, with no neural training.

It stores the empty-scene background, how often each grid cell contains a moving object, where
tracks pass and where they rest, and the normal range (quantiles) of every track fact. New
frames are scored by how far their facts fall outside those ranges: each check gives a
component from 0 (normal) to 1 (far outside), and the frame score is the largest one.
"""

from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.anomaly.facts import FrameFacts, grid_cell
from analysis.anomaly.rules import Rules

SCENE_FORMAT = "biovlm-anomaly-scene/1"
TRACK_FACTS = ("speed", "acceleration", "area", "area_growth", "static_s")
FRAME_FACTS = ("track_count", "foreground_fraction", "jump_speed")
QUANTILES = (0.5, 0.9, 0.99)
# A place counts as normal when the scene model saw foreground there in at least half a frame
# (after smoothing) and in at least this share of its frames.
OCCUPANCY_FLOOR = 0.0005
# A track position counts as normal when its density is at least this share of the densest cell.
DENSITY_FLOOR = 0.03
# Smallest scale of each fact, so a fact that never varied in normal videos does not turn
# every small change into an anomaly. Units as in TrackFact.
FACT_SCALES = {
    "speed": 0.15,
    "acceleration": 1.0,
    "area": 0.005,
    "area_growth": 0.5,
    "static_s": 1.0,
    "track_count": 1.0,
    "foreground_fraction": 0.01,
    "jump_speed": 0.3,
}


@dataclass
class Component:
    """One check that raised a frame's score."""

    name: str  # the fact or map checked, such as "speed" or "unusual_place"
    score: float
    value: float
    normal: float  # the upper end of the normal range, or the density floor
    track_id: int | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "score": round(self.score, 4),
            "value": round(self.value, 4),
            "normal": round(self.normal, 4),
            "track_id": self.track_id,
        }


def _blur(grid: np.ndarray, size: int = 3, sigma: float = 0.8) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(grid.astype(np.float32), (size, size), sigma)


def _encode_png(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode_png(text: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"))


def _exceedance(value: float, quantiles: dict, scale_floor: float) -> tuple[float, float]:
    """Return (component score, upper normal bound) for ``value`` against normal quantiles."""
    upper = quantiles["q99"]
    scale = max(quantiles["q99"] - quantiles["q50"], scale_floor)
    excess = (value - upper) / scale
    return (1.0 - math.exp(-excess) if excess > 0 else 0.0), upper


@dataclass
class SceneModel:
    frame_size: tuple[int, int]  # analysis width, height
    fps: float
    max_side: int
    grid: tuple[int, int]
    background: np.ndarray
    occupancy: np.ndarray  # frames with foreground in each cell, smoothed over neighbouring cells
    track_density: np.ndarray  # share of track positions in each cell, max 1
    static_density: np.ndarray  # the same for resting tracks
    quantiles: dict[str, dict[str, float]]
    rules: Rules = field(default_factory=Rules)
    videos: list[str] = field(default_factory=list)
    frame_count: int = 0
    threshold: float = 0.5
    static_rest_s: float = 1.0
    detector: str = "background subtraction"  # the detector the normal videos were observed with

    @classmethod
    def fit(
        cls, observations: list, background: np.ndarray, rules: Rules, fps: float, max_side: int, grid: tuple[int, int]
    ) -> SceneModel:
        """Fit the model on observations (``pipeline.Observation``) of normal videos."""
        frames: list[FrameFacts] = [frame for observation in observations for frame in observation.frames]
        if not frames:
            raise ValueError("The normal videos gave no frames to fit a scene model on.")
        rows, columns = grid
        occupancy = np.zeros(grid, dtype=np.float64)
        tracks = np.zeros(grid, dtype=np.float64)
        resting = np.zeros(grid, dtype=np.float64)
        values: dict[str, list[float]] = {name: [] for name in TRACK_FACTS + FRAME_FACTS}
        for frame in frames:
            if frame.occupancy is not None:
                occupancy += frame.occupancy
            values["track_count"].append(len(frame.tracks))
            values["foreground_fraction"].append(frame.foreground_fraction)
            values["jump_speed"].append(frame.jump_speed)
            for fact in frame.tracks:
                row, column = grid_cell(fact.x, fact.y, grid)
                tracks[row, column] += 1
                if fact.static_s >= 1.0:
                    resting[row, column] += 1
                values["speed"].append(fact.speed)
                values["acceleration"].append(abs(fact.acceleration))
                values["area"].append(fact.area)
                values["area_growth"].append(abs(fact.area_growth))
                values["static_s"].append(fact.static_s)
        quantiles = {}
        for name, items in values.items():
            array = np.asarray(items or [0.0], dtype=np.float64)
            quantiles[name] = {f"q{int(q * 100)}": float(np.quantile(array, q)) for q in QUANTILES}
            quantiles[name]["max"] = float(array.max())
            quantiles[name]["count"] = len(items)

        def normalise(grid_counts: np.ndarray) -> np.ndarray:
            smoothed = _blur(grid_counts)
            return smoothed / smoothed.max() if smoothed.max() > 0 else smoothed

        return cls(
            frame_size=(background.shape[1], background.shape[0]),
            fps=fps,
            max_side=max_side,
            grid=(rows, columns),
            background=background,
            occupancy=_blur(occupancy, 5, 1.0),
            track_density=normalise(tracks),
            static_density=normalise(resting),
            quantiles=quantiles,
            rules=rules,
            videos=[observation.path for observation in observations],
            frame_count=len(frames),
        )

    def score_frame(self, frame: FrameFacts) -> list[Component]:
        """Return the components of ``frame`` that fall outside the normal scene, highest first."""
        components: list[Component] = []
        if frame.occupancy is not None:
            floor = max(0.5, OCCUPANCY_FLOOR * self.frame_count)
            rare = frame.occupancy & (self.occupancy < floor)
            count = int(rare.sum())
            if count:
                components.append(Component("unusual_place", 1.0 - math.exp(-count / 2.0), count, floor))
        frame_values = (
            ("track_count", len(frame.tracks)),
            ("foreground_fraction", frame.foreground_fraction),
            ("jump_speed", frame.jump_speed),
        )
        for name, value in frame_values:
            if name not in self.quantiles:  # a scene file written before this fact existed
                continue
            score, upper = _exceedance(value, self.quantiles[name], FACT_SCALES[name])
            if score > 0:
                components.append(Component(name, score, value, upper))
        for fact in frame.tracks:
            components.extend(self._track_components(fact))
        components.sort(key=lambda item: item.score, reverse=True)
        return components

    def _track_components(self, fact) -> list[Component]:
        found = []
        values = {
            "speed": fact.speed,
            "acceleration": abs(fact.acceleration),
            "area": fact.area,
            "area_growth": abs(fact.area_growth),
            "static_s": fact.static_s,
        }
        for name, value in values.items():
            score, upper = _exceedance(value, self.quantiles[name], FACT_SCALES[name])
            if score > 0:
                found.append(Component(name, score, value, upper, fact.track_id))
        row, column = grid_cell(fact.x, fact.y, self.grid)
        density = self.static_density if fact.static_s >= self.static_rest_s else self.track_density
        name = "unusual_rest_place" if fact.static_s >= self.static_rest_s else "unusual_track_place"
        value = float(density[row, column])
        if value < DENSITY_FLOOR:
            found.append(Component(name, 1.0 - value / DENSITY_FLOOR, value, DENSITY_FLOOR, fact.track_id))
        return found

    # Storage ---------------------------------------------------------------------------

    def as_dict(self) -> dict:
        return {
            "format": SCENE_FORMAT,
            "frame_size": list(self.frame_size),
            "fps": self.fps,
            "max_side": self.max_side,
            "grid": list(self.grid),
            "background_png": _encode_png(self.background),
            "occupancy": np.round(self.occupancy, 5).tolist(),
            "track_density": np.round(self.track_density, 5).tolist(),
            "static_density": np.round(self.static_density, 5).tolist(),
            "quantiles": self.quantiles,
            "rules": self.rules.as_dict(),
            "videos": self.videos,
            "frame_count": self.frame_count,
            "threshold": self.threshold,
            "static_rest_s": self.static_rest_s,
            "detector": self.detector,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict()))

    @classmethod
    def from_dict(cls, data: dict, source: str = "scene") -> SceneModel:
        if data.get("format") != SCENE_FORMAT:
            raise ValueError(
                f"{source} is not a scene model file (format {data.get('format')!r}, expected {SCENE_FORMAT!r})."
            )
        try:
            return cls(
                frame_size=tuple(data["frame_size"]),
                fps=float(data["fps"]),
                max_side=int(data["max_side"]),
                grid=tuple(data["grid"]),
                background=_decode_png(data["background_png"]),
                occupancy=np.asarray(data["occupancy"], dtype=np.float32),
                track_density=np.asarray(data["track_density"], dtype=np.float32),
                static_density=np.asarray(data["static_density"], dtype=np.float32),
                quantiles=data["quantiles"],
                rules=Rules.from_dict(data.get("rules")),
                videos=list(data.get("videos", [])),
                frame_count=int(data.get("frame_count", 0)),
                threshold=float(data.get("threshold", 0.5)),
                static_rest_s=float(data.get("static_rest_s", 1.0)),
                detector=str(data.get("detector", "background subtraction")),
            )
        except KeyError as error:
            raise ValueError(f"{source} lacks the field {error.args[0]!r}; fit the scene again.") from error

    @classmethod
    def load(cls, path: str | Path) -> SceneModel:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path.name}: cannot read the scene model ({error}).") from error
        return cls.from_dict(data, path.name)
