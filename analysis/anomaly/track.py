"""Multi-object tracking with ultralytics' ByteTrack implementation (ultralytics 8.4).

``Tracker.update`` takes one frame's Detections and returns the tracked objects with
stable ``track_id`` values. Lost tracks are kept for ``lost_s`` seconds, so an object that
is hidden briefly keeps its id when it reappears near where the Kalman filter expects it.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass

import numpy as np

from analysis.backends.roles import Detections


@dataclass
class TrackedObject:
    track_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels
    score: float
    class_name: str
    detection_index: int  # row in the frame's Detections, to find its mask


class _ByteTrackInput:
    """The results-like object BYTETracker reads: ``conf``, ``cls``, ``xywh`` and boolean indexing."""

    def __init__(self, xywh: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xywh = xywh
        self.conf = conf
        self.cls = cls

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> _ByteTrackInput:
        return _ByteTrackInput(self.xywh[index], self.conf[index], self.cls[index])


class Tracker:
    """ByteTrack over detections sampled at ``fps`` frames per second."""

    def __init__(
        self,
        fps: float,
        lost_s: float = 1.5,
        match_iou: float = 0.1,
        high_score: float = 0.25,
        low_score: float = 0.1,
        padding: float = 0.5,
    ) -> None:
        from analysis.backends.yolo import import_ultralytics

        import_ultralytics()
        from ultralytics.trackers.byte_tracker import BYTETracker

        arguments = Namespace(
            track_high_thresh=high_score,
            track_low_thresh=low_score,
            new_track_thresh=high_score,
            track_buffer=max(1, int(round(lost_s * fps))),
            match_thresh=1.0 - match_iou,  # BYTETracker takes a cost, 1 - IoU
            fuse_score=False,
        )
        self.padding = padding
        # BYTETracker scales its buffer by frame_rate / 30; passing 30 keeps the buffer in sampled frames.
        self._tracker = (
            BYTETracker(arguments, frame_rate=30) if _takes_frame_rate(BYTETracker) else BYTETracker(arguments)
        )

    def update(self, detections: Detections) -> list[TrackedObject]:
        boxes = detections.boxes.astype(np.float32).reshape(-1, 4)
        sizes = boxes[:, 2:4] - boxes[:, 0:2]
        # Matching is by IoU, so an object that moves more than its own size between sampled
        # frames would start a new track. Enlarging the boxes by ``padding`` times their longer
        # side on every side keeps consecutive boxes overlapping; the output keeps the real box.
        margin = self.padding * sizes.max(axis=1, initial=0) if len(sizes) else np.zeros(0, np.float32)
        centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
        xywh = np.column_stack([centres, sizes + 2 * margin[:, None]]) if len(boxes) else np.zeros((0, 4), np.float32)
        rows = self._tracker.update(
            _ByteTrackInput(xywh, detections.scores.astype(np.float32), detections.class_ids.astype(np.float32))
        )
        tracked = []
        for row in np.asarray(rows).reshape(-1, 8):
            index = int(row[7])
            name = detections.class_names[index] if 0 <= index < len(detections.class_names) else str(int(row[6]))
            box = tuple(float(v) for v in boxes[index]) if 0 <= index < len(boxes) else tuple(float(v) for v in row[:4])
            tracked.append(TrackedObject(int(row[4]), box, float(row[5]), name, index))
        return tracked


def _takes_frame_rate(tracker_class) -> bool:
    import inspect

    return "frame_rate" in inspect.signature(tracker_class.__init__).parameters
