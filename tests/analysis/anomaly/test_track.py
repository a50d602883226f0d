"""Background subtraction and ByteTrack: boxes of new objects, and ids kept through occlusion."""

from __future__ import annotations

import numpy as np

from analysis.anomaly.detect import BackgroundDetector
from analysis.anomaly.track import Tracker
from analysis.backends.roles import Detections

WIDTH, HEIGHT = 160, 120


def scene_background() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((HEIGHT, WIDTH, 3), 150, dtype=np.uint8)
    image += rng.integers(0, 6, image.shape, dtype=np.uint8)
    image[:, 70:90] = (60, 60, 200)  # a blue pillar that hides objects passing behind it
    return image


def frame_with_square(background, x: int, behind_pillar: bool = True) -> np.ndarray:
    image = background.copy()
    image[50:66, x : x + 16] = (240, 200, 40)
    if behind_pillar:
        image[:, 70:90] = background[:, 70:90]
    return image


def test_detector_finds_new_object():
    background = scene_background()
    detector = BackgroundDetector(background)
    image = background.copy()
    image[20:40, 30:50] = (250, 250, 250)

    detections = detector.detect_one(image)

    assert len(detections.boxes) == 1
    x1, y1, x2, y2 = detections.boxes[0]
    assert abs(x1 - 30) <= 2
    assert abs(y1 - 20) <= 2
    assert abs(x2 - 50) <= 2
    assert abs(y2 - 40) <= 2
    assert detections.masks.shape == (1, HEIGHT, WIDTH)
    assert abs(int(detections.masks[0].sum()) - 400) < 60


def test_detector_ignores_flicker_and_shift():
    background = scene_background()
    detector = BackgroundDetector(background)
    brighter = np.clip(np.roll(background, 1, axis=1).astype(np.float32) * 1.08, 0, 255).astype(np.uint8)

    detections = detector.detect_one(brighter)

    assert len(detections.boxes) == 0


def test_static_object_stays_detected():
    background = scene_background()
    detector = BackgroundDetector(background)
    image = background.copy()
    image[20:40, 30:50] = (250, 250, 250)

    names = [detector.detect_one(image).class_names for _ in range(30)]

    assert names[0] == ["moving"]
    assert names[-1] == ["static"]


def test_tracker_keeps_id_through_occlusion():
    background = scene_background()
    detector = BackgroundDetector(background)
    tracker = Tracker(fps=10)
    ids_by_frame = []
    for step in range(22):
        x = 20 + 5 * step  # the square is fully behind the pillar for x in 70..74
        tracked = tracker.update(detector.detect_one(frame_with_square(background, x)))
        ids_by_frame.append((x, [item.track_id for item in tracked]))

    hidden = [ids for x, ids in ids_by_frame if 70 <= x <= 74]
    before = {track_id for x, ids in ids_by_frame if x < 56 for track_id in ids}
    after = {track_id for x, ids in ids_by_frame if x > 92 for track_id in ids}
    assert hidden == [[]]
    assert len(before) == 1
    assert after == before


def test_tracker_keeps_id_over_several_missing_frames():
    tracker = Tracker(fps=10)
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [])
    ids = []
    for step in range(20):
        x = 10 + 3 * step
        if 8 <= step <= 11:
            tracker.update(empty)
            continue
        detections = Detections(
            np.array([[x, 20, x + 10, 40]], np.float32), np.array([0.9], np.float32), np.array([0]), ["moving"]
        )
        ids.extend(item.track_id for item in tracker.update(detections))

    assert set(ids) == {1}


def test_tracker_separates_two_objects():
    tracker = Tracker(fps=10)
    seen = []
    for step in range(10):
        boxes = np.array([[10 + 2 * step, 10, 20 + 2 * step, 20], [100, 80 - 2 * step, 110, 90 - 2 * step]], np.float32)
        detections = Detections(boxes, np.array([0.9, 0.9], np.float32), np.array([0, 0]), ["moving", "moving"])
        seen.append({item.detection_index: item.track_id for item in tracker.update(detections)})

    assert all(frame == {0: 1, 1: 2} for frame in seen)
