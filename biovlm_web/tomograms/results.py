"""Reading a run's particle map, reference picks, exports and questions for the web layer."""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
from django.utils.text import slugify

from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES
from analysis.cryoet.io import ParticleList, read_particles, write_copick, write_csv, write_relion_star
from analysis.cryoet.spatial import SpatialMap
from biovlm_web.tomograms.volumes import local_path

logger = logging.getLogger(__name__)

# Maps kept in memory per web process; a map of 100,000 particles without embeddings is about 4 MB.
MAP_CACHE_SIZE = 8
_map_cache: OrderedDict[str, SpatialMap] = OrderedDict()
_map_cache_lock = threading.Lock()

EXPORT_FORMATS = {
    "star4": ("RELION 4 STAR (coordinates in pixels)", ".star", "text/plain"),
    "star5": ("RELION 5 STAR (centred coordinates in angstroms)", ".star", "text/plain"),
    "copick": ("copick JSON, one file per class in a ZIP", ".zip", "application/zip"),
    "csv": ("CSV (x, y, z in angstroms, class, score)", ".csv", "text/csv"),
}


def load_map(run) -> SpatialMap:
    """Return the run's SpatialMap, from the per-process cache when possible."""
    key = f"{run.uuid}:{run.map_file.name}"
    with _map_cache_lock:
        if key in _map_cache:
            _map_cache.move_to_end(key)
            return _map_cache[key]
    with local_path(run.map_file) as path:
        spatial_map = SpatialMap.load(path)
    with _map_cache_lock:
        _map_cache[key] = spatial_map
        while len(_map_cache) > MAP_CACHE_SIZE:
            _map_cache.popitem(last=False)
    return spatial_map


def class_radius(name: str) -> float:
    return CLASS_BY_NAME[name].radius_angstrom if name in CLASS_BY_NAME else 100.0


def particle_row(spatial_map: SpatialMap, row: int) -> dict:
    name = spatial_map.class_names[spatial_map.class_indices[row]]
    x, y, z = spatial_map.positions[row]
    return {
        "id": int(spatial_map.ids[row]),
        "class": name,
        "score": float(spatial_map.scores[row]),
        "x": float(x),
        "y": float(y),
        "z": float(z),
        "radius_angstrom": class_radius(name),
    }


def filter_rows(spatial_map: SpatialMap, class_names=None, min_score=None, z_min=None, z_max=None) -> np.ndarray:
    """Return the row numbers of the particles that pass every given filter, in id order."""
    keep = np.ones(len(spatial_map), dtype=bool)
    if class_names:
        indices = [spatial_map.class_index(name) for name in class_names]
        keep &= np.isin(spatial_map.class_indices, indices)
    if min_score is not None:
        keep &= spatial_map.scores >= min_score
    if z_min is not None:
        keep &= spatial_map.positions[:, 2] >= z_min
    if z_max is not None:
        keep &= spatial_map.positions[:, 2] <= z_max
    rows = np.flatnonzero(keep)
    return rows[np.argsort(spatial_map.ids[rows], kind="stable")]


def columns(spatial_map: SpatialMap) -> dict:
    """Return every particle as parallel arrays, the compact form the 3D view loads."""
    return {
        "class_names": list(spatial_map.class_names),
        "radii_angstrom": [class_radius(name) for name in spatial_map.class_names],
        "ids": spatial_map.ids.tolist(),
        "class_indices": spatial_map.class_indices.tolist(),
        "positions": np.round(spatial_map.positions, 2).reshape(-1).tolist(),
        "scores": np.round(spatial_map.scores.astype(float), 4).tolist(),
        "bounds": spatial_map.bounds.tolist(),
    }


def to_particle_list(spatial_map: SpatialMap, tomogram_name: str) -> ParticleList:
    names = np.array([spatial_map.class_names[index] for index in spatial_map.class_indices], dtype=object)
    return ParticleList(spatial_map.positions, names, spatial_map.scores.astype(float), spatial_map.ids, tomogram_name)


# The two STAR exports share a suffix, so their file names name the RELION version.
EXPORT_NAME_TAGS = {"star4": "-relion4", "star5": "-relion5"}


def export_filename(run, export_format: str) -> str:
    """Return ``<slug of the tomogram name>-<first 8 characters of the run UUID>`` with the format's suffix."""
    slug = slugify(Path(run.tomogram.name).stem) or "tomogram"
    return f"{slug}-{str(run.uuid)[:8]}{EXPORT_NAME_TAGS.get(export_format, '')}{EXPORT_FORMATS[export_format][1]}"


def export_bytes(run, export_format: str) -> tuple[bytes, str, str]:
    """Write the run's particles in ``export_format``; return the bytes, file name and content type."""
    _, suffix, content_type = EXPORT_FORMATS[export_format]
    spatial_map = load_map(run)
    tomogram = run.tomogram
    stem = Path(tomogram.name).stem or "tomogram"
    particles = to_particle_list(spatial_map, stem)
    voxel_size = float(run.summary.get("voxel_size_angstrom") or tomogram.voxel_size)
    filename = export_filename(run, export_format)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"particles{suffix}"
        if export_format == "star4":
            write_relion_star(path, particles, voxel_size, version=4)
        elif export_format == "star5":
            shape = tuple(run.summary.get("shape_zyx") or tomogram.shape)
            write_relion_star(path, particles, voxel_size, version=5, tomogram_shape=shape)
        elif export_format == "csv":
            write_csv(path, particles)
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for name in CLASS_NAMES:
                    subset = particles.select(particles.class_names == name)
                    if len(subset):
                        class_path = write_copick(Path(directory) / f"biovlm_0_{name}.json", subset)
                        archive.write(class_path, f"Picks/{class_path.name}")
            return buffer.getvalue(), filename, content_type
        return path.read_bytes(), filename, content_type


def read_references(tomogram, reference_files, options: dict | None = None) -> ParticleList:
    """Read reference picks from stored files and check them against the tomogram.

    Raises ``ParticleFormatError`` or ``ValueError`` with the reader's message, prefixed by the
    file's original name.
    """
    lists = []
    voxel_size = tomogram.voxel_size
    for data_file in reference_files:
        with local_path(data_file.file) as path:
            try:
                particles = read_particles(path, tomogram.shape, voxel_size, **(options or {}))
            except ValueError as error:
                message = str(error).replace(str(path), data_file.original_name)
                if not message.startswith(f"{data_file.original_name}:"):
                    message = f"{data_file.original_name}: {message}"
                raise ValueError(message) from error
        particles.warnings = [f"{data_file.original_name}: {warning}" for warning in particles.warnings]
        lists.append(particles)
    combined = ParticleList.concatenate(lists)
    combined.warnings = [warning for item in lists for warning in item.warnings]
    return combined


def summarise_references(particles: ParticleList) -> dict:
    names, counts = np.unique(particles.class_names.astype(str), return_counts=True)
    unknown = sorted(set(names) - set(CLASS_NAMES))
    warnings = list(particles.warnings)
    if unknown:
        warnings.append(
            f"classes {', '.join(repr(name) for name in unknown)} are not among the six benchmark classes, "
            "so the evaluation leaves them out"
        )
    return {
        "count": int(len(particles)),
        "counts": {str(name): int(count) for name, count in zip(names, counts, strict=True)},
        "warnings": warnings,
    }
