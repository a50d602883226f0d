"""Instance masks of tracked objects as simplified polygons, per frame and track, within a size limit.

A mask becomes the outer contours of its connected parts, each simplified with the
Douglas-Peucker algorithm (``cv2.approxPolyDP``) to at most ``max_points`` vertices. Each
polygon is a flat list of integer pixel coordinates ``[x0, y0, x1, y1, ...]`` of the analysed
frame, the same pixels as the track boxes. Holes are dropped.

``bound_masks`` keeps the JSON of a whole video under a byte limit: it first halves the
vertices of every polygon (down to 4), and if the masks are still too large it drops the
masks of the last frames and records from which time they are missing.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

MAX_POINTS = 32
MIN_POINTS = 4
MAX_POLYGONS = 4  # per track and frame; the largest parts are kept
MIN_PART_PIXELS = 6
MAX_MASK_BYTES = 4 * 1024**2
FORMAT = "polygons"


def mask_polygons(mask: np.ndarray, max_points: int = MAX_POINTS) -> list[list[int]]:
    """Return the outer contours of a boolean mask as flat [x0, y0, x1, y1, ...] pixel lists."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    parts = [contour for contour in contours if cv2.contourArea(contour) >= MIN_PART_PIXELS]
    parts.sort(key=cv2.contourArea, reverse=True)
    polygons = []
    for contour in parts[:MAX_POLYGONS]:
        epsilon = max(0.75, 0.01 * cv2.arcLength(contour, True))
        simplified = cv2.approxPolyDP(contour, epsilon, True)
        while len(simplified) > max_points:
            epsilon *= 1.5
            simplified = cv2.approxPolyDP(contour, epsilon, True)
        if len(simplified) >= 3:
            polygons.append([int(value) for value in simplified.reshape(-1)])
    return polygons


def track_masks(tracked, detections) -> list[dict]:
    """Return ``{"track_id", "polygons"}`` for each tracked object whose detection has a mask."""
    masks = getattr(detections, "masks", None)
    if masks is None:
        return []
    items = []
    for item in tracked:
        if not 0 <= item.detection_index < len(masks):
            continue
        polygons = mask_polygons(masks[item.detection_index])
        if polygons:
            items.append({"track_id": item.track_id, "polygons": polygons})
    return items


def _decimate(frames: list[list[dict]]) -> list[list[dict]]:
    """Keep every other vertex of polygons with more than MIN_POINTS vertices."""
    result = []
    for items in frames:
        thinned = []
        for item in items:
            polygons = []
            for flat in item["polygons"]:
                points = np.asarray(flat).reshape(-1, 2)
                if len(points) > MIN_POINTS:
                    points = points[::2]
                polygons.append([int(value) for value in points.reshape(-1)])
            thinned.append({"track_id": item["track_id"], "polygons": polygons})
        result.append(thinned)
    return result


def _max_points(frames: list[list[dict]]) -> int:
    return max((len(flat) // 2 for items in frames for item in items for flat in item["polygons"]), default=0)


def bound_masks(
    times: list[float], frames: list[list[dict]], frame_size: tuple[int, int], max_bytes: int = MAX_MASK_BYTES
) -> dict:
    """Return the masks of a video as a JSON-ready dict whose ``frames`` encode to at most ``max_bytes``.

    ``frames`` has one list of track masks per analysed frame, parallel to ``times``. The
    result contains ``frames`` of the same length, the ``max_points`` per polygon, and
    ``missing_from_s``: the time from which masks were dropped to fit, or None.
    """
    if len(times) != len(frames):
        raise ValueError(f"times has {len(times)} entries but frames has {len(frames)}; they must be parallel.")

    def encode(items) -> bytes:
        return json.dumps(items, separators=(",", ":")).encode()

    while len(encode(frames)) > max_bytes and _max_points(frames) > MIN_POINTS:
        frames = _decimate(frames)
    missing_from_s = None
    sizes = [len(encode(items)) + 1 for items in frames]
    if sum(sizes) + 2 > max_bytes:
        # Each dropped frame still costs 3 bytes, "[]" and a comma.
        total, kept = 2, 0
        while kept < len(frames) and total + sizes[kept] + 3 * (len(frames) - kept - 1) <= max_bytes:
            total += sizes[kept]
            kept += 1
        missing_from_s = float(times[kept]) if kept < len(times) else None
        frames = frames[:kept] + [[] for _ in frames[kept:]]
    return {
        "format": FORMAT,
        "frame_size": [int(frame_size[0]), int(frame_size[1])],
        "max_points": _max_points(frames),
        "missing_from_s": missing_from_s,
        "frames": frames,
    }
