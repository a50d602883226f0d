"""Particle lists: one internal form (x, y, z in angstroms) and readers and writers for the
pick formats of RELION, copick, the CryoET Data Portal, IMOD and plain CSV.

Pixel coordinates convert to angstroms as ``index * voxel_size``, so voxel index 0 is at
0 Å. This matches copick and the CryoET Data Portal.

NOTE: RELION and IMOD coordinates are converted the same way, with no half-pixel or
one-based offset. Neither program's origin convention was checked against its own code, so
positions from them may be off by up to one pixel.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from analysis.cryoet.classes import CLASS_NAMES

CSV_UNITS = ("angstrom", "nm", "pixel")
# rlnClassNumber n is STAR_CLASS_NAMES[n - 1]: the six benchmark classes, then "background"
# (the classifier's label for a false pick), so labelled picks keep every label on a round trip.
STAR_CLASS_NAMES = (*CLASS_NAMES, "background")
RELION_OPTICS_PIXEL_COLUMNS = ("rlnImagePixelSize", "rlnTomoTiltSeriesPixelSize")


class ParticleFormatError(ValueError):
    """A particle file that cannot be read: a missing column, unit or pixel size."""


@dataclass
class ParticleList:
    """Particle positions (n, 3) as x, y, z in angstroms, with a class name, score and id each.

    ``rotations`` (n, 3, 3), when known, are the matrices that turn a particle's reference
    frame into the tomogram's x, y, z frame, as copick's ``transformation_`` stores them.
    """

    positions: np.ndarray
    class_names: np.ndarray
    # NaN where the source gives no score.
    scores: np.ndarray
    ids: np.ndarray
    tomogram: str | None = None
    warnings: list[str] = field(default_factory=list)
    rotations: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        count = len(self.positions)
        self.class_names = np.asarray(self.class_names, dtype=object).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        for name, values in (("class_names", self.class_names), ("scores", self.scores), ("ids", self.ids)):
            if len(values) != count:
                raise ValueError(f"ParticleList has {count} positions but {len(values)} {name}")
        if self.rotations is not None:
            self.rotations = np.asarray(self.rotations, dtype=np.float64)
            if self.rotations.shape != (count, 3, 3):
                raise ValueError(f"ParticleList has {count} positions but rotations of shape {self.rotations.shape}")

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def from_positions(cls, positions, class_name="", scores=None, tomogram=None) -> ParticleList:
        """Build a list where every particle has one class, NaN scores by default and ids 0..n-1."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        count = len(positions)
        names = np.full(count, class_name, dtype=object) if isinstance(class_name, str) else class_name
        if scores is None:
            scores = np.full(count, np.nan)
        return cls(positions, names, scores, np.arange(count), tomogram)

    def select(self, mask) -> ParticleList:
        rotations = None if self.rotations is None else self.rotations[mask]
        return ParticleList(
            self.positions[mask],
            self.class_names[mask],
            self.scores[mask],
            self.ids[mask],
            self.tomogram,
            rotations=rotations,
        )

    @staticmethod
    def concatenate(lists: list[ParticleList]) -> ParticleList:
        if not lists:
            return ParticleList(np.zeros((0, 3)), [], [], [])
        # Rotations survive only when every list has them.
        known = all(item.rotations is not None for item in lists)
        return ParticleList(
            np.concatenate([item.positions for item in lists]),
            np.concatenate([item.class_names for item in lists]),
            np.concatenate([item.scores for item in lists]),
            np.concatenate([item.ids for item in lists]),
            lists[0].tomogram,
            rotations=np.concatenate([item.rotations for item in lists]) if known else None,
        )


def _positive_size(value, what: str) -> float:
    if value is None or not np.isfinite(value) or value <= 0:
        raise ParticleFormatError(f"{what} is {value!r}; pass a positive pixel size in angstroms")
    return float(value)


# RELION STAR


def _class_names_from_numbers(frame: pd.DataFrame, class_names: tuple[str, ...]) -> np.ndarray:
    if "rlnClassNumber" not in frame:
        return np.full(len(frame), "", dtype=object)
    names = []
    for number in frame["rlnClassNumber"].astype(int):
        names.append(class_names[number - 1] if 1 <= number <= len(class_names) else f"class {number}")
    return np.array(names, dtype=object)


def _particle_block(path: Path, blocks: dict) -> pd.DataFrame:
    for frame in blocks.values():
        if isinstance(frame, pd.DataFrame) and ("rlnCoordinateX" in frame or "rlnCenteredCoordinateXAngst" in frame):
            return frame
    raise ParticleFormatError(
        f"{path}: no block has rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst columns; "
        "is this a RELION particle STAR file?"
    )


def _relion_pixel_sizes(path: Path, blocks: dict, particles: pd.DataFrame, pixel_size) -> np.ndarray:
    """Return each particle's pixel size: the argument if given, else its optics group's."""
    if pixel_size is not None:
        return np.full(len(particles), _positive_size(pixel_size, "pixel_size"))
    optics = blocks.get("optics")
    if isinstance(optics, pd.DataFrame):
        # Tilt-series pixel size first because RELION 4 tomography coordinates are in
        # unbinned tilt-series pixels, and rlnImagePixelSize is the binned subtomogram's.
        for column in reversed(RELION_OPTICS_PIXEL_COLUMNS):
            if column in optics:
                sizes = dict(zip(optics["rlnOpticsGroup"].astype(int), optics[column].astype(float), strict=True))
                groups = particles["rlnOpticsGroup"].astype(int) if "rlnOpticsGroup" in particles else 1
                return np.asarray(pd.Series(groups, index=particles.index).map(sizes), dtype=np.float64)
    raise ParticleFormatError(
        f"{path}: the file has no optics block with {' or '.join(RELION_OPTICS_PIXEL_COLUMNS)}; "
        "pass pixel_size (angstroms per pixel of the coordinates)"
    )


def read_relion_star(
    path: str | os.PathLike,
    pixel_size: float | None = None,
    tomogram_shape: tuple[int, int, int] | None = None,
    class_names: tuple[str, ...] = STAR_CLASS_NAMES,
    voxel_size: float | None = None,
) -> ParticleList:
    """Read a RELION particle STAR file, version 3.1 to 5.

    RELION 3.1 and 4 give ``rlnCoordinateX/Y/Z`` in pixels, converted with ``pixel_size`` or
    the optics block. RELION 5 gives ``rlnCenteredCoordinateX/Y/ZAngst`` in angstroms from the
    tomogram centre, which needs ``tomogram_shape`` (z, y, x voxels) and the tomogram's
    ``voxel_size`` (``pixel_size`` is used when it is not given). ``rlnClassNumber`` n maps
    to ``class_names[n - 1]``.
    """
    path = Path(path)
    blocks = starfile.read(path, always_dict=True)
    particles = _particle_block(path, blocks)
    if "rlnCoordinateX" in particles:
        sizes = _relion_pixel_sizes(path, blocks, particles, pixel_size)
        pixels = particles[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(np.float64)
        positions = pixels * sizes[:, None]
    else:
        voxel_size = voxel_size if voxel_size is not None else pixel_size
        if tomogram_shape is None or voxel_size is None:
            raise ParticleFormatError(
                f"{path}: RELION 5 centred coordinates need tomogram_shape (z, y, x voxels) and "
                "voxel_size (angstroms per voxel) to place particles from the corner"
            )
        centred = particles[
            ["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]
        ].to_numpy(np.float64)
        positions = centred + _relion5_centre(tomogram_shape, _positive_size(voxel_size, "voxel_size"))
    tomograms = None
    for column in ("rlnTomoName", "rlnMicrographName"):
        if column in particles:
            tomograms = particles[column].astype(str).to_numpy()
            break
    scores = (
        particles["rlnAutopickFigureOfMerit"].to_numpy(np.float64)
        if "rlnAutopickFigureOfMerit" in particles
        else np.full(len(particles), np.nan)
    )
    result = ParticleList(
        positions, _class_names_from_numbers(particles, class_names), scores, np.arange(len(particles))
    )
    if tomograms is not None and len(set(tomograms)) == 1:
        result.tomogram = str(tomograms[0])
    elif tomograms is not None:
        result.warnings.append(
            f"{path}: particles from {len(set(tomograms))} tomograms were read into one list; "
            "filter by tomogram before placing them in a volume"
        )
    return result


def _relion5_centre(tomogram_shape: tuple[int, int, int], pixel_size: float) -> np.ndarray:
    # NOTE: the centre is taken as size / 2 voxels, as pytom-match-pick and common RELION 5
    # converters do; RELION's own code was not checked for odd sizes.
    depth, height, width = tomogram_shape
    return np.array([width, height, depth], dtype=np.float64) / 2 * pixel_size


def write_relion_star(
    path: str | os.PathLike,
    particles: ParticleList,
    pixel_size: float,
    version: int = 4,
    tomogram_shape: tuple[int, int, int] | None = None,
    class_names: tuple[str, ...] = STAR_CLASS_NAMES,
    optics: bool = True,
) -> Path:
    """Write a RELION particle STAR file: version 4 in pixels, version 5 centred in angstroms."""
    path = Path(path)
    pixel_size = _positive_size(pixel_size, "pixel_size")
    frame = pd.DataFrame()
    frame["rlnTomoName"] = [particles.tomogram or "tomogram"] * len(particles)

    if version == 5:
        if tomogram_shape is None:
            raise ValueError("RELION 5 centred coordinates need tomogram_shape (z, y, x voxels)")
        centred = particles.positions - _relion5_centre(tomogram_shape, pixel_size)
        for axis, column in enumerate("XYZ"):
            frame[f"rlnCenteredCoordinate{column}Angst"] = centred[:, axis]
    elif version <= 4:
        for axis, column in enumerate("XYZ"):
            frame[f"rlnCoordinate{column}"] = particles.positions[:, axis] / pixel_size
    else:
        raise ValueError(f"RELION version {version} is not supported; use 4 or 5")

    name_to_number = {name: number for number, name in enumerate(class_names, start=1)}
    # Other names take the numbers after class_names, in sorted order, and read back as "class N".
    extra = sorted(set(map(str, particles.class_names)) - set(name_to_number) - {""})
    name_to_number.update({name: len(class_names) + offset for offset, name in enumerate(extra, start=1)})
    frame["rlnClassNumber"] = [name_to_number.get(str(name), 0) for name in particles.class_names]
    frame["rlnAutopickFigureOfMerit"] = particles.scores

    blocks = {"particles": frame}
    if optics:
        frame["rlnOpticsGroup"] = 1
        pixel_column = "rlnTomoTiltSeriesPixelSize" if version >= 4 else "rlnImagePixelSize"
        blocks = {
            "optics": pd.DataFrame(
                {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], pixel_column: [pixel_size]}
            ),
            "particles": frame,
        }
    starfile.write(blocks, path, overwrite=True)
    return path


# copick


def read_copick(path: str | os.PathLike) -> ParticleList:
    """Read one copick pick file: points with locations in angstroms and one object name."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
        points = document["points"] or []
        positions = [[point["location"][axis] for axis in "xyz"] for point in points]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ParticleFormatError(
            f"{path}: not a copick pick file ({error}); expected {{'points': [{{'location': {{'x', 'y', 'z'}}}}]}}"
        ) from error
    unit = document.get("unit", "angstrom")
    if unit != "angstrom":
        raise ParticleFormatError(f"{path}: copick unit is {unit!r}; only 'angstrom' is supported")
    name = document.get("pickable_object_name") or ""
    scores = [np.nan if point.get("score") is None else point["score"] for point in points]
    result = ParticleList.from_positions(np.array(positions, dtype=np.float64), name, scores, document.get("run_name"))
    if points and all(point.get("transformation_") is not None for point in points):
        result.rotations = np.array([point["transformation_"] for point in points], dtype=np.float64)[:, :3, :3]
    return result


def write_copick(
    path: str | os.PathLike, particles: ParticleList, user_id: str = "biovlm", session_id: str = "0"
) -> Path:
    """Write the particles of one class as a copick pick file."""
    path = Path(path)
    names = set(particles.class_names)
    if len(names) > 1:
        raise ValueError(f"a copick pick file contains one object, but the particles have classes {sorted(names)}")
    points = []
    for index, (position, score) in enumerate(zip(particles.positions, particles.scores, strict=True)):
        transformation = np.eye(4)
        if particles.rotations is not None:
            transformation[:3, :3] = particles.rotations[index]
        point = {
            "location": {"x": float(position[0]), "y": float(position[1]), "z": float(position[2])},
            "transformation_": transformation.tolist(),
            "instance_id": 0,
        }
        if np.isfinite(score):
            point["score"] = float(score)
        points.append(point)
    document = {
        "pickable_object_name": names.pop() if names else "",
        "user_id": user_id,
        "session_id": session_id,
        "run_name": particles.tomogram,
        "unit": "angstrom",
        "trust_orientation": False,
        "points": points,
    }
    path.write_text(json.dumps(document, indent=1))
    return path


def write_copick_run(
    directory: str | os.PathLike, particles: ParticleList, user_id: str = "biovlm", session_id: str = "0"
) -> list[Path]:
    """Write one copick file per class, named ``<user>_<session>_<class>.json`` as copick does."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in sorted(set(particles.class_names)):
        subset = particles.select(particles.class_names == name)
        paths.append(write_copick(directory / f"{user_id}_{session_id}_{name}.json", subset, user_id, session_id))
    return paths


def read_copick_run(directory: str | os.PathLike) -> ParticleList:
    """Read every copick pick file in a directory into one list."""
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise ParticleFormatError(f"{directory}: no copick pick files (*.json) found")
    combined = ParticleList.concatenate([read_copick(path) for path in paths])
    combined.ids = np.arange(len(combined))
    return combined


# CSV


def _unit_scale(unit: str, voxel_size: float | None, source: str) -> float:
    if unit not in CSV_UNITS:
        raise ParticleFormatError(f"{source}: unit {unit!r} is invalid; use one of {', '.join(CSV_UNITS)}")
    if unit == "nm":
        return 10.0
    if unit == "pixel":
        return _positive_size(voxel_size, f"{source}: voxel_size for pixel coordinates")
    return 1.0


def read_csv(path: str | os.PathLike, unit: str | None = None, voxel_size: float | None = None) -> ParticleList:
    """Read a CSV with columns x, y, z and optional class and score.

    The unit comes from ``unit`` or a first line ``# unit: angstrom`` (or nm, pixel). A file
    with neither is rejected, because a guessed unit moves every particle.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("#"):
        stated = lines[0].lstrip("#").strip()
        if stated.lower().startswith("unit"):
            file_unit = stated.split(":", 1)[-1].split("=", 1)[-1].strip().lower()
            unit = unit or file_unit
        lines = lines[1:]
    if unit is None:
        raise ParticleFormatError(
            f"{path}: the CSV states no unit, and a guessed unit would move every particle. Add a first line "
            "'# unit: angstrom' (or nm, pixel), or choose the unit when reading it: unit= in Python, --unit on "
            "the command line, 'Unit of CSV references' on the tomogram page, or reference_unit in the API"
        )
    scale = _unit_scale(unit, voxel_size, str(path))
    rows = list(csv.DictReader(lines))
    if rows and not {"x", "y", "z"} <= set(rows[0]):
        raise ParticleFormatError(f"{path}: columns are {list(rows[0])}; expected x, y, z and optional class, score")
    try:
        positions = np.array([[float(row[axis]) for axis in "xyz"] for row in rows], dtype=np.float64) * scale
        scores = [float(row["score"]) if row.get("score") not in (None, "") else np.nan for row in rows]
    except ValueError as error:
        raise ParticleFormatError(f"{path}: a coordinate or score is not a number: {error}") from error
    names = np.array([row.get("class") or "" for row in rows], dtype=object)
    return ParticleList(positions.reshape(-1, 3), names, scores, np.arange(len(rows)))


def write_csv(
    path: str | os.PathLike, particles: ParticleList, unit: str = "angstrom", voxel_size: float | None = None
) -> Path:
    """Write x, y, z, class, score with a ``# unit: ...`` first line."""
    path = Path(path)
    scale = _unit_scale(unit, voxel_size, "write_csv")
    with path.open("w", newline="") as handle:
        handle.write(f"# unit: {unit}\n")
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "z", "class", "score"])
        for position, name, score in zip(
            particles.positions / scale, particles.class_names, particles.scores, strict=True
        ):
            writer.writerow(
                [*(repr(float(value)) for value in position), name, "" if np.isnan(score) else repr(float(score))]
            )
    return path


# CryoET Data Portal NDJSON


def read_portal_ndjson(path: str | os.PathLike, voxel_size: float, class_name: str = "") -> ParticleList:
    """Read CryoET Data Portal point annotations (one JSON object a line, locations in voxels)."""
    path = Path(path)
    scale = _positive_size(voxel_size, f"{path}: voxel_size")
    positions, rotations = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record.get("type") not in ("point", "orientedPoint"):
                raise KeyError(f"type {record.get('type')!r}")
            positions.append([float(record["location"][axis]) for axis in "xyz"])
            rotations.append(record.get("xyz_rotation_matrix"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ParticleFormatError(
                f"{path}:{number}: not a portal point ({error}); expected "
                '{"type": "orientedPoint", "location": {"x", "y", "z"}}'
            ) from error
    result = ParticleList.from_positions(np.array(positions, dtype=np.float64) * scale, class_name)
    if rotations and all(rotation is not None for rotation in rotations):
        result.rotations = np.array(rotations, dtype=np.float64)
    return result


def write_portal_ndjson(path: str | os.PathLike, particles: ParticleList, voxel_size: float) -> Path:
    """Write oriented points in voxels, with identity rotations where the list has none."""
    path = Path(path)
    scale = _positive_size(voxel_size, "voxel_size")
    with path.open("w") as handle:
        for index, position in enumerate(particles.positions / scale):
            rotation = np.eye(3) if particles.rotations is None else particles.rotations[index]
            record = {
                "type": "orientedPoint",
                "location": {"x": float(position[0]), "y": float(position[1]), "z": float(position[2])},
                "xyz_rotation_matrix": rotation.tolist(),
            }
            handle.write(json.dumps(record) + "\n")
    return path


# IMOD model2point text


def read_imod_points(
    path: str | os.PathLike, voxel_size: float, object_names: dict[int, str] | None = None
) -> ParticleList:
    """Read ``model2point`` output: ``x y z`` in pixels, optionally after object and contour numbers.

    With 5 columns the first is the object number, mapped to a class through ``object_names``.
    """
    path = Path(path)
    scale = _positive_size(voxel_size, f"{path}: voxel_size")
    positions, names = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (3, 4, 5):
            raise ParticleFormatError(
                f"{path}:{number}: {len(fields)} columns; expected 'x y z', 'contour x y z' or 'object contour x y z'"
            )
        try:
            values = [float(value) for value in fields]
        except ValueError as error:
            raise ParticleFormatError(f"{path}:{number}: not a number: {error}") from error
        positions.append(values[-3:])
        object_number = int(values[0]) if len(fields) == 5 else 1
        names.append((object_names or {}).get(object_number, ""))
    return ParticleList(
        np.array(positions, dtype=np.float64).reshape(-1, 3) * scale,
        names,
        [np.nan] * len(names),
        np.arange(len(names)),
    )


def write_imod_points(
    path: str | os.PathLike, particles: ParticleList, voxel_size: float, object_numbers: dict[str, int] | None = None
) -> Path:
    """Write ``object contour x y z`` lines in pixels, one contour per object as ``point2model`` reads."""
    path = Path(path)
    scale = _positive_size(voxel_size, "voxel_size")
    numbers = object_numbers or {name: index for index, name in enumerate(sorted(set(particles.class_names)), start=1)}
    with path.open("w") as handle:
        for position, name in zip(particles.positions / scale, particles.class_names, strict=True):
            handle.write(f"{numbers.get(name, 1)} 1 {position[0]:.4f} {position[1]:.4f} {position[2]:.4f}\n")
    return path


# Convention checks


def _fraction_inside(positions: np.ndarray, extent: np.ndarray) -> float:
    if len(positions) == 0:
        return 1.0
    inside = np.all((positions >= 0) & (positions <= extent), axis=1)
    return float(inside.mean())


def _describe_range(positions: np.ndarray) -> str:
    low, high = positions.min(axis=0), positions.max(axis=0)
    return ", ".join(f"{axis} {low[i]:.0f} to {high[i]:.0f} Å" for i, axis in enumerate("xyz"))


def check_conventions(
    particles: ParticleList, volume_shape: tuple[int, int, int], voxel_size: float, fit_fraction: float = 0.95
) -> list[str]:
    """Return warnings, with the numbers behind them, when the positions look mis-converted.

    ``volume_shape`` is (z, y, x) voxels and ``voxel_size`` angstroms per voxel. The checks
    are: positions crowded into the corner as pixels read as angstroms would be, positions
    that fit only after dividing by the voxel size, coordinates that look centred, z and x
    swapped, and points outside the volume.
    """
    positions = particles.positions
    if len(positions) == 0:
        return []
    voxel_size = _positive_size(voxel_size, "voxel_size")
    extent = np.array(volume_shape[::-1], dtype=np.float64) * voxel_size
    extent_text = f"the volume spans x 0 to {extent[0]:.0f}, y 0 to {extent[1]:.0f}, z 0 to {extent[2]:.0f} Å"
    inside = _fraction_inside(positions, extent)
    warnings = []
    # A unit or origin mix-up moves most points, so those checks need most points outside, and a
    # few stray points only produce the "outside" warning.
    misplaced = inside < 0.5

    if misplaced and _fraction_inside(positions / voxel_size, extent) >= fit_fraction:
        warnings.append(
            f"positions look like angstroms converted from pixels a second time: {inside:.0%} fit, but "
            f"{_fraction_inside(positions / voxel_size, extent):.0%} fit when divided by {voxel_size} Å; "
            f"{_describe_range(positions)}; {extent_text}"
        )
    elif inside >= fit_fraction and len(positions) >= 10 and voxel_size > 1:
        # Pixel coordinates taken as angstroms all crowd into the corner 1/voxel_size of each axis.
        if np.all(positions.max(axis=0) <= extent / voxel_size) and np.any(extent / voxel_size > 2 * voxel_size):
            warnings.append(
                f"all positions lie within the first 1/{voxel_size:g} of every axis ({_describe_range(positions)}); "
                f"they may be pixels read as angstroms; {extent_text}"
            )

    if misplaced and (positions < 0).any(axis=1).mean() > 0.1:
        shifted = positions + extent / 2
        if _fraction_inside(shifted, extent) >= fit_fraction:
            warnings.append(
                f"coordinates look centred on the volume rather than measured from its corner: "
                f"{(positions < 0).any(axis=1).mean():.0%} have a negative coordinate and "
                f"{_fraction_inside(shifted, extent):.0%} fit after adding half the volume extent; "
                f"{_describe_range(positions)}; {extent_text}"
            )

    z_values, x_values = positions[:, 2], positions[:, 0]
    if np.ptp(z_values) > extent[2] and np.all((x_values >= 0) & (x_values <= extent[2])):
        swapped = positions[:, ::-1]
        warnings.append(
            f"z and x look swapped: z spans {np.ptp(z_values):.0f} Å, more than the volume's z extent "
            f"{extent[2]:.0f} Å, while every x fits within it; {_fraction_inside(swapped, extent):.0%} fit "
            f"with x and z exchanged"
        )

    outside = ~np.all((positions >= 0) & (positions <= extent), axis=1)
    if outside.any():
        examples = "; ".join(
            f"id {particle_id} at ({p[0]:.0f}, {p[1]:.0f}, {p[2]:.0f})"
            for particle_id, p in zip(particles.ids[outside][:3], positions[outside][:3], strict=True)
        )
        warnings.append(
            f"{int(outside.sum())} of {len(positions)} points lie outside the volume ({examples}); {extent_text}"
        )
    return warnings


# Format detection


def read_particles(
    path: str | os.PathLike,
    volume_shape: tuple[int, int, int] | None = None,
    voxel_size: float | None = None,
    **options,
) -> ParticleList:
    """Read a particle file, choosing the reader from its suffix, and check it against a volume.

    ``.star`` is RELION, ``.json`` or a directory is copick, ``.ndjson`` is the CryoET Data
    Portal, ``.csv`` is CSV, and ``.txt`` or ``.pts`` is IMOD ``model2point`` text.
    ``voxel_size`` (Å) converts voxel coordinates, and with ``volume_shape`` (z, y, x) the
    result's ``warnings`` get the findings of ``check_conventions``. Other keyword arguments
    go to the reader (``pixel_size``, ``unit``, ``class_name``, ``object_names``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        particles = read_copick_run(path)
    elif suffix == ".star":
        particles = read_relion_star(
            path, options.get("pixel_size"), tomogram_shape=volume_shape, voxel_size=voxel_size
        )
    elif suffix == ".json":
        particles = read_copick(path)
    elif suffix == ".ndjson":
        particles = read_portal_ndjson(path, voxel_size, options.get("class_name", ""))
    elif suffix == ".csv":
        particles = read_csv(path, options.get("unit"), voxel_size)
    elif suffix in (".txt", ".pts"):
        particles = read_imod_points(path, voxel_size, options.get("object_names"))
    else:
        raise ParticleFormatError(
            f"{path}: unknown particle file type {suffix!r}; expected .star, .json, .ndjson, .csv, .txt or .pts"
        )
    if volume_shape is not None and voxel_size is not None:
        particles.warnings.extend(check_conventions(particles, volume_shape, voxel_size))
    return particles
