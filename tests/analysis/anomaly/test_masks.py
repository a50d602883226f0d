"""Track masks as simplified polygons: encoding, the size limit, and both detector paths."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from analysis.anomaly.detect import ModelDetector
from analysis.anomaly.masks import MIN_POINTS, bound_masks, mask_polygons
from analysis.anomaly.pipeline import analyse
from analysis.anomaly.simulate import simulate_video
from analysis.backends import ModelRegistry
from tests.analysis.backends.network_guard import block_network
from tests.analysis.backends.test_yolo import build_yolo


def disc(width=80, height=60, centre=(40, 30), radius=15) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask.astype(bool)


def polygon_area(flat: list[int]) -> float:
    return float(cv2.contourArea(np.asarray(flat, dtype=np.float32).reshape(-1, 2)))


def test_polygon_keeps_mask_area():
    mask = disc()
    polygons = mask_polygons(mask, max_points=16)
    assert len(polygons) == 1
    assert 3 <= len(polygons[0]) // 2 <= 16
    assert polygon_area(polygons[0]) == pytest.approx(mask.sum(), rel=0.15)


def test_polygon_per_part_largest_first():
    mask = disc(centre=(20, 30), radius=6) | disc(centre=(60, 30), radius=12)
    polygons = mask_polygons(mask)
    assert len(polygons) == 2
    assert polygon_area(polygons[0]) > polygon_area(polygons[1])
    assert min(polygons[0][0::2]) > 40  # the large disc on the right comes first


def test_empty_mask_has_no_polygon():
    assert mask_polygons(np.zeros((10, 10), dtype=bool)) == []


def square_frames(count: int, points: int) -> list[list[dict]]:
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    flat = [int(v) for xy in zip(50 + 40 * np.cos(angles), 50 + 40 * np.sin(angles), strict=True) for v in xy]
    return [[{"track_id": 1, "polygons": [flat]}] for _ in range(count)]


def test_bound_masks_keeps_small_masks():
    frames = square_frames(10, 32)
    result = bound_masks([index / 10 for index in range(10)], frames, (100, 100))
    assert result["frames"] == frames
    assert result["max_points"] == 32
    assert result["missing_from_s"] is None


def test_bound_masks_thins_polygons_first():
    frames = square_frames(100, 32)
    full = len(json.dumps(frames, separators=(",", ":")))
    limit = int(full * 0.7)
    result = bound_masks([index / 10 for index in range(100)], frames, (100, 100), max_bytes=limit)
    assert len(json.dumps(result["frames"], separators=(",", ":"))) <= limit
    assert result["max_points"] == 16
    assert result["missing_from_s"] is None


def test_bound_masks_drops_last_frames_last():
    frames = square_frames(100, 32)
    result = bound_masks([index / 10 for index in range(100)], frames, (100, 100), max_bytes=3000)
    assert len(json.dumps(result["frames"], separators=(",", ":"))) <= 3000
    assert result["max_points"] == MIN_POINTS
    assert len(result["frames"]) == 100
    kept = sum(bool(items) for items in result["frames"])
    assert 0 < kept < 100
    assert result["missing_from_s"] == pytest.approx(kept / 10)
    assert not any(result["frames"][kept:])


def test_bound_masks_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="must be parallel"):
        bound_masks([0.0], square_frames(2, 8), (100, 100))


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    simulate_video(path, "restricted_zone", seed=5, duration_s=3.0, fps=10, size=(160, 120))
    return path


def masks_follow_tracks(result) -> int:
    data = result.masks_dict()
    assert len(data["frames"]) == len(result.frames)
    assert data["frame_size"] == [160, 120]
    count = 0
    for items, frame in zip(data["frames"], result.frames, strict=True):
        assert {item["track_id"] for item in items} <= {fact.track_id for fact in frame.tracks}
        count += sum(len(item["polygons"]) for item in items)
    return count


def test_background_detector_masks(short_clip, lab_scene):
    result = analyse(short_clip, lab_scene, keep_masks=True)
    assert masks_follow_tracks(result) > 0
    assert not any(frame.masks for frame in analyse(short_clip, lab_scene, max_seconds=1.0).frames)


def test_yolo_segmenter_masks(tmp_path, short_clip, lab_scene, monkeypatch):
    attempts = block_network(monkeypatch)
    weights = build_yolo(tmp_path, "segment", hot=True)
    backend = ModelRegistry({"segmenter": f"local:{weights}?imgsz=128"}, device="cpu").get("segmenter")

    result = analyse(short_clip, lab_scene, ModelDetector(backend, confidence=0.5), "YOLO tiny", keep_masks=True)

    assert masks_follow_tracks(result) > 0
    assert attempts == []
