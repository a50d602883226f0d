"""Browser-playable previews of analysed videos, a first frame for drawing zones, and ranged file responses.

Stored files are read through Django's storage API, never by their local path, so a remote
storage such as S3 works too. Decoders that need a file get a local temporary copy.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from django.http import FileResponse, HttpResponse
from PIL import Image

from analysis.anomaly.video import read_frames

RANGE_PATTERN = re.compile(r"^bytes=(\d*)-(\d*)$")
COPY_CHUNK_BYTES = 4 * 1024**2


@contextlib.contextmanager
def local_copy(field_file, name: str = "") -> Iterator[Path]:
    """Copy a stored file through its storage into a temporary local file; yield that file's path.

    The copy is called ``name`` (an uploaded file's original name, so that messages name it)
    or keeps the stored name's extension, which some decoders use to pick a demuxer. It is
    deleted when the block ends.
    """
    filename = Path(name).name or f"input{Path(field_file.name).suffix}"
    with tempfile.TemporaryDirectory(prefix="biovlm-anomaly-") as folder:
        target = Path(folder) / filename
        with field_file.storage.open(field_file.name, "rb") as source, target.open("wb") as handle:
            shutil.copyfileobj(source, handle, COPY_CHUNK_BYTES)
        yield target


def write_preview(source: str | Path, target: str | Path, fps: float, max_side: int) -> tuple[int, int]:
    """Encode ``source`` as VP8 WebM at the analysed rate and size; return the frame (width, height).

    The preview has the frames the analysis saw, so track boxes (pixels of the analysed frame)
    land on it without scaling. An odd width or height loses its last pixel column or row,
    because 4:2:0 video needs even sizes.
    """
    import av

    size = None
    with av.open(str(target), "w", format="webm") as container:
        stream = None
        rate = Fraction(int(round(fps * 1000)), 1000)
        for index, frame in enumerate(read_frames(source, fps=fps, max_side=max_side)):
            image = frame.image
            if stream is None:
                height, width = image.shape[:2]
                size = (width - width % 2, height - height % 2)
                stream = container.add_stream("libvpx", rate=rate, options={"crf": "10", "b": "1M"})
                stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
            cropped = np.ascontiguousarray(image[: size[1], : size[0]])
            video_frame = av.VideoFrame.from_ndarray(cropped, format="rgb24")
            video_frame.pts = index
            video_frame.time_base = 1 / rate
            for packet in stream.encode(video_frame):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    if size is None:
        raise ValueError(f"{Path(source).name}: no frames were decoded for the preview.")
    return size


def first_frame_png(source: str | Path, max_side: int) -> bytes:
    """Return the first frame of ``source``, scaled as the analysis scales it, as PNG bytes."""
    frame = next(iter(read_frames(source, fps=None, max_side=max_side, check_truncation=False)), None)
    if frame is None:
        raise ValueError(f"{Path(source).name}: no frame could be decoded.")
    buffer = io.BytesIO()
    Image.fromarray(frame.image).save(buffer, format="PNG")
    return buffer.getvalue()


def ranged_file_response(request, field_file, content_type: str):
    """Serve a stored file, honouring one HTTP byte range so that browsers can seek in a video."""
    size = field_file.size
    header = request.headers.get("Range", "")
    match = RANGE_PATTERN.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        response = FileResponse(field_file.open("rb"), content_type=content_type)
        response["Accept-Ranges"] = "bytes"
        return response
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
    else:
        start, end = max(0, size - int(match.group(2))), size - 1
    end = min(end, size - 1)
    if start > end:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    with field_file.open("rb") as handle:
        handle.seek(start)
        body = handle.read(end - start + 1)
    response = HttpResponse(body, status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Accept-Ranges"] = "bytes"
    return response
