"""A spatial map of the particles found in one tomogram, with k-d trees for fast queries.

The map is immutable once built: its arrays are read-only copies. So results derived from it,
the nearest-neighbor distances and CSR Monte Carlo nulls of each class pair and the single-linkage
forest of each class, are computed once, memoised on the map and written to the saved file.
"""

from __future__ import annotations

import heapq
import math
import threading
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from analysis.cryoet.classes import CLASS_NAMES

# Version of the .npz layout written by ``SpatialMap.save``. Version 1 files, which hold no
# precomputed results, still load.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

# Largest linking distance, in angstroms, that the forests built by ``precompute`` serve. Larger
# linking distances build a new forest on first use.
DEFAULT_FOREST_DISTANCE = 500.0

# Defaults of the complete-spatial-randomness test: class A particles sampled for the statistic,
# Monte Carlo simulations and seed. ``precompute`` simulates these for every class pair.
DEFAULT_CSR_SAMPLE = 2000
DEFAULT_CSR_SIMULATIONS = 99
DEFAULT_CSR_SEED = 0


def _read_only(array: np.ndarray) -> np.ndarray:
    """Return a read-only view, leaving the caller's array writable."""
    view = array.view()
    view.flags.writeable = False
    return view


def _frozen_copy(array: np.ndarray, dtype) -> np.ndarray:
    """Return a read-only copy, so that later changes to the caller's array cannot reach the map."""
    copy = np.array(array, dtype=dtype, copy=True, order="C")
    copy.flags.writeable = False
    return copy


class LinkageForest:
    """Single-linkage order of one class's particles, valid for linking distances up to ``max_distance``.

    ``order`` lists the class member indices (positions in ``class_members``) in the order that
    Prim's algorithm visits the minimum spanning forest of the graph linking members closer than
    ``max_distance``. ``reachability[i]`` is the length in angstroms of the edge that reached
    ``order[i]``, and infinite where a new tree starts. Prim's algorithm takes the lightest edge
    leaving the visited set, so it visits every set linked by edges of at most d before it takes
    a longer edge. The single-linkage clusters at any d up to ``max_distance`` are therefore the
    runs of ``order`` that start where ``reachability`` exceeds d.
    """

    def __init__(self, order: np.ndarray, reachability: np.ndarray, max_distance: float) -> None:
        self.order = _read_only(np.asarray(order, dtype=np.int64).reshape(-1))
        self.reachability = _read_only(np.asarray(reachability, dtype=np.float64).reshape(-1))
        self.max_distance = float(max_distance)
        if len(self.order) != len(self.reachability):
            raise ValueError(
                f"LinkageForest order has {len(self.order)} members but reachability has {len(self.reachability)}."
            )

    @classmethod
    def build(cls, points: np.ndarray, max_distance: float) -> LinkageForest:
        count = len(points)
        pairs = cKDTree(points).query_pairs(max_distance, output_type="ndarray") if count else np.empty((0, 2))
        pairs = pairs.astype(np.int64)
        weights = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
        # csgraph drops zero weights as missing edges, so particles at the same position get the
        # smallest positive float instead, which keeps the weight order and so the forest exact.
        graph = csr_matrix(
            (np.where(weights > 0, weights, np.finfo(np.float64).smallest_subnormal), (pairs[:, 0], pairs[:, 1])),
            shape=(count, count),
        )
        forest = minimum_spanning_tree(graph).tocoo()
        edges = np.stack([forest.row, forest.col], axis=1).astype(np.int64)
        edge_weights = np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1)
        order, reachability = _prim_order(edges, edge_weights, count)
        return cls(order, reachability, max_distance)

    def cluster_starts(self, distance: float) -> np.ndarray:
        """Return the positions in ``order`` where the clusters at a linking distance start."""
        if distance > self.max_distance:
            raise ValueError(f"Linking distance {distance} exceeds this forest's maximum {self.max_distance}.")
        return np.flatnonzero(self.reachability > distance)


def _prim_order(edges: np.ndarray, weights: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Return Prim's visiting order of a forest and the weight of the edge that reached each node."""
    ends = np.concatenate([edges, edges[:, ::-1]])
    end_weights = np.concatenate([weights, weights])
    by_start = np.argsort(ends[:, 0], kind="stable")
    neighbors = ends[by_start, 1].tolist()
    neighbor_weights = end_weights[by_start].tolist()
    offsets = np.searchsorted(ends[by_start, 0], np.arange(count + 1)).tolist()

    visited = bytearray(count)
    order: list[int] = []
    reachability: list[float] = []
    for root in range(count):
        if visited[root]:
            continue
        heap = [(math.inf, root)]
        while heap:
            reach, node = heapq.heappop(heap)
            if visited[node]:
                continue
            visited[node] = 1
            order.append(node)
            reachability.append(reach)
            for slot in range(offsets[node], offsets[node + 1]):
                neighbor = neighbors[slot]
                if not visited[neighbor]:
                    heapq.heappush(heap, (neighbor_weights[slot], neighbor))
    return np.array(order, dtype=np.int64), np.array(reachability, dtype=np.float64)


class CsrNull:
    """Monte Carlo null of the CSR test for one (class A, class B, sample size, seed).

    ``sample`` contains the sampled class A member indices, and ``simulated`` the mean
    nearest-neighbor distance of each simulation so far, in angstroms.
    """

    def __init__(self, sample: np.ndarray, simulated: np.ndarray) -> None:
        self.sample = _read_only(np.asarray(sample, dtype=np.int64))
        self.simulated = _read_only(np.asarray(simulated, dtype=np.float64))


class SpatialMap:
    """Particles of one tomogram: ids, classes, x, y, z positions in angstroms, scores and embeddings.

    ``bounds`` is a (2, 3) array of the tomogram's minimum and maximum x, y, z in angstroms.
    The k-d trees, one over all particles and one per class, are built on first use. The arrays
    are read-only copies of the inputs, so the results memoised on the map cannot go stale. ``ids_increasing`` is
    True when the ids strictly increase with the row number.
    """

    def __init__(
        self,
        ids: np.ndarray,
        class_indices: np.ndarray,
        positions: np.ndarray,
        scores: np.ndarray,
        bounds: np.ndarray,
        class_names: tuple[str, ...] = CLASS_NAMES,
        embeddings: np.ndarray | None = None,
    ) -> None:
        self.ids = _frozen_copy(ids, np.int64).reshape(-1)
        self.class_indices = _frozen_copy(class_indices, np.int16).reshape(-1)
        self.positions = _frozen_copy(positions, np.float64).reshape(-1, 3)
        self.scores = _frozen_copy(scores, np.float32).reshape(-1)
        self.bounds = _frozen_copy(bounds, np.float64).reshape(2, 3)
        self.class_names = tuple(str(name) for name in class_names)
        self.embeddings = None if embeddings is None else _frozen_copy(embeddings, np.float32)
        self._validate()
        self._tree: cKDTree | None = None
        self._class_trees: dict[int, cKDTree] = {}
        self._class_members: dict[int, np.ndarray] = {}
        self._row_by_id: dict[int, int] | None = None
        self._x_sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # Guards ``query_cache``, whose entries the query tools move and evict.
        self.cache_lock = threading.Lock()
        self.drop_cached_results()

    def __getstate__(self) -> dict:
        # A lock cannot be pickled, so a copy or an unpickled map gets a new one.
        state = self.__dict__.copy()
        del state["cache_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.cache_lock = threading.Lock()
        # Unpickled arrays are writable again, so they are frozen like the originals.
        for array in (self.ids, self.class_indices, self.positions, self.scores, self.bounds, self.embeddings):
            if array is not None:
                array.flags.writeable = False

    def _validate(self) -> None:
        count = len(self.ids)
        for name, array in (
            ("class_indices", self.class_indices),
            ("positions", self.positions),
            ("scores", self.scores),
        ):
            if len(array) != count:
                raise ValueError(f"SpatialMap {name} has {len(array)} rows but ids has {count}; they must match.")
        if self.embeddings is not None and (self.embeddings.ndim != 2 or len(self.embeddings) != count):
            raise ValueError(f"SpatialMap embeddings must have shape ({count}, d), got {self.embeddings.shape}.")
        if count and (self.class_indices.min() < 0 or self.class_indices.max() >= len(self.class_names)):
            raise ValueError(f"SpatialMap class index out of range 0..{len(self.class_names) - 1}.")
        # Sorted ids, the common case, are checked in linear time before falling back to a sort.
        self.ids_increasing = bool(np.all(self.ids[1:] > self.ids[:-1]))
        if not self.ids_increasing and len(np.unique(self.ids)) != count:
            raise ValueError("SpatialMap particle ids must be unique.")
        if np.any(self.bounds[1] <= self.bounds[0]):
            raise ValueError(
                f"SpatialMap bounds maximum must exceed minimum on every axis, got {self.bounds.tolist()}."
            )

    @classmethod
    def from_particles(
        cls,
        class_names_per_particle: list[str] | np.ndarray,
        positions: np.ndarray,
        bounds: np.ndarray,
        scores: np.ndarray | None = None,
        ids: np.ndarray | None = None,
        embeddings: np.ndarray | None = None,
        class_names: tuple[str, ...] = CLASS_NAMES,
    ) -> SpatialMap:
        """Build a map from one class name per particle; ids default to 0..n-1 and scores to 1."""
        index_by_name = {name: index for index, name in enumerate(class_names)}
        try:
            class_indices = np.array([index_by_name[name] for name in class_names_per_particle], dtype=np.int16)
        except KeyError as error:
            raise ValueError(
                f"Unknown particle class {error.args[0]!r}; expected one of {', '.join(class_names)}."
            ) from None
        count = len(class_indices)
        return cls(
            ids=np.arange(count) if ids is None else ids,
            class_indices=class_indices,
            positions=positions,
            scores=np.ones(count) if scores is None else scores,
            bounds=bounds,
            class_names=class_names,
            embeddings=embeddings,
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def volume_angstrom3(self) -> float:
        return float(np.prod(self.bounds[1] - self.bounds[0]))

    def class_index(self, name: str) -> int:
        try:
            return self.class_names.index(name)
        except ValueError:
            raise KeyError(name) from None

    @property
    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.positions)
        return self._tree

    def class_members(self, class_index: int) -> np.ndarray:
        """Return the row numbers of the particles of one class, in map order."""
        if class_index not in self._class_members:
            self._class_members[class_index] = _read_only(np.flatnonzero(self.class_indices == class_index))
        return self._class_members[class_index]

    def class_tree(self, class_index: int) -> cKDTree:
        """Return the k-d tree over one class. Its point i is row ``class_members(class_index)[i]``."""
        if class_index not in self._class_trees:
            self._class_trees[class_index] = cKDTree(self.positions[self.class_members(class_index)])
        return self._class_trees[class_index]

    def x_sorted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the x values, positions and class indices sorted by x, for box queries over a slab of x."""
        if self._x_sorted is None:
            order = np.argsort(self.positions[:, 0], kind="stable")
            positions = np.ascontiguousarray(self.positions[order])
            self._x_sorted = (np.ascontiguousarray(positions[:, 0]), positions, self.class_indices[order])
        return self._x_sorted

    def class_counts(self) -> np.ndarray:
        """Return the number of particles of each class, indexed like ``class_names``."""
        return np.bincount(self.class_indices, minlength=len(self.class_names))

    def row_of(self, particle_id: int) -> int:
        """Return the row number of a particle id, raising KeyError when the map has no such id."""
        if self._row_by_id is None:
            self._row_by_id = {int(particle_id): row for row, particle_id in enumerate(self.ids)}
        return self._row_by_id[int(particle_id)]

    # ------------------------------------------------------------ memoised results

    def drop_cached_results(self) -> None:
        """Forget the memoised query results but keep the k-d trees, so the next queries compute afresh."""
        self._nearest: dict[tuple[int, int], np.ndarray] = {}
        self._forests: dict[int, LinkageForest] = {}
        self._csr_nulls: dict[tuple[int, int, int, int], CsrNull] = {}
        # Memo of the query tools, keyed by tuples whose first element names the kind of result.
        self.query_cache: dict[tuple, object] = {}

    def nearest_distances(self, index_a: int, index_b: int) -> np.ndarray:
        """Return each class A particle's distance to the nearest other class B particle, in angstroms.

        The array follows ``class_members(index_a)``. When A is B, a particle's own position is
        skipped. Class B must have at least one particle, or two when A is B.
        """
        key = (index_a, index_b)
        if key not in self._nearest:
            points = self.positions[self.class_members(index_a)]
            tree = self.class_tree(index_b)
            if index_a == index_b:
                distances = tree.query(points, k=2, workers=-1)[0][:, 1]
            else:
                distances = tree.query(points, k=1, workers=-1)[0]
            self._nearest[key] = _read_only(np.ascontiguousarray(distances))
        return self._nearest[key]

    def linkage_forest(self, class_index: int, distance: float) -> LinkageForest:
        """Return a linkage forest of one class that serves linking distances up to ``distance``.

        A memoised forest is reused when its maximum covers ``distance``, and replaced by one
        built at ``distance`` otherwise.
        """
        forest = self._forests.get(class_index)
        if forest is None or forest.max_distance < distance:
            points = self.positions[self.class_members(class_index)]
            forest = LinkageForest.build(points, max(distance, forest.max_distance if forest else 0.0))
            self._forests[class_index] = forest
        return forest

    def _csr_entry(self, index_a: int, index_b: int, max_sample: int, seed: int) -> CsrNull:
        count_a = len(self.class_members(index_a))
        sample_size = min(count_a, max_sample)
        key = (index_a, index_b, sample_size, seed)
        if key not in self._csr_nulls:
            if count_a > sample_size:
                rng = np.random.default_rng([seed, 0])
                sample = np.sort(rng.choice(count_a, sample_size, replace=False))
            else:
                sample = np.arange(count_a)
            self._csr_nulls[key] = CsrNull(sample, np.empty(0))
        return self._csr_nulls[key]

    def csr_null(
        self, index_a: int, index_b: int, max_sample: int, seed: int, simulations: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the sampled class A member indices and the first ``simulations`` simulated statistics.

        Each simulation draws as many uniform points in the bounds as class B has, and returns the
        mean distance from the sampled class A particles to the nearest of them. When A is B, the
        uniform points are measured among themselves from the first sample-size of them, which are
        as random as any. Simulation i draws from its own stream, seeded by (seed, i), so a memoised
        run of S simulations serves any request for at most S and is extended for more. Class B
        must have at least one particle, or two when A is B.
        """
        self._extend_csr_nulls(index_b, [index_a], max_sample, seed, simulations)
        entry = self._csr_entry(index_a, index_b, max_sample, seed)
        return entry.sample, entry.simulated[:simulations]

    def _extend_csr_nulls(
        self, index_b: int, indices_a: list[int], max_sample: int, seed: int, simulations: int
    ) -> None:
        """Simulate the nulls of several classes A against class B, sharing each simulation's points."""
        entries = {index_a: self._csr_entry(index_a, index_b, max_sample, seed) for index_a in indices_a}
        pending = {index_a: entry for index_a, entry in entries.items() if len(entry.simulated) < simulations}
        if not pending:
            return
        count_b = len(self.class_members(index_b))
        points_a = {
            index_a: self.positions[self.class_members(index_a)[entry.sample]]
            for index_a, entry in pending.items()
            if index_a != index_b
        }
        new_values: dict[int, list[float]] = {index_a: [] for index_a in pending}
        for simulation in range(min(len(entry.simulated) for entry in pending.values()), simulations):
            rng = np.random.default_rng([seed, 1, simulation])
            uniform = rng.uniform(self.bounds[0], self.bounds[1], size=(count_b, 3))
            # Unbalanced trees build about twice as fast and are only queried a few thousand times.
            # One worker, because starting threads cost more than a query of at most max_sample points.
            tree = cKDTree(uniform, balanced_tree=False, compact_nodes=False)
            for index_a, entry in pending.items():
                if simulation < len(entry.simulated):
                    continue
                if index_a == index_b:
                    distances = tree.query(uniform[: len(entry.sample)], k=2)[0][:, 1]
                else:
                    distances = tree.query(points_a[index_a], k=1)[0]
                new_values[index_a].append(float(distances.mean()))
        for index_a, entry in pending.items():
            key = (index_a, index_b, len(entry.sample), seed)
            self._csr_nulls[key] = CsrNull(entry.sample, np.concatenate([entry.simulated, new_values[index_a]]))

    def precompute(
        self,
        forest_distance: float = DEFAULT_FOREST_DISTANCE,
        csr_simulations: int = DEFAULT_CSR_SIMULATIONS,
    ) -> None:
        """Build the k-d trees, every class pair's nearest-neighbor distances and CSR null, and each class's forest.

        The CSR nulls use the default sample size and seed, and each simulation's uniform points
        serve every class A at once.
        """
        self.tree  # noqa: B018 (builds the tree)
        self.x_sorted()
        class_range = range(len(self.class_names))
        for index_b in class_range:
            count_b = len(self.class_members(index_b))
            indices_a = [
                index_a
                for index_a in class_range
                if len(self.class_members(index_a)) and count_b > (index_a == index_b)
            ]
            for index_a in indices_a:
                self.nearest_distances(index_a, index_b)
            if indices_a and csr_simulations:
                self._extend_csr_nulls(index_b, indices_a, DEFAULT_CSR_SAMPLE, DEFAULT_CSR_SEED, csr_simulations)
        for class_index in class_range:
            self.linkage_forest(class_index, forest_distance)

    # ------------------------------------------------------------ files

    def save(self, path: str | Path, precompute: bool = True) -> None:
        """Write the map to one uncompressed .npz file, which ``load`` reads without pickle.

        With ``precompute``, the results of ``precompute`` are computed first, so the file contains
        them and a loaded map answers those queries without recomputing. Otherwise the file
        contains only the results already memoised. Precomputing is a one-off cost that grows with the
        particle count, most of it the CSR simulations: ``bench/cryoet_query.py`` measured about
        4 s at 10,000 particles and minutes at 1M on a shared 2-core machine.
        """
        if precompute:
            self.precompute()
        arrays = {
            "format_version": np.array(FORMAT_VERSION),
            "ids": self.ids,
            "class_indices": self.class_indices,
            "positions": self.positions,
            "scores": self.scores,
            "bounds": self.bounds,
            "class_names": np.array(self.class_names, dtype=np.str_),
        }
        if self.embeddings is not None:
            arrays["embeddings"] = self.embeddings
        arrays.update(self._cached_arrays())
        with open(path, "wb") as file:
            np.savez(file, **arrays)

    def _cached_arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        if self._nearest:
            # Row r, column b: distance from particle r to the nearest class b particle, NaN where not computed.
            table = np.full((len(self), len(self.class_names)), np.nan)
            for (index_a, index_b), distances in self._nearest.items():
                table[self.class_members(index_a), index_b] = distances
            arrays["nearest_distances"] = table
        if self._forests:
            classes = sorted(self._forests)
            forests = [self._forests[index] for index in classes]
            arrays["forest_classes"] = np.array(classes, dtype=np.int64)
            arrays["forest_max_distances"] = np.array([forest.max_distance for forest in forests])
            arrays["forest_orders"] = np.concatenate([forest.order for forest in forests])
            arrays["forest_reachability"] = np.concatenate([forest.reachability for forest in forests])
        if self._csr_nulls:
            keys = sorted(self._csr_nulls)
            nulls = [self._csr_nulls[key] for key in keys]
            arrays["csr_keys"] = np.array(keys, dtype=np.int64).reshape(-1, 4)
            arrays["csr_simulation_counts"] = np.array([len(null.simulated) for null in nulls], dtype=np.int64)
            arrays["csr_samples"] = np.concatenate([null.sample for null in nulls])
            arrays["csr_simulated"] = np.concatenate([null.simulated for null in nulls])
        return arrays

    def _restore_cached_arrays(self, data, path) -> None:
        if "nearest_distances" in data.files:
            table = data["nearest_distances"]
            if table.shape != (len(self), len(self.class_names)):
                raise ValueError(
                    f"Spatial map {path} has a nearest_distances table of shape {table.shape}, "
                    f"expected {(len(self), len(self.class_names))}; write the file again."
                )
            for index_a in range(len(self.class_names)):
                members = self.class_members(index_a)
                for index_b in range(len(self.class_names)):
                    column = table[members, index_b]
                    if len(members) and not np.isnan(column).any():
                        self._nearest[(index_a, index_b)] = _read_only(np.ascontiguousarray(column))
        if "forest_classes" in data.files:
            orders = data["forest_orders"]
            reachability = data["forest_reachability"]
            start = 0
            for class_index, max_distance in zip(data["forest_classes"], data["forest_max_distances"], strict=True):
                member_count = len(self.class_members(int(class_index)))
                stop = start + member_count
                order = orders[start:stop]
                if len(order) != member_count or not np.array_equal(np.sort(order), np.arange(member_count)):
                    raise ValueError(
                        f"Spatial map {path} has an invalid forest for class {int(class_index)}; write the file again."
                    )
                self._forests[int(class_index)] = LinkageForest(order, reachability[start:stop], float(max_distance))
                start = stop
        if "csr_keys" in data.files:
            samples = data["csr_samples"]
            simulated = data["csr_simulated"]
            sample_start = simulation_start = 0
            for key, simulation_count in zip(data["csr_keys"], data["csr_simulation_counts"], strict=True):
                index_a, index_b, sample_size, seed = (int(value) for value in key)
                sample = samples[sample_start : sample_start + sample_size]
                if len(sample) != sample_size or (sample_size and sample.max() >= len(self.class_members(index_a))):
                    raise ValueError(f"Spatial map {path} has an invalid CSR sample for classes {index_a}, {index_b}.")
                self._csr_nulls[(index_a, index_b, sample_size, seed)] = CsrNull(
                    sample, simulated[simulation_start : simulation_start + int(simulation_count)]
                )
                sample_start += sample_size
                simulation_start += int(simulation_count)

    @classmethod
    def load(cls, path: str | Path) -> SpatialMap:
        """Read a map written by ``save``, with any precomputed results the file contains."""
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version not in READABLE_VERSIONS:
                raise ValueError(
                    f"Spatial map {path} has format version {version}; this code reads versions "
                    f"{', '.join(map(str, READABLE_VERSIONS))}."
                )
            spatial_map = cls(
                ids=data["ids"],
                class_indices=data["class_indices"],
                positions=data["positions"],
                scores=data["scores"],
                bounds=data["bounds"],
                class_names=tuple(data["class_names"].tolist()),
                embeddings=data["embeddings"] if "embeddings" in data.files else None,
            )
            spatial_map._restore_cached_arrays(data, path)
            return spatial_map
