"""The demo's sample dataset: real microscopy images from scikit-image, plus a small
simulated tomogram and a short video generated on the spot, stored through the same checks
as an upload."""

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from biovlm_web.uploads.ingest import LocalFile, Received, inspect_received, store_files
from biovlm_web.uploads.models import Dataset

logger = logging.getLogger(__name__)

SAMPLE_DATASET = "Sample files"
# Images that ship inside the scikit-image wheel, so no download is needed.
SKIMAGE_IMAGES = {
    "cell.png": "Cell (scikit-image sample, phase-contrast microscopy)",
    "ihc.png": "Immunohistochemistry (scikit-image sample)",
    "retina.jpg": "Retina fundus (scikit-image sample)",
    "microaneurysms.png": "Retinal microaneurysms (scikit-image sample)",
}


def _write_tomogram(path: Path) -> None:
    """Write a 64-voxel cube at 10 angstroms per voxel with a few Gaussian particles in noise."""
    import mrcfile

    rng = np.random.default_rng(7)
    shape = (64, 64, 64)
    grid = np.indices(shape).astype(np.float32)
    volume = rng.normal(0.0, 0.3, size=shape).astype(np.float32)
    for _ in range(12):
        centre = rng.uniform(8, 56, size=3)
        radius = rng.uniform(2.5, 5.0)
        distance2 = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3))
        volume += np.exp(-distance2 / (2 * radius**2)).astype(np.float32)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = 10.0


def _write_video(path: Path) -> None:
    """Write a 2-second, 12 fps H.264 clip of a dark disc moving across a bright field."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        yy, xx = np.mgrid[0:120, 0:160]
        for index in range(24):
            frame = np.full((120, 160, 3), 220, dtype=np.uint8)
            frame[(xx - (20 + index * 5)) ** 2 + (yy - 60) ** 2 < 15**2] = (40, 40, 160)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _sample_paths(directory: Path) -> list[Path]:
    import skimage

    paths = []
    data_dir = Path(skimage.__file__).parent / "data"
    for name in SKIMAGE_IMAGES:
        if (data_dir / name).is_file():
            target = directory / name
            target.write_bytes((data_dir / name).read_bytes())
            paths.append(target)
        else:
            logger.warning("scikit-image sample %s is missing; the demo dataset goes without it", name)
    _write_tomogram(directory / "simulated_tomogram.mrc")
    paths.append(directory / "simulated_tomogram.mrc")
    _write_video(directory / "moving_disc.mp4")
    paths.append(directory / "moving_disc.mp4")
    return paths


def ensure_sample_dataset(project, user) -> tuple[Dataset, bool]:
    """Return the project's sample dataset, creating and filling it on the first call."""
    dataset = Dataset.objects.filter(project=project, name=SAMPLE_DATASET).first()
    if dataset is not None:
        return dataset, False
    dataset = Dataset.objects.create(
        project=project, name=SAMPLE_DATASET, created_by=user, description="Real microscopy images and generated data."
    )
    with tempfile.TemporaryDirectory(prefix="biovlm-samples-") as directory:
        received = []
        for path in _sample_paths(Path(directory)):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            inspection = inspect_received(path, path.name)
            received.append(Received(path.name, LocalFile(path), path.stat().st_size, digest, inspection))
        try:
            store_files(dataset, received, user)
        finally:
            for item in received:
                item.content.close()
    return dataset, True
