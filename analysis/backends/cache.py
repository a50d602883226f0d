"""A disk cache of model results keyed by model and input, so reruns are cheap.

Values are JSON or NumPy arrays (stored with ``numpy.save`` and ``allow_pickle=False``), so
reading the cache never runs code. The whole cache is one SQLite file, which several worker
processes may share.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def input_hash(value: Any) -> str:
    """Hash an input: bytes, str, a NumPy array, a PIL image (its pixels and mode), or JSON-ready data."""
    digest = hashlib.sha256()
    if isinstance(value, bytes):
        digest.update(value)
    elif isinstance(value, str):
        digest.update(value.encode())
    elif isinstance(value, np.ndarray):
        digest.update(str((value.dtype.str, value.shape)).encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif hasattr(value, "tobytes") and hasattr(value, "mode") and hasattr(value, "size"):
        digest.update(f"{value.mode}{value.size}".encode())
        digest.update(value.tobytes())
    else:
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class ResultCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, kind TEXT, value BLOB, created REAL)"
            )

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            self._local.connection = connection
        return connection

    @staticmethod
    def key(model_version: str, operation: str, item_hash: str, params: dict | None = None) -> str:
        text = json.dumps([model_version, operation, item_hash, params or {}], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Any | None:
        row = self._connection().execute("SELECT kind, value FROM results WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        kind, value = row
        if kind == "npy":
            return np.load(io.BytesIO(value), allow_pickle=False)
        return json.loads(value)

    def put(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)
            kind, blob = "npy", buffer.getvalue()
        else:
            kind, blob = "json", json.dumps(value)
        with self._connection() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO results (key, kind, value, created) VALUES (?, ?, ?, ?)",
                (key, kind, blob, time.time()),
            )

    def map(self, keys: Sequence[str], compute: Callable[[list[int]], list[Any]]) -> tuple[list[Any], int]:
        """Return one value per key, calling ``compute`` once with the indices of the misses.

        Returns the values and the number of cache hits.
        """
        values: list[Any] = [self.get(key) for key in keys]
        missing = [index for index, value in enumerate(values) if value is None]
        if missing:
            computed = compute(missing)
            for index, value in zip(missing, computed, strict=True):
                values[index] = value
                self.put(keys[index], value)
        return values, len(keys) - len(missing)
