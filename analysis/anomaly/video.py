"""Video decoding with PyAV: per-frame timestamps, display rotation, 8- and 10-bit streams.

Frames come out as RGB uint8 arrays with the time of each frame read from its own
presentation timestamp, so variable-frame-rate phone recordings keep their real timing.
A file that cannot be decoded raises ``VideoError`` naming the file and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Seconds PyAV may wait on one open or read call before it gives up. Local files never need
# this long, so hitting it means a stalled file system or a pipe that never delivers.
OPEN_TIMEOUT_S = 20.0
READ_TIMEOUT_S = 20.0
# A stream that ends this much before the duration its container declares is truncated.
TRUNCATION_TOLERANCE = 0.1


class VideoError(ValueError):
    """A video file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{Path(path).name}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class VideoInfo:
    """Stream facts read from the container before decoding."""

    path: str
    width: int  # after rotation
    height: int
    coded_width: int
    coded_height: int
    rotation: int  # counter-clockwise degrees that the display matrix asks for
    duration_s: float | None
    average_fps: float | None
    pixel_format: str
    codec: str
    bit_depth: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Frame:
    index: int  # position among decoded frames, before sampling
    time_s: float  # presentation time from the frame's own timestamp
    image: np.ndarray  # RGB uint8, (height, width, 3), rotation applied


def _open(path: Path):
    import av

    if not path.exists():
        raise VideoError(path, "the file does not exist.")
    if not path.is_file():
        raise VideoError(path, "this is not a regular file.")
    if path.stat().st_size == 0:
        raise VideoError(path, "the file is empty (0 bytes).")
    try:
        container = av.open(str(path), timeout=(OPEN_TIMEOUT_S, READ_TIMEOUT_S))
    except av.error.FFmpegError as error:
        raise VideoError(
            path, f"FFmpeg cannot read it ({error.strerror or error}); the file is damaged, truncated or not a video."
        ) from error
    if not container.streams.video:
        container.close()
        raise VideoError(path, "the file has no video stream.")
    return container


def _bit_depth(pixel_format: str) -> int:
    import av

    try:
        descriptor = av.VideoFormat(pixel_format)
    except (ValueError, av.error.FFmpegError):
        return 8
    return max((component.bits for component in descriptor.components), default=8)


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, rotation, duration, rate and pixel format, decoding one frame."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rotation = 0
        try:
            for frame in container.decode(stream):
                rotation = _normalise_rotation(frame.rotation)
                break
            else:
                raise VideoError(path, "the video stream contains no decodable frame.")
        except Exception as error:
            if isinstance(error, VideoError):
                raise
            raise VideoError(path, f"decoding the first frame failed: {error}") from error
        return _info(path, container, stream, rotation)
    finally:
        container.close()


def _info(path: Path, container, stream, rotation: int) -> VideoInfo:
    context = stream.codec_context
    width, height = context.width, context.height
    shown_width, shown_height = (height, width) if rotation in (90, 270) else (width, height)
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    rate = float(stream.average_rate) if stream.average_rate else None
    pixel_format = context.pix_fmt or "unknown"
    return VideoInfo(
        path=str(path),
        width=shown_width,
        height=shown_height,
        coded_width=width,
        coded_height=height,
        rotation=rotation,
        duration_s=duration,
        average_fps=rate,
        pixel_format=pixel_format,
        codec=context.name,
        bit_depth=_bit_depth(pixel_format),
    )


def _normalise_rotation(degrees) -> int:
    if degrees is None:
        return 0
    value = int(round(float(degrees) / 90.0)) * 90 % 360
    return value


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Scale (width, height) so the longer side is at most ``max_side``, keeping even sizes."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _frame_time(frame, stream, fallback_index: int, fallback_rate: float) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    if frame.time is not None:
        return float(frame.time)
    return fallback_index / fallback_rate


def read_frames(
    path: str | Path,
    fps: float | None = None,
    max_side: int | None = None,
    max_seconds: float | None = None,
    check_truncation: bool = True,
) -> Iterator[Frame]:
    """Decode ``path`` into RGB frames, sampled at ``fps`` and scaled to at most ``max_side`` pixels.

    Times are the frames' own presentation times relative to the first frame, in seconds.
    Sampling keeps the first frame at or after each multiple of ``1 / fps``; without ``fps``
    every frame is kept. Raises VideoError for an empty, unreadable or truncated file (one
    whose decoded frames end well before the duration its container declares).
    """
    path = Path(path)
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}.")
    container = _open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    info = None
    first_time = None
    next_sample = 0.0
    index = -1
    last_time = 0.0
    fallback_rate = float(stream.average_rate) if stream.average_rate else 25.0
    try:
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except Exception as error:  # PyAV raises FFmpegError subclasses and, for bad packets, ValueError
                if index < 0:
                    raise VideoError(path, f"no frame could be decoded: {error}") from error
                raise VideoError(path, f"decoding failed after frame {index} at {last_time:.2f} s: {error}") from error
            index += 1
            if info is None:
                info = _info(path, container, stream, _normalise_rotation(frame.rotation))
            raw_time = _frame_time(frame, stream, index, fallback_rate)
            if first_time is None:
                first_time = raw_time
            time_s = raw_time - first_time
            last_time = time_s
            if max_seconds is not None and time_s > max_seconds:
                return
            if fps is not None:
                if time_s + 1e-6 < next_sample:
                    continue
                next_sample = (math.floor(time_s * fps + 1e-6) + 1) / fps
            yield Frame(index, time_s, _to_rgb(frame, info, max_side))
        if index < 0:
            raise VideoError(path, "the video stream contains no decodable frame.")
        if check_truncation and max_seconds is None:
            _check_complete(path, info, last_time, fallback_rate)
    finally:
        container.close()


def _to_rgb(frame, info: VideoInfo, max_side: int | None) -> np.ndarray:
    # Scale in swscale before rotating: the target size is given in display orientation.
    width, height = _target_size(info.width, info.height, max_side)
    if info.rotation in (90, 270):
        width, height = height, width
    image = frame.to_ndarray(format="rgb24", width=width, height=height)
    if info.rotation:
        image = np.ascontiguousarray(np.rot90(image, k=info.rotation // 90))
    return image


def _check_complete(path: Path, info: VideoInfo | None, last_time: float, rate: float) -> None:
    if info is None or not info.duration_s:
        return
    covered = last_time + 1.0 / rate
    if covered < info.duration_s * (1 - TRUNCATION_TOLERANCE) - 1.0 / rate:
        raise VideoError(
            path,
            f"the file is truncated: its frames end at {covered:.2f} s but the container declares {info.duration_s:.2f} s.",
        )


def read_video(
    path: str | Path, fps: float | None = None, max_side: int | None = None
) -> tuple[list[Frame], VideoInfo]:
    """Decode a whole video into memory and return its sampled frames and its stream facts."""
    frames = list(read_frames(path, fps=fps, max_side=max_side))
    return frames, probe(path)
