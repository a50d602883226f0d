"""Decoding: timestamps, rotation, bit depth, sampling, and rejection of broken files."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from analysis.anomaly.video import VideoError, probe, read_frames, read_video


def write(
    path, frames, rate=10, codec="libx264", pix_fmt="yuv420p", rotation=None, pts=None, time_base=None, options=None
):
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts = pts[index]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def plain_frames(count=20, width=64, height=48):
    frames = []
    for index in range(count):
        image = np.full((height, width, 3), 40, dtype=np.uint8)
        image[:, :16] = (230, 40, 40)  # a red band on the left edge marks the orientation
        image[: height // 4, 16:] = 10 * index % 200
        frames.append(image)
    return frames


def test_frame_times_follow_timestamps(tmp_path):
    times_ms = [0, 40, 80, 300, 340, 900, 940, 980, 1500, 1540]
    path = write(tmp_path / "vfr.mp4", plain_frames(len(times_ms)), rate=25, pts=times_ms, time_base=Fraction(1, 1000))

    frames = list(read_frames(path))

    assert [round(frame.time_s, 3) for frame in frames] == [t / 1000 for t in times_ms]


def test_sampling_keeps_first_frame_per_step(tmp_path):
    path = write(tmp_path / "steady.mp4", plain_frames(30), rate=30)

    frames = list(read_frames(path, fps=10))

    assert [frame.index for frame in frames] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_sampling_on_variable_rate(tmp_path):
    times_ms = [0, 30, 60, 90, 400, 420, 440, 1000, 1010]
    path = write(tmp_path / "vfr.mp4", plain_frames(len(times_ms)), rate=25, pts=times_ms, time_base=Fraction(1, 1000))

    frames = list(read_frames(path, fps=5))

    assert [round(frame.time_s, 2) for frame in frames] == [0.0, 0.4, 1.0]


def test_rotation_is_applied(tmp_path):
    path = write(tmp_path / "rotated.mp4", plain_frames(5), rotation=90)

    info = probe(path)
    image = next(read_frames(path)).image

    assert info.rotation == 90
    assert (info.width, info.height) == (48, 64)
    assert image.shape == (64, 48, 3)
    # Turned 90 degrees counter-clockwise, the red left band becomes the bottom band.
    assert image[-8:, :, 0].mean() > 200
    assert image[:8, :, 0].mean() < 100


def test_rotation_with_scaling(tmp_path):
    path = write(tmp_path / "rotated.mp4", plain_frames(3, 128, 96), rotation=270)

    image = next(read_frames(path, max_side=64)).image

    assert image.shape == (64, 48, 3)
    assert image[:8, :, 0].mean() > 200  # clockwise turn: the left band goes to the top


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_ten_bit_stream(tmp_path, codec):
    frames = plain_frames(6)
    path = write(tmp_path / f"ten-bit-{codec}.mp4", frames, codec=codec, pix_fmt="yuv420p10le")

    decoded, info = read_video(path)

    assert info.bit_depth == 10
    assert info.pixel_format == "yuv420p10le"
    assert len(decoded) == 6
    assert decoded[0].image.dtype == np.uint8
    assert abs(int(decoded[0].image[24, 4, 0]) - 230) < 20


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")

    with pytest.raises(VideoError, match=r"empty\.mp4: the file is empty"):
        list(read_frames(path))


def test_missing_file_rejected(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        probe(tmp_path / "absent.mp4")


def test_pipe_rejected_without_blocking(tmp_path):
    pipe = tmp_path / "stream.mp4"
    os.mkfifo(pipe)  # opening a FIFO for reading would block until a writer appears

    with pytest.raises(VideoError, match=r"stream\.mp4: this is not a regular file"):
        probe(pipe)


def test_garbage_file_rejected(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"not a video at all " * 50)

    with pytest.raises(VideoError, match=r"notes\.mp4: FFmpeg cannot read it"):
        list(read_frames(path))


def test_truncated_without_index_rejected(tmp_path):
    path = write(tmp_path / "whole.mp4", plain_frames(40))
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end, so it is lost

    with pytest.raises(VideoError, match=r"cut\.mp4"):
        list(read_frames(cut))


def test_truncated_with_index_rejected(tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40)]
    path = write(tmp_path / "faststart.mp4", frames, options={"movflags": "faststart"})
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index is at the start, the frame data ends early

    with pytest.raises(VideoError, match=r"cut\.mp4: the file is truncated"):
        list(read_frames(cut))


def test_invalid_fps_rejected(tmp_path):
    path = write(tmp_path / "steady.mp4", plain_frames(3))

    with pytest.raises(ValueError, match="fps must be a positive number"):
        list(read_frames(path, fps=0))
