"""Test data for the tomograms app: a small simulated tomogram and a run with known particles."""

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile

from analysis.cryoet.io import write_csv, write_volume
from analysis.cryoet.simulate import simulate_tomogram
from analysis.cryoet.spatial import SpatialMap

SHAPE = (48, 96, 96)
VOXEL_SIZE = 10.0
# Known particles in angstroms: three ribosomes in a chain 200 Å apart, two apo-ferritins 20 Å
# apart, and one thyroglobulin far from both.
KNOWN = [
    ("ribosome", (100.0, 100.0, 100.0), 0.9),
    ("ribosome", (300.0, 100.0, 100.0), 0.8),
    ("ribosome", (500.0, 100.0, 100.0), 0.7),
    ("apo-ferritin", (800.0, 800.0, 400.0), 0.6),
    ("apo-ferritin", (820.0, 800.0, 400.0), 0.5),
    ("thyroglobulin", (500.0, 700.0, 250.0), 0.4),
]


def write_simulated_mrc(directory: Path, name: str = "sim.mrc", voxel_size: float = VOXEL_SIZE) -> tuple[Path, Path]:
    """Write a simulated tomogram and its true particles as CSV; return both paths."""
    volume, particles = simulate_tomogram(SHAPE, VOXEL_SIZE, snr=None, seed=1, ribosome_model=None)
    mrc_path = write_volume(directory / name, volume, voxel_size)
    csv_path = write_csv(directory / "truth.csv", particles)
    return mrc_path, csv_path


def upload_tomogram(client, project, mrc_path: Path, references=(), **fields):
    """Upload through the tomograms page and return the response."""
    from django.urls import reverse

    handles = [open(mrc_path, "rb")] + [open(path, "rb") for path in references]
    try:
        data = {"volumes": handles[0], **fields}
        if references:
            data["references"] = handles[1:]
        return client.post(reverse("tomogram-upload", args=[project.uuid]), data)
    finally:
        for handle in handles:
            handle.close()


def known_run(tomogram, user=None, particles=KNOWN, extent=None):
    """Create a succeeded run whose map contains ``particles`` (class, position, score), without the pipeline.

    ``extent`` (x, y, z in angstroms) sets the map's bounds; it defaults to the simulated tomogram's.
    """
    from django.utils import timezone

    from biovlm_web.core.models import Job
    from biovlm_web.tomograms.models import TomogramRun

    extent = np.array(SHAPE[::-1], dtype=float) * VOXEL_SIZE if extent is None else np.asarray(extent, dtype=float)
    spatial_map = SpatialMap.from_particles(
        [name for name, _, _ in particles],
        np.array([position for _, position, _ in particles]),
        np.stack([np.zeros(3), extent]),
        scores=np.array([score for _, _, score in particles]),
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "map.npz"
        spatial_map.save(path)
        map_bytes = path.read_bytes()
    job = Job.objects.create(
        project=tomogram.project,
        kind="tomogram_run",
        queue="gpu",
        status=Job.Status.SUCCEEDED,
        params={"tomogram": str(tomogram.uuid)},
        finished_at=timezone.now(),
    )
    run = TomogramRun(
        tomogram=tomogram,
        job=job,
        params={"picker": "dog"},
        summary={"voxel_size_angstrom": VOXEL_SIZE, "shape_zyx": list(SHAPE), "kept": len(particles)},
        created_by=user,
    )
    run.map_file.save("map.npz", ContentFile(map_bytes), save=False)
    run.save()
    return run


def zip_names(content: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return sorted(archive.namelist())
