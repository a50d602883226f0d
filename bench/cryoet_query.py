"""Benchmark the cryo-ET query tools on random particle maps against a brute-force NumPy scan.

Builds a map of uniformly random particles (six classes, equal odds) for each size in
``--sizes``, at the density of 10,000 particles in one 630 x 630 x 184 voxel tomogram at 10 Å
per voxel. Larger maps tile that tomogram in x and y (1M particles span 10 x 10 tomograms), because
1M particles in one tomogram would sit 42 Å apart, closer than the particles' own radii.

It prints the one-off costs first: the k-d trees, then each part of ``SpatialMap.precompute``
(nearest-neighbor distances and CSR nulls of every class pair, one linkage forest per class), the
.npz save and load. Then it times each tool on the loaded map, as a server that loads the file
would run it:

- first: the first call after loading, which also builds the k-d trees or lists it needs;
- cold: the other ``--runs`` - 1 calls, each with parameters not asked before (another class
  pair or linking distance), so only what the file holds is reused;
- warm: all ``--runs`` parameters again, served from the results memoised on the map;
- no precompute: ``--slow-runs`` calls with new parameters on a map built from the same arrays
  with its k-d trees but nothing precomputed, which is what a map saved without precomputing
  costs, and what a CSR test with a non-default seed costs on any map;
- brute: a NumPy scan over every particle that computes the same particles, counts, distances or
  number of clusters.

Run it as ``.venv/bin/python bench/cryoet_query.py``.
"""

from __future__ import annotations

import argparse
import os
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
from analysis.cryoet.spatial import DEFAULT_CSR_SIMULATIONS, DEFAULT_FOREST_DISTANCE, SpatialMap  # noqa: E402

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
        return f"{'n/a':>8} {'n/a':>8}"
    return f"{np.median(times):8.2f} {np.percentile(times, 95):8.2f}"


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


class PairSource:
    """Class pairs (A different from B) in a random order without repeats, so each is asked first once."""

    def __init__(self, rng) -> None:
        pairs = [(a, b) for a in CLASS_NAMES for b in CLASS_NAMES if a != b]
        self.pairs = [pairs[index] for index in rng.permutation(len(pairs))]

    def next(self) -> tuple[str, str]:
        if not self.pairs:
            raise SystemExit("Cold runs of nearest_neighbor need a new class pair each; use --runs 30 or fewer.")
        return self.pairs.pop()


def nearest_params(pair: tuple[str, str], **overrides) -> NearestNeighborParams:
    return NearestNeighborParams(class_a=pair[0], class_b=pair[1], **overrides)


def random_clusters(rng) -> ClustersParams:
    return ClustersParams(class_name=str(rng.choice(CLASS_NAMES)), link_distance_angstrom=float(rng.uniform(100, 400)))


# ---------------------------------------------------------------- main


def time_one_offs(spatial_map: SpatialMap, path: Path) -> SpatialMap:
    """Build, precompute, save and load the map, printing each step's time; return the loaded map."""
    class_range = range(len(CLASS_NAMES))
    trees_ms = timed(lambda: (spatial_map.tree, [spatial_map.class_tree(index) for index in class_range]))
    x_sort_ms = timed(spatial_map.x_sorted)
    nearest_ms = timed(
        lambda: [spatial_map.nearest_distances(index_a, index_b) for index_a in class_range for index_b in class_range]
    )
    forests_ms = timed(lambda: [spatial_map.linkage_forest(index, DEFAULT_FOREST_DISTANCE) for index in class_range])
    # The distances and forests are memoised now, so this call only simulates the CSR nulls.
    csr_ms = timed(spatial_map.precompute)
    save_ms = timed(spatial_map.save, path, False)
    start = time.perf_counter()
    loaded = SpatialMap.load(path)
    load_ms = (time.perf_counter() - start) * 1000
    print(
        f"one-off: k-d trees (all + 6 classes) {trees_ms:.0f} ms, x sort {x_sort_ms:.0f} ms; precompute: "
        f"nearest distances of 36 class pairs {nearest_ms:.0f} ms, CSR nulls of 36 pairs x "
        f"{DEFAULT_CSR_SIMULATIONS} simulations {csr_ms:.0f} ms, forests up to {DEFAULT_FOREST_DISTANCE:.0f} Å "
        f"{forests_ms:.0f} ms; save {save_ms:.0f} ms, load {load_ms:.0f} ms, file {path.stat().st_size / 1e6:.1f} MB"
    )
    return loaded


def print_load() -> None:
    """Print the 1, 5 and 15 minute load averages, because other processes on the machine slow every figure."""
    print(f"load average {' '.join(f'{value:.2f}' for value in os.getloadavg())} on {os.cpu_count()} CPUs")


def bench_size(count: int, runs: int, slow_runs: int, seed: int) -> None:
    built = build_map(count, seed)
    bounds = built.bounds
    print(f"\n=== {count:,} particles, bounds {bounds[1].tolist()} Å ===")
    print_load()
    with tempfile.TemporaryDirectory() as directory:
        spatial_map = time_one_offs(built, Path(directory) / "map.npz")
    per_class = count // len(CLASS_NAMES)
    quadratic = per_class <= MAX_QUADRATIC_CLASS_SIZE

    # Without precomputed results: trees kept, memoised results dropped. Built from the same
    # arrays, so the class sizes and thus the simulations match the loaded map's.
    bare = SpatialMap(built.ids, built.class_indices, built.positions, built.scores, built.bounds)
    timed(lambda: (bare.tree, [bare.class_tree(index) for index in range(len(CLASS_NAMES))]))

    rng = np.random.default_rng(seed + 1)
    pairs = PairSource(rng)
    bare_pairs = PairSource(np.random.default_rng(seed + 2))
    new_seed = iter(range(1, 1000))
    cases = [
        # name, runs, parameter maker, tool, brute force, runs without precompute
        ("neighbors", runs, lambda _: random_neighbors(rng, bounds), neighbors, brute_neighbors, 0),
        ("region_composition box", runs, lambda _: random_box(rng, bounds), region_composition, brute_region, 0),
        ("region_composition sphere", runs, lambda _: random_sphere(rng, bounds), region_composition, brute_region, 0),
        (
            "nearest_neighbor, no CSR",
            runs,
            lambda source: nearest_params(source.next(), simulations=0),
            nearest_neighbor_distances,
            brute_nearest if quadratic else None,
            slow_runs,
        ),
        (
            "nearest_neighbor, 99 sims",
            runs,
            lambda source: nearest_params(source.next(), include_distances=False),
            nearest_neighbor_distances,
            None,
            slow_runs,
        ),
        (
            "nearest_neighbor, 99, new seed",
            slow_runs,
            lambda source: nearest_params(source.next(), include_distances=False, seed=next(new_seed)),
            nearest_neighbor_distances,
            None,
            0,
        ),
        ("clusters", runs, lambda _: random_clusters(rng), clusters, brute_clusters if quadratic else None, slow_runs),
    ]
    print(
        f"{'tool':31} {'runs':>4} {'first':>8}  {'cold med':>8} {'p95':>8}  {'warm med':>8} {'p95':>8}  "
        f"{'no-pre med':>10} {'p95':>8}  {'brute med':>9} {'p95':>8}"
    )
    for name, count_runs, make_params, tool, brute, bare_runs in cases:
        params_list = [make_params(pairs) for _ in range(count_runs)]
        first_ms = timed(tool, spatial_map, params_list[0])
        cold = [timed(tool, spatial_map, params) for params in params_list[1:]]
        warm = [timed(tool, spatial_map, params) for params in params_list]
        brute_times = [timed(brute, spatial_map, params) for params in params_list] if brute else []
        bare_times = [timed(tool, bare, make_params(bare_pairs)) for _ in range(bare_runs)]
        print(
            f"{name:31} {count_runs:4d} {first_ms:8.2f}  {summarize(cold)}  {summarize(warm)}  "
            f"{summarize(bare_times):>19}  {summarize(brute_times)}"
        )
    print_load()
    print("(nearest_neighbor 99 sims uses the default seed, served by the precomputed nulls; 'new seed' simulates.)")
    if not quadratic:
        print(
            f"(brute force for nearest_neighbor and clusters is O(n^2) and skipped above {MAX_QUADRATIC_CLASS_SIZE:,} per class)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="Particle counts of the maps."
    )
    parser.add_argument(
        "--runs", type=int, default=10, help="Runs of each tool per map; at most 15, because cold runs need new pairs."
    )
    parser.add_argument(
        "--slow-runs", type=int, default=3, help="Runs that simulate or build from scratch (no precompute, new seed)."
    )
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the maps and inputs.")
    args = parser.parse_args()
    print("Times in milliseconds, one process, NumPy/SciPy threads as configured.")
    for count in args.sizes:
        bench_size(count, args.runs, args.slow_runs, args.seed)


if __name__ == "__main__":
    main()
