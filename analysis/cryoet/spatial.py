"""A spatial map of the particles found in one tomogram, with k-d trees for fast queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from analysis.cryoet.classes import CLASS_NAMES

# Version of the .npz layout written by ``SpatialMap.save``.
FORMAT_VERSION = 1


class SpatialMap:
    """Particles of one tomogram: ids, classes, x, y, z positions in angstroms, scores and embeddings.

    ``bounds`` is a (2, 3) array of the tomogram's minimum and maximum x, y, z in angstroms.
    The k-d trees, one over all particles and one per class, are built on first use.
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
        self.ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.class_indices = np.asarray(class_indices, dtype=np.int16).reshape(-1)
        self.positions = np.ascontiguousarray(positions, dtype=np.float64).reshape(-1, 3)
        self.scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        self.bounds = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
        self.class_names = tuple(str(name) for name in class_names)
        self.embeddings = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        self._validate()
        self._tree: cKDTree | None = None
        self._class_trees: dict[int, cKDTree] = {}
        self._class_members: dict[int, np.ndarray] = {}
        self._row_by_id: dict[int, int] | None = None
        self._x_sorted: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

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
        ids_increasing = bool(np.all(self.ids[1:] > self.ids[:-1]))
        if not ids_increasing and len(np.unique(self.ids)) != count:
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
            self._class_members[class_index] = np.flatnonzero(self.class_indices == class_index)
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

    def save(self, path: str | Path) -> None:
        """Write the map to one uncompressed .npz file, which ``load`` reads without pickle."""
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
        with open(path, "wb") as file:
            np.savez(file, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> SpatialMap:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(f"Spatial map {path} has format version {version}; this code reads {FORMAT_VERSION}.")
            return cls(
                ids=data["ids"],
                class_indices=data["class_indices"],
                positions=data["positions"],
                scores=data["scores"],
                bounds=data["bounds"],
                class_names=tuple(data["class_names"].tolist()),
                embeddings=data["embeddings"] if "embeddings" in data.files else None,
            )
