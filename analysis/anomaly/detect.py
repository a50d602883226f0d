"""Object detectors for lab video: a weight-free background-subtraction detector, and YOLO.

``BackgroundDetector`` works on any fixed-camera scene without weights. It keeps a learned
background image, compensates global lighting changes and small camera shifts, thresholds
the colour difference, cleans it with morphology and splits it into connected components.
Each component becomes a box and a mask, labelled ``moving`` when it changed since the last
frame and ``static`` otherwise, so newly appeared objects stay visible after they stop.

``ModelDetector`` wraps the ``detector`` or ``segmenter`` role of ``analysis.backends``.
Both return ``analysis.backends.roles.Detections``.
"""

from __future__ import annotations

import cv2
import numpy as np

from analysis.backends.roles import Detections

CLASS_NAMES = ("moving", "static")


def median_background(images: list[np.ndarray]) -> np.ndarray:
    """Return the per-pixel median of RGB frames: the scene without objects that pass through."""
    if not images:
        raise ValueError("A background needs at least one frame.")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ValueError(f"Background frames must share one size, got {sorted(shapes)}.")
    return np.median(np.stack(images), axis=0).astype(np.uint8)


class BackgroundDetector:
    """Detect foreground objects against a learned background image.

    Args:
        background: RGB uint8 image of the empty scene; without it, the median of the first
            ``warmup`` frames passed to ``detect`` is used.
        threshold: colour difference (0 to 255, max over channels) above the noise level that
            counts as foreground.
        min_area: smallest component kept, as a fraction of the frame area.
        learning_rate: weight of each new frame in the background, applied only to pixels
            that are background in that frame, so objects that stop stay foreground.
    """

    def __init__(
        self,
        background: np.ndarray | None = None,
        threshold: float = 28.0,
        min_area: float = 0.0008,
        learning_rate: float = 0.002,
        warmup: int = 15,
        max_shift: float = 0.03,
    ) -> None:
        self.background = None if background is None else background.astype(np.float32)
        self.threshold = threshold
        self.min_area = min_area
        self.learning_rate = learning_rate
        self.warmup = warmup
        self.max_shift = max_shift
        self._warmup_frames: list[np.ndarray] = []
        self._previous: np.ndarray | None = None
        self.last_foreground: np.ndarray | None = None
        self.last_shift = (0.0, 0.0)

    def _ensure_background(self, frame: np.ndarray) -> None:
        if self.background is not None and self.background.shape != frame.shape:
            height, width = frame.shape[:2]
            self.background = cv2.resize(self.background, (width, height), interpolation=cv2.INTER_AREA)

    def detect_one(self, frame: np.ndarray) -> Detections:
        """Detect objects in one RGB uint8 frame; frames must come in time order."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"Frames must be RGB uint8 arrays (height, width, 3), got {frame.shape} {frame.dtype}.")
        self._ensure_background(frame)
        if self.background is None:
            raise RuntimeError("BackgroundDetector has no background; call prime() or pass one.")
        height, width = frame.shape[:2]
        image = self._align(frame.astype(np.float32))
        image = self._match_lighting(image)

        difference = np.abs(image - self.background).max(axis=2)
        noise = float(np.median(difference)) * 1.4826  # the robust sigma of mostly-background pixels
        foreground = (difference > self.threshold + 3 * noise).astype(np.uint8)
        kernel_size = max(3, int(round(min(height, width) / 80)) | 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_size, kernel_size))
        foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, kernel)
        foreground = cv2.morphologyEx(
            foreground,
            cv2.MORPH_CLOSE,
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * kernel_size + 1, 2 * kernel_size + 1)),
        )

        moving = None
        if self._previous is not None:
            moving = np.abs(image - self._previous).max(axis=2) > self.threshold + 3 * noise
        self._previous = image

        background_pixels = foreground == 0
        rate = self.learning_rate
        self.background[background_pixels] = (1 - rate) * self.background[background_pixels] + rate * image[
            background_pixels
        ]
        self.last_foreground = foreground.astype(bool)
        return self._components(foreground, difference, moving)

    def _align(self, image: np.ndarray) -> np.ndarray:
        """Shift ``image`` onto the background when the camera moved by a few pixels."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        reference = cv2.cvtColor(self.background, cv2.COLOR_RGB2GRAY)
        (dx, dy), response = cv2.phaseCorrelate(reference, gray)
        height, width = gray.shape
        limit = self.max_shift * max(height, width)
        if response < 0.1 or abs(dx) > limit or abs(dy) > limit or (abs(dx) < 0.25 and abs(dy) < 0.25):
            self.last_shift = (0.0, 0.0)
            return image
        self.last_shift = (float(dx), float(dy))
        matrix = np.float32([[1, 0, -dx], [0, 1, -dy]])
        return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)

    def _match_lighting(self, image: np.ndarray) -> np.ndarray:
        """Scale each channel so its median matches the background's, undoing global flicker."""
        sample = image[::4, ::4].reshape(-1, 3)
        reference = self.background[::4, ::4].reshape(-1, 3)
        gains = np.median(reference, axis=0) / np.maximum(np.median(sample, axis=0), 1.0)
        return image * np.clip(gains, 0.5, 2.0)

    def _components(self, foreground: np.ndarray, difference: np.ndarray, moving: np.ndarray | None) -> Detections:
        height, width = foreground.shape
        count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
        boxes, scores, class_ids, masks = [], [], [], []
        min_pixels = self.min_area * height * width
        for label in range(1, count):
            x, y, w, h, area = stats[label]
            if area < min_pixels:
                continue
            mask = labels == label
            strength = float(difference[mask].mean())
            changed = 1.0 if moving is None else float(moving[mask].mean())
            boxes.append((x, y, x + w, y + h))
            scores.append(min(1.0, 0.5 + strength / (8 * self.threshold)))
            class_ids.append(0 if changed > 0.1 else 1)
            masks.append(mask)
        return Detections(
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            scores=np.asarray(scores, dtype=np.float32),
            class_ids=np.asarray(class_ids, dtype=np.int64),
            class_names=[CLASS_NAMES[class_id] for class_id in class_ids],
            masks=np.asarray(masks, dtype=bool).reshape(-1, height, width),
        )

    def prime(self, frames: list[np.ndarray]) -> None:
        """Learn the background from ``frames`` (the median), when none was given."""
        self.background = median_background(frames).astype(np.float32)


class ModelDetector:
    """Detect with the YOLO detector or segmenter of the model registry, one frame at a time."""

    def __init__(self, backend, confidence: float = 0.25, classes: list[str] | None = None) -> None:
        self.backend = backend
        self.confidence = confidence
        self.classes = set(classes) if classes else None
        self.last_foreground: np.ndarray | None = None

    def detect_one(self, frame: np.ndarray) -> Detections:
        detections = self.backend.detect([frame], confidence=self.confidence)[0]
        height, width = frame.shape[:2]
        if self.classes is not None:
            keep = np.array([name in self.classes for name in detections.class_names], dtype=bool)
            detections = Detections(
                boxes=detections.boxes[keep],
                scores=detections.scores[keep],
                class_ids=detections.class_ids[keep],
                class_names=[name for name, kept in zip(detections.class_names, keep, strict=True) if kept],
                masks=None if detections.masks is None else detections.masks[keep],
            )
        foreground = np.zeros((height, width), dtype=bool)
        if detections.masks is not None and len(detections.masks):
            foreground |= detections.masks.any(axis=0)
        else:
            for x1, y1, x2, y2 in detections.boxes.astype(int):
                foreground[max(0, y1) : y2, max(0, x1) : x2] = True
        self.last_foreground = foreground
        return detections
