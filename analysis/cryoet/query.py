"""The four query tools over a ``SpatialMap``: neighbors, region composition, nearest-neighbor
distances with a complete-spatial-randomness test, and clusters.

Each tool takes the map and a parameters dataclass and returns a JSON-ready dict. Positions and
distances are in angstroms; densities are per cubic micrometre (1 µm³ = 1e12 Å³). ``TOOLS`` maps
each tool name to its parameters class and function, so the web layer and the question parser can
build forms, API endpoints and LLM tool specs from it. ``run_tool`` builds the parameters from a
JSON object and validates them against the map.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from analysis.cryoet.spatial import DEFAULT_CSR_SAMPLE, DEFAULT_CSR_SEED, DEFAULT_CSR_SIMULATIONS, SpatialMap

ANGSTROM3_PER_UM3 = 1e12


class QueryError(ValueError):
    """An invalid query parameter; the message names the parameter and the value."""


def _describe(text: str, **schema) -> dict:
    return {"description": text, **schema}


# ---------------------------------------------------------------- parameters


@dataclass
class NeighborsParams:
    """Particles within a radius of a point or of a particle, nearest first."""

    radius_angstrom: float = field(metadata=_describe("Search radius in angstroms.", exclusiveMinimum=0))
    point: list[float] | None = field(default=None, metadata=_describe("Centre as x, y, z in angstroms."))
    particle_id: int | None = field(default=None, metadata=_describe("Id of the particle at the centre."))
    class_name: str | None = field(default=None, metadata=_describe("Count only particles of this class."))
    limit: int = field(default=1000, metadata=_describe("Maximum number of particles listed.", minimum=1))

    def validate(self, spatial_map: SpatialMap) -> None:
        _check_positive("radius_angstrom", self.radius_angstrom)
        if (self.point is None) == (self.particle_id is None):
            raise QueryError("neighbors needs exactly one of point or particle_id.")
        if self.point is not None:
            _check_point("point", self.point)
        else:
            _check_particle(spatial_map, self.particle_id)
        _check_class(spatial_map, self.class_name)
        _check_at_least("limit", self.limit, 1)


REGION_SHAPES = ("tomogram", "box", "sphere")


@dataclass
class RegionCompositionParams:
    """Count, number density and fraction of each class in a box, a sphere or the whole tomogram."""

    shape: str = field(default="tomogram", metadata=_describe("Region shape.", enum=list(REGION_SHAPES)))
    box_min: list[float] | None = field(default=None, metadata=_describe("Box corner x, y, z in angstroms."))
    box_max: list[float] | None = field(default=None, metadata=_describe("Opposite box corner x, y, z in angstroms."))
    center: list[float] | None = field(default=None, metadata=_describe("Sphere centre x, y, z in angstroms."))
    radius_angstrom: float | None = field(default=None, metadata=_describe("Sphere radius in angstroms."))

    def validate(self, spatial_map: SpatialMap) -> None:
        if self.shape not in REGION_SHAPES:
            raise QueryError(f"Invalid shape {self.shape!r}; expected one of {', '.join(REGION_SHAPES)}.")
        if self.shape == "box":
            if self.box_min is None or self.box_max is None:
                raise QueryError("A box region needs box_min and box_max.")
            _check_point("box_min", self.box_min)
            _check_point("box_max", self.box_max)
            if any(high <= low for low, high in zip(self.box_min, self.box_max, strict=True)):
                raise QueryError(
                    f"Invalid box: box_max {self.box_max} must exceed box_min {self.box_min} on every axis."
                )
        if self.shape == "sphere":
            if self.center is None or self.radius_angstrom is None:
                raise QueryError("A sphere region needs center and radius_angstrom.")
            _check_point("center", self.center)
            _check_positive("radius_angstrom", self.radius_angstrom)


@dataclass
class NearestNeighborParams:
    """Distance from every particle of class A to the nearest particle of class B, with a CSR test."""

    class_a: str = field(metadata=_describe("Class whose particles are measured from."))
    class_b: str | None = field(default=None, metadata=_describe("Class measured to; defaults to class_a."))
    bins: int = field(default=20, metadata=_describe("Number of histogram bins.", minimum=1, maximum=200))
    simulations: int = field(
        default=DEFAULT_CSR_SIMULATIONS,
        metadata=_describe("Monte Carlo simulations of uniform points.", minimum=0, maximum=999),
    )
    significance: float = field(default=0.05, metadata=_describe("Two-sided test level.", exclusiveMinimum=0))
    max_sample: int = field(
        default=DEFAULT_CSR_SAMPLE, metadata=_describe("Class A particles sampled for the CSR statistic.", minimum=10)
    )
    seed: int = field(default=DEFAULT_CSR_SEED, metadata=_describe("Random seed of the simulations.", minimum=0))
    include_distances: bool = field(default=True, metadata=_describe("List every class A particle's distance."))

    def validate(self, spatial_map: SpatialMap) -> None:
        _check_class(spatial_map, self.class_a)
        _check_class(spatial_map, self.class_b)
        _check_at_least("bins", self.bins, 1)
        _check_at_least("simulations", self.simulations, 0)
        _check_at_least("max_sample", self.max_sample, 10)
        _check_at_least("seed", self.seed, 0)
        if self.bins > 200:
            raise QueryError(f"Invalid bins {self.bins}; use at most 200.")
        if self.simulations > 999:
            raise QueryError(f"Invalid simulations {self.simulations}; use at most 999.")
        if not 0 < self.significance < 1:
            raise QueryError(f"Invalid significance {self.significance}; use a value between 0 and 1.")


@dataclass
class ClustersParams:
    """Clusters of one class: particles linked when closer than a distance (single linkage)."""

    class_name: str = field(metadata=_describe("Class to cluster."))
    link_distance_angstrom: float = field(metadata=_describe("Linking distance in angstroms.", exclusiveMinimum=0))
    min_size: int = field(default=2, metadata=_describe("Smallest cluster reported.", minimum=1))
    limit: int = field(default=100, metadata=_describe("Maximum number of clusters listed, largest first.", minimum=1))

    def validate(self, spatial_map: SpatialMap) -> None:
        _check_class(spatial_map, self.class_name)
        _check_positive("link_distance_angstrom", self.link_distance_angstrom)
        _check_at_least("min_size", self.min_size, 1)
        _check_at_least("limit", self.limit, 1)


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise QueryError(f"Invalid {name} {value!r}; expected a positive number of angstroms.")


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise QueryError(f"Invalid {name} {value!r}; expected an integer of at least {minimum}.")


def _check_point(name: str, value) -> None:
    if not (isinstance(value, list | tuple) and len(value) == 3):
        raise QueryError(f"Invalid {name} {value!r}; expected three numbers x, y, z in angstroms.")
    for coordinate in value:
        if isinstance(coordinate, bool) or not isinstance(coordinate, int | float) or not math.isfinite(coordinate):
            raise QueryError(f"Invalid {name} {value!r}; expected three finite numbers x, y, z in angstroms.")


def _check_particle(spatial_map: SpatialMap, particle_id) -> None:
    if isinstance(particle_id, bool) or not isinstance(particle_id, int | np.integer):
        raise QueryError(f"Invalid particle_id {particle_id!r}; expected an integer.")
    try:
        spatial_map.row_of(particle_id)
    except KeyError:
        raise QueryError(f"Particle {particle_id} not found in this tomogram's map.") from None


def _check_class(spatial_map: SpatialMap, class_name: str | None) -> None:
    if class_name is not None and class_name not in spatial_map.class_names:
        raise QueryError(f"Unknown class {class_name!r}; expected one of {', '.join(spatial_map.class_names)}.")


# ---------------------------------------------------------------- tools


def _particle_rows(spatial_map: SpatialMap, rows: np.ndarray, distances: np.ndarray | None = None) -> list[dict]:
    result = []
    for position, row in enumerate(rows):
        x, y, z = spatial_map.positions[row]
        item = {
            "id": int(spatial_map.ids[row]),
            "class": spatial_map.class_names[spatial_map.class_indices[row]],
            "x": float(x),
            "y": float(y),
            "z": float(z),
            "score": float(spatial_map.scores[row]),
        }
        if distances is not None:
            item["distance_angstrom"] = float(distances[position])
        result.append(item)
    return result


def neighbors(spatial_map: SpatialMap, params: NeighborsParams) -> dict:
    """List the particles within ``radius_angstrom`` of the centre, nearest first.

    When the centre is a particle, that particle itself is left out.
    """
    params.validate(spatial_map)
    center_row = None
    if params.particle_id is not None:
        center_row = spatial_map.row_of(params.particle_id)
        center = spatial_map.positions[center_row]
    else:
        center = np.asarray(params.point, dtype=float)

    if params.class_name is not None:
        class_index = spatial_map.class_index(params.class_name)
        hits = spatial_map.class_tree(class_index).query_ball_point(center, params.radius_angstrom)
        rows = spatial_map.class_members(class_index)[np.asarray(hits, dtype=np.int64)]
    else:
        rows = np.asarray(spatial_map.tree.query_ball_point(center, params.radius_angstrom), dtype=np.int64)
    if center_row is not None:
        rows = rows[rows != center_row]

    distances = np.linalg.norm(spatial_map.positions[rows] - center, axis=1)
    order = np.argsort(distances, kind="stable")
    rows = rows[order]
    distances = distances[order]
    counts = np.bincount(spatial_map.class_indices[rows], minlength=len(spatial_map.class_names))
    return {
        "center": [float(value) for value in center],
        "particle_id": params.particle_id,
        "radius_angstrom": float(params.radius_angstrom),
        "class_name": params.class_name,
        "count": int(len(rows)),
        "counts_by_class": {name: int(count) for name, count in zip(spatial_map.class_names, counts, strict=True)},
        "particles": _particle_rows(spatial_map, rows[: params.limit], distances[: params.limit]),
        "truncated": bool(len(rows) > params.limit),
    }


_UNIT_BALL_SAMPLE: np.ndarray | None = None


def _unit_ball_sample() -> np.ndarray:
    """Return a fixed set of 20,000 points uniform in the unit ball, for clipped sphere volumes."""
    global _UNIT_BALL_SAMPLE
    if _UNIT_BALL_SAMPLE is None:
        rng = np.random.default_rng(12345)
        directions = rng.normal(size=(20_000, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        _UNIT_BALL_SAMPLE = directions * rng.uniform(size=(20_000, 1)) ** (1 / 3)
    return _UNIT_BALL_SAMPLE


def _sphere_volume_in_bounds(center: np.ndarray, radius: float, bounds: np.ndarray) -> tuple[float, bool]:
    """Return the volume in Å³ of the part of a sphere inside ``bounds``, and whether it is estimated.

    A sphere wholly inside gets the exact volume. Otherwise the fraction inside is estimated from
    20,000 fixed sample points, with a standard error of at most 0.4% of the sphere's volume.
    """
    full = 4 / 3 * math.pi * radius**3
    if np.all(center - radius >= bounds[0]) and np.all(center + radius <= bounds[1]):
        return full, False
    points = center + radius * _unit_ball_sample()
    inside = np.all((points >= bounds[0]) & (points <= bounds[1]), axis=1)
    return full * float(inside.mean()), True


def region_composition(spatial_map: SpatialMap, params: RegionCompositionParams) -> dict:
    """Count the particles of each class in a region, with number density per µm³ and fraction.

    The region's volume is its part inside the tomogram bounds.
    """
    params.validate(spatial_map)
    bounds = spatial_map.bounds
    estimated = False
    if params.shape == "tomogram":
        counts = spatial_map.class_counts()
        volume = spatial_map.volume_angstrom3
    elif params.shape == "box":
        low = np.asarray(params.box_min, dtype=float)
        high = np.asarray(params.box_max, dtype=float)
        sorted_x, sorted_positions, sorted_classes = spatial_map.x_sorted()
        # The particles with x inside the box are one contiguous slice of the x-sorted arrays.
        start = np.searchsorted(sorted_x, low[0], side="left")
        stop = np.searchsorted(sorted_x, high[0], side="right")
        slab = sorted_positions[start:stop]
        inside = (slab[:, 1] >= low[1]) & (slab[:, 1] <= high[1]) & (slab[:, 2] >= low[2]) & (slab[:, 2] <= high[2])
        counts = np.bincount(sorted_classes[start:stop][inside], minlength=len(spatial_map.class_names))
        clipped = np.clip(high, bounds[0], bounds[1]) - np.clip(low, bounds[0], bounds[1])
        volume = float(np.prod(clipped))
    else:
        center = np.asarray(params.center, dtype=float)
        counts = np.array(
            [
                spatial_map.class_tree(index).query_ball_point(center, params.radius_angstrom, return_length=True)
                if len(spatial_map.class_members(index))
                else 0
                for index in range(len(spatial_map.class_names))
            ],
            dtype=np.int64,
        )
        volume, estimated = _sphere_volume_in_bounds(center, params.radius_angstrom, bounds)

    total = int(counts.sum())
    volume_um3 = volume / ANGSTROM3_PER_UM3
    classes = []
    for name, count in zip(spatial_map.class_names, counts, strict=True):
        classes.append(
            {
                "class": name,
                "count": int(count),
                "density_per_um3": float(count / volume_um3) if volume_um3 > 0 else None,
                "fraction": float(count / total) if total else 0.0,
            }
        )
    return {
        "shape": params.shape,
        "volume_um3": volume_um3,
        "volume_estimated": estimated,
        "count": total,
        "density_per_um3": total / volume_um3 if volume_um3 > 0 else None,
        "classes": classes,
    }


# Most recent class pairs whose distances are kept as Python lists, to bound memory. At 1M
# particles in six classes one pair's list takes about 5 MB (estimate: a pointer and a float object
# per particle).
LIST_CACHE_PAIRS = 8


def _memo(spatial_map: SpatialMap, key: tuple, compute: Callable[[], typing.Any], keep: int | None = None):
    """Return ``compute()``, memoised on the map under ``key``; with ``keep``, only that many of
    the most recent keys with the same first element stay.

    The map's lock guards the dict, so threads may share a map. Two threads that miss the same
    key both compute it, and the results are equal.
    """
    cache = spatial_map.query_cache
    with spatial_map.cache_lock:
        if key in cache:
            value = cache.pop(key)
            cache[key] = value
            return value
    value = compute()
    with spatial_map.cache_lock:
        cache[key] = value
        if keep is not None:
            same_kind = [other for other in cache if other[0] == key[0]]
            for other in same_kind[: max(0, len(same_kind) - keep)]:
                del cache[other]
    return value


def _csr_test(spatial_map: SpatialMap, index_a: int, index_b: int, params: NearestNeighborParams) -> dict:
    """Compare the mean nearest-neighbor distance with simulations of uniform points in the tomogram bounds.

    For one class, each simulation draws as many uniform points as the class has and measures
    them among themselves. For two classes, class A stays fixed and class B is replaced by uniform
    points. Class A is subsampled to ``max_sample`` particles for the statistic. The p-value is
    two-sided and rank-based, so its smallest value is 2 / (simulations + 1). The simulations of
    each (class A, class B, sample size, seed) are memoised on the map (see ``SpatialMap.csr_null``),
    because they depend only on those, the class sizes and the bounds.
    """
    sample, simulated = spatial_map.csr_null(index_a, index_b, params.max_sample, params.seed, params.simulations)
    observed = float(spatial_map.nearest_distances(index_a, index_b)[sample].mean())
    if params.simulations == 0:
        return {"observed_mean_angstrom": observed, "simulations": 0, "verdict": None, "p_value": None}
    below = (1 + np.count_nonzero(simulated <= observed)) / (params.simulations + 1)
    above = (1 + np.count_nonzero(simulated >= observed)) / (params.simulations + 1)
    p_value = min(1.0, 2 * min(below, above))
    if p_value >= params.significance:
        verdict = "random"
    elif observed < np.median(simulated):
        verdict = "clustered"
    else:
        verdict = "dispersed"
    return {
        "statistic": "mean nearest-neighbor distance",
        "observed_mean_angstrom": observed,
        "simulated_mean_angstrom": float(simulated.mean()),
        "envelope_angstrom": [float(simulated.min()), float(simulated.max())],
        "simulations": params.simulations,
        "sampled_particles": int(len(sample)),
        "p_value": p_value,
        "significance": params.significance,
        "verdict": verdict,
    }


def _distance_summary(distances: np.ndarray) -> dict:
    return {
        "median_angstrom": float(np.median(distances)),
        "mean_angstrom": float(distances.mean()),
        "min_angstrom": float(distances.min()),
        "max_angstrom": float(distances.max()),
    }


def _histogram(distances: np.ndarray, bins: int) -> dict:
    counts, edges = np.histogram(distances, bins=bins)
    return {"edges_angstrom": edges.tolist(), "counts": counts.tolist()}


def nearest_neighbor_distances(spatial_map: SpatialMap, params: NearestNeighborParams) -> dict:
    """Measure each class A particle's distance to the nearest class B particle and test it against CSR.

    ``verdict`` is "clustered" when A particles are closer to B than uniform B would be,
    "dispersed" when farther, and "random" when the test finds no difference at ``significance``.
    The distances, their summary, histograms and simulations are memoised on the map, and the
    listed distances are shallow copies of memoised lists, so a caller may change them freely.
    """
    params.validate(spatial_map)
    class_b = params.class_b or params.class_a
    index_a = spatial_map.class_index(params.class_a)
    index_b = spatial_map.class_index(class_b)
    count_a = len(spatial_map.class_members(index_a))
    count_b = len(spatial_map.class_members(index_b))
    needed_b = 2 if index_a == index_b else 1
    if index_a == index_b and count_a < 2:
        raise QueryError(
            f"Class {params.class_a!r} has {count_a} particle(s) in this map; distances between "
            "particles of one class need at least 2."
        )
    if count_a == 0 or count_b < needed_b:
        raise QueryError(
            f"Class {params.class_a!r} has {count_a} particle(s) and {class_b!r} has {count_b}; "
            "nearest-neighbor distances need at least 1 of each."
        )

    distances = spatial_map.nearest_distances(index_a, index_b)
    histogram = _memo(
        spatial_map,
        ("nearest histogram", index_a, index_b, params.bins),
        lambda: _histogram(distances, params.bins),
        keep=64,
    )
    result = {
        "class_a": params.class_a,
        "class_b": class_b,
        "count_a": count_a,
        "count_b": count_b,
        **_memo(spatial_map, ("nearest summary", index_a, index_b), lambda: _distance_summary(distances)),
        "histogram": {name: list(values) for name, values in histogram.items()},
        "csr": _csr_test(spatial_map, index_a, index_b, params),
    }
    if params.include_distances:
        ids = _memo(
            spatial_map,
            ("class ids list", index_a),
            lambda: spatial_map.ids[spatial_map.class_members(index_a)].tolist(),
        )
        distance_list = _memo(spatial_map, ("nearest list", index_a, index_b), distances.tolist, keep=LIST_CACHE_PAIRS)
        result["particle_ids"] = list(ids)
        result["distances_angstrom"] = list(distance_list)
    return result


# Most recent clusters results kept, as (class, linking distance, min_size, limit).
CLUSTERS_CACHE_ENTRIES = 16


def _copy_clusters_result(result: dict) -> dict:
    """Return a copy whose lists a caller may change without touching the memoised result."""
    copied = dict(result)
    copied["clusters"] = [
        {key: list(value) if isinstance(value, list) else value for key, value in cluster.items()}
        for cluster in result["clusters"]
    ]
    return copied


def clusters(spatial_map: SpatialMap, params: ClustersParams) -> dict:
    """Group the particles of one class by single linkage at ``link_distance_angstrom``.

    Two particles share a cluster when a chain of particles links them with each step at most the
    linking distance. Clusters smaller than ``min_size`` are counted as unclustered. Clusters are
    listed largest first, ties by their smallest row. The clusters come from the class's memoised
    linkage forest (see ``SpatialMap.linkage_forest``), which serves every linking distance up to
    the largest it was built for, and the most recent results are memoised too.
    """
    params.validate(spatial_map)
    class_index = spatial_map.class_index(params.class_name)
    key = ("clusters", class_index, float(params.link_distance_angstrom), params.min_size, params.limit)
    result = _memo(
        spatial_map, key, lambda: _compute_clusters(spatial_map, class_index, params), CLUSTERS_CACHE_ENTRIES
    )
    return _copy_clusters_result(result)


def _compute_clusters(spatial_map: SpatialMap, class_index: int, params: ClustersParams) -> dict:
    rows = spatial_map.class_members(class_index)
    count = len(rows)
    if count:
        forest = spatial_map.linkage_forest(class_index, params.link_distance_angstrom)
        order = forest.order
        starts = forest.cluster_starts(params.link_distance_angstrom)
        sizes = np.diff(np.append(starts, count))
        smallest_member = np.minimum.reduceat(order, starts)
    else:
        order = starts = sizes = smallest_member = np.empty(0, dtype=np.int64)
    reported = np.flatnonzero(sizes >= params.min_size)
    reported = reported[np.lexsort((smallest_member[reported], -sizes[reported]))]
    listed_clusters = reported[: params.limit]

    # Each listed cluster is a run of the forest order. Marking the runs with the cluster's slot
    # and sorting the marked members by slot groups them with rows increasing within a cluster.
    # Slots fit in int16 up to 32,767 listed clusters, and NumPy's stable sort of int16 is a radix sort.
    slot_type = np.int16 if len(listed_clusters) < np.iinfo(np.int16).max else np.int64
    member_slots = np.full(count, -1, dtype=slot_type)
    for slot, cluster in enumerate(listed_clusters):
        member_slots[order[starts[cluster] : starts[cluster] + sizes[cluster]]] = slot
    members = np.flatnonzero(member_slots >= 0)
    members = members[np.argsort(member_slots[members], kind="stable")]
    member_rows = rows[members]
    offsets = np.concatenate([[0], np.cumsum(sizes[listed_clusters])]).astype(np.int64)

    listed = []
    if len(listed_clusters):
        positions = spatial_map.positions[member_rows]
        centroids = np.add.reduceat(positions, offsets[:-1]) / sizes[listed_clusters][:, None]
        extents = np.maximum.reduceat(positions, offsets[:-1]) - np.minimum.reduceat(positions, offsets[:-1])
        member_ids = spatial_map.ids[member_rows]
        for slot, cluster in enumerate(listed_clusters):
            ids = member_ids[offsets[slot] : offsets[slot + 1]]
            listed.append(
                {
                    "size": int(sizes[cluster]),
                    "centroid": centroids[slot].tolist(),
                    "extent_angstrom": extents[slot].tolist(),
                    # Rows increase within a cluster, so the ids are already sorted when the map's ids are.
                    "particle_ids": (ids if spatial_map.ids_increasing else np.sort(ids)).tolist(),
                }
            )
    clustered = int(sizes[reported].sum())
    return {
        "class_name": params.class_name,
        "link_distance_angstrom": float(params.link_distance_angstrom),
        "min_size": params.min_size,
        "particle_count": int(count),
        "cluster_count": int(len(reported)),
        "clustered_particle_count": clustered,
        "unclustered_particle_count": int(count - clustered),
        "clusters": listed,
        "truncated": bool(len(reported) > params.limit),
    }


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Tool:
    name: str
    params_class: type
    function: Callable[[SpatialMap, typing.Any], dict]
    description: str


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("neighbors", NeighborsParams, neighbors, "List particles within a radius of a point or a particle."),
        Tool(
            "region_composition",
            RegionCompositionParams,
            region_composition,
            "Count, density per µm³ and fraction of each class in a box, a sphere or the whole tomogram.",
        ),
        Tool(
            "nearest_neighbor_distances",
            NearestNeighborParams,
            nearest_neighbor_distances,
            "Nearest-neighbor distances from class A to class B with a complete-spatial-randomness test.",
        ),
        Tool("clusters", ClustersParams, clusters, "Single-linkage clusters of one class within a linking distance."),
    )
}


def _json_type(annotation) -> tuple[dict, bool]:
    """Return the JSON schema of a parameter annotation and whether it allows null."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0]
    if typing.get_origin(annotation) is list:
        return {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}, optional
    simple = {float: "number", int: "integer", str: "string", bool: "boolean"}
    return {"type": simple[annotation]}, optional


def params_schema(params_class: type) -> dict:
    """Return the JSON schema of a parameters dataclass."""
    hints = typing.get_type_hints(params_class)
    properties = {}
    required = []
    for item in dataclasses.fields(params_class):
        schema, _ = _json_type(hints[item.name])
        schema.update(item.metadata)
        if item.default is not dataclasses.MISSING:
            schema["default"] = item.default
        else:
            required.append(item.name)
        properties[item.name] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def tool_specs(class_names: tuple[str, ...] | None = None) -> list[dict]:
    """Return OpenAI-style function specs of the tools, with class names listed where given."""
    specs = []
    for tool in TOOLS.values():
        schema = params_schema(tool.params_class)
        if class_names:
            for name in ("class_name", "class_a", "class_b"):
                if name in schema["properties"]:
                    schema["properties"][name]["enum"] = list(class_names)
        specs.append(
            {"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": schema}}
        )
    return specs


def build_params(tool_name: str, arguments: dict):
    """Build a tool's parameters from a JSON object, checking names and types."""
    if tool_name not in TOOLS:
        raise QueryError(f"Unknown tool {tool_name!r}; expected one of {', '.join(TOOLS)}.")
    if not isinstance(arguments, dict):
        raise QueryError(f"Arguments of {tool_name} must be a JSON object, got {type(arguments).__name__}.")
    params_class = TOOLS[tool_name].params_class
    hints = typing.get_type_hints(params_class)
    fields = {item.name: item for item in dataclasses.fields(params_class)}
    unknown = sorted(set(arguments) - set(fields))
    if unknown:
        raise QueryError(f"Unknown parameter {unknown[0]!r} for {tool_name}; expected {', '.join(fields)}.")
    values = {}
    for name, item in fields.items():
        if name not in arguments:
            if item.default is dataclasses.MISSING:
                raise QueryError(f"Missing parameter {name!r} for {tool_name}.")
            continue
        values[name] = _coerce(tool_name, name, arguments[name], hints[name])
    return params_class(**values)


def _coerce(tool_name: str, name: str, value, annotation):
    schema, optional = _json_type(annotation)
    if value is None:
        if optional:
            return None
        raise QueryError(f"Parameter {name!r} of {tool_name} must not be null.")
    kind = schema["type"]
    invalid = QueryError(f"Invalid {name} {value!r} for {tool_name}; expected {kind}.")
    if kind == "boolean":
        if not isinstance(value, bool):
            raise invalid
        return value
    if isinstance(value, bool):
        raise invalid
    if kind == "number":
        if not isinstance(value, int | float):
            raise invalid
        return float(value)
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise invalid
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise invalid
        return value
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise QueryError(f"Invalid {name} {value!r} for {tool_name}; expected three numbers x, y, z.")
    if any(isinstance(item, bool) or not isinstance(item, int | float) for item in value):
        raise QueryError(f"Invalid {name} {value!r} for {tool_name}; expected three numbers x, y, z.")
    return [float(item) for item in value]


def run_tool(spatial_map: SpatialMap, tool_name: str, arguments: dict) -> dict:
    """Build a tool's parameters from a JSON object, run the tool and return its result."""
    params = build_params(tool_name, arguments)
    return TOOLS[tool_name].function(spatial_map, params)
