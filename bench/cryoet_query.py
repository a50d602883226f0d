"""Benchmark the cryo-ET query tools on random particle maps against a brute-force NumPy scan.

Builds a map of uniformly random particles (six classes, equal odds) for each size in
``--sizes``, at the density of 10,000 particles in one 630 x 630 x 184 voxel tomogram at 10 Å
per voxel. Larger maps tile that tomogram in x and y (1M particles span 10 x 10 tomograms), because
1M particles in one tomogram would sit 42 Å apart, closer than the particles' own radii. It times the
k-d tree builds and an .npz save and load, then runs each query tool ``--runs`` times on random
inputs. For each tool it prints the median and 95th percentile latency next to a brute-force
NumPy scan over every particle that computes the same particles, counts, distances or number of
clusters. The nearest-neighbor tool is timed
with and without its Monte Carlo test, because the simulations dominate its cost.
Run it as ``.venv/bin/python bench/cryoet_query.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.cryoet.classes import CLASS_NAMES  # noqa: E402
from analysis.cryoet.query import (  # noqa: E402
    ClustersParams,
    NearestNeighborParams,
    NeighborsParams,
    RegionCompositionParams,
    clusters,
    nearest_neighbor_distances,
    neighbors,
    region_composition,
)
from analysis.cryoet.spatial import SpatialMap  # noqa: E402

TOMOGRAM_SIZE = np.array([6300.0, 6300.0, 1840.0])
PARTICLES_PER_TOMOGRAM = 10_000
# Brute-force scans that grow as n squared are only run up to this many particles per class.
MAX_QUADRATIC_CLASS_SIZE = 20_000


def map_bounds(count: int) -> np.ndarray:
    """Return bounds that tile the tomogram in x and y to keep the benchmark's particle density."""
    scale = np.sqrt(max(1.0, count / PARTICLES_PER_TOMOGRAM))
    return np.array([[0.0, 0.0, 0.0], TOMOGRAM_SIZE * [scale, scale, 1.0]])


def build_map(count: int, seed: int) -> SpatialMap:
    rng = np.random.default_rng(seed)
    bounds = map_bounds(count)
    return SpatialMap(
        ids=np.arange(count),
        class_indices=rng.integers(0, len(CLASS_NAMES), count),
        positions=rng.uniform(bounds[0], bounds[1], size=(count, 3)),
        scores=rng.uniform(size=count).astype(np.float32),
        bounds=bounds,
    )


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return (time.perf_counter() - start) * 1000


def summarize(times: list[float]) -> str:
    if not times:
        return f"{'n/a':>9} {'n/a':>9}"
    return f"{np.median(times):9.2f} {np.percentile(times, 95):9.2f}"


# ---------------------------------------------------------------- brute-force baselines


def brute_neighbors(spatial_map: SpatialMap, params: NeighborsParams) -> np.ndarray:
    distances = np.linalg.norm(spatial_map.positions - np.asarray(params.point), axis=1)
    rows = np.flatnonzero(distances <= params.radius_angstrom)
    return rows[np.argsort(distances[rows])]


def brute_region(spatial_map: SpatialMap, params: RegionCompositionParams) -> np.ndarray:
    positions = spatial_map.positions
    if params.shape == "box":
        inside = np.all((positions >= params.box_min) & (positions <= params.box_max), axis=1)
    else:
        inside = np.linalg.norm(positions - np.asarray(params.center), axis=1) <= params.radius_angstrom
    return np.bincount(spatial_map.class_indices[inside], minlength=len(CLASS_NAMES))


def brute_nearest(spatial_map: SpatialMap, params: NearestNeighborParams) -> np.ndarray:
    points_a = spatial_map.positions[spatial_map.class_indices == CLASS_NAMES.index(params.class_a)]
    points_b = spatial_map.positions[spatial_map.class_indices == CLASS_NAMES.index(params.class_b)]
    result = np.empty(len(points_a))
    for start in range(0, len(points_a), 256):
        block = points_a[start : start + 256]
        squared = ((block[:, None, :] - points_b[None, :, :]) ** 2).sum(axis=2)
        result[start : start + 256] = np.sqrt(squared.min(axis=1))
    return result


def brute_clusters(spatial_map: SpatialMap, params: ClustersParams) -> int:
    points = spatial_map.positions[spatial_map.class_indices == CLASS_NAMES.index(params.class_name)]
    rows, columns = [], []
    for start in range(0, len(points), 256):
        block = points[start : start + 256]
        squared = ((block[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
        block_rows, block_columns = np.nonzero(squared <= params.link_distance_angstrom**2)
        rows.append(block_rows + start)
        columns.append(block_columns)
    rows = np.concatenate(rows)
    columns = np.concatenate(columns)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, columns)), shape=(len(points), len(points)))
    return connected_components(graph, directed=False)[0]


# ---------------------------------------------------------------- random inputs


def random_neighbors(rng, bounds) -> NeighborsParams:
    return NeighborsParams(
        radius_angstrom=float(rng.uniform(200, 1000)), point=rng.uniform(bounds[0], bounds[1]).tolist()
    )


def random_box(rng, bounds) -> RegionCompositionParams:
    sides = rng.uniform([500, 500, 200], [3000, 3000, 1000])
    low = rng.uniform(bounds[0], bounds[1] - sides)
    return RegionCompositionParams(shape="box", box_min=low.tolist(), box_max=(low + sides).tolist())


def random_sphere(rng, bounds) -> RegionCompositionParams:
    return RegionCompositionParams(
        shape="sphere", center=rng.uniform(bounds[0], bounds[1]).tolist(), radius_angstrom=float(rng.uniform(200, 1500))
    )


def random_pair(rng, simulations: int) -> NearestNeighborParams:
    class_a, class_b = rng.choice(CLASS_NAMES, 2, replace=False)
    return NearestNeighborParams(
        class_a=str(class_a), class_b=str(class_b), simulations=simulations, seed=int(rng.integers(1000))
    )


def random_clusters(rng) -> ClustersParams:
    return ClustersParams(class_name=str(rng.choice(CLASS_NAMES)), link_distance_angstrom=float(rng.uniform(100, 400)))


# ---------------------------------------------------------------- main


def bench_size(count: int, runs: int, slow_runs: int, seed: int) -> None:
    spatial_map = build_map(count, seed)
    bounds = spatial_map.bounds
    print(f"\n=== {count:,} particles, bounds {bounds[1].tolist()} Å ===")
    build_ms = timed(lambda: (spatial_map.tree, [spatial_map.class_tree(i) for i in range(len(CLASS_NAMES))]))
    x_sort_ms = timed(spatial_map.x_sorted)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "map.npz"
        save_ms = timed(spatial_map.save, path)
        load_ms = timed(SpatialMap.load, path)
        size_mb = path.stat().st_size / 1e6
    print(
        f"k-d trees (all + 6 classes) {build_ms:.0f} ms, x sort {x_sort_ms:.0f} ms, "
        f"save {save_ms:.0f} ms, load {load_ms:.0f} ms, file {size_mb:.1f} MB"
    )
    per_class = count // len(CLASS_NAMES)
    quadratic = per_class <= MAX_QUADRATIC_CLASS_SIZE

    rng = np.random.default_rng(seed + 1)
    cases = [
        ("neighbors", runs, lambda: random_neighbors(rng, bounds), neighbors, brute_neighbors),
        ("region_composition box", runs, lambda: random_box(rng, bounds), region_composition, brute_region),
        ("region_composition sphere", runs, lambda: random_sphere(rng, bounds), region_composition, brute_region),
        (
            "nearest_neighbor, no CSR",
            slow_runs,
            lambda: random_pair(rng, 0),
            nearest_neighbor_distances,
            brute_nearest if quadratic else None,
        ),
        ("nearest_neighbor, 99 sims", slow_runs, lambda: random_pair(rng, 99), nearest_neighbor_distances, None),
        ("clusters", slow_runs, lambda: random_clusters(rng), clusters, brute_clusters if quadratic else None),
    ]
    print(f"{'tool':28} {'runs':>4}  {'tool median':>11} {'p95 ms':>9}   {'brute median':>12} {'p95 ms':>9}")
    for name, count_runs, make_params, tool, brute in cases:
        tool_times, brute_times = [], []
        for _ in range(count_runs):
            params = make_params()
            tool_times.append(timed(tool, spatial_map, params))
            if brute is not None:
                brute_times.append(timed(brute, spatial_map, params))
        print(f"{name:28} {count_runs:4d}  {summarize(tool_times)}      {summarize(brute_times)}")
    if not quadratic:
        print(
            f"(brute force for nearest_neighbor and clusters is O(n^2) and skipped above {MAX_QUADRATIC_CLASS_SIZE:,} per class)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="Particle counts of the maps."
    )
    parser.add_argument("--runs", type=int, default=50, help="Runs of each fast tool per map.")
    parser.add_argument("--slow-runs", type=int, default=5, help="Runs of nearest_neighbor and clusters per map.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the maps and inputs.")
    args = parser.parse_args()
    print("Times in milliseconds, one process, NumPy/SciPy threads as configured.")
    for count in args.sizes:
        bench_size(count, args.runs, args.slow_runs, args.seed)


if __name__ == "__main__":
    main()
