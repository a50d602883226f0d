"""The record every loaded model keeps, and the error for a role that cannot load."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


class ModelUnavailable(RuntimeError):
    """Raised when a role has no usable model; ``reason`` explains why in words a user can act on."""

    def __init__(self, role: str, source: str, reason: str) -> None:
        super().__init__(f"The {role} model ({source}) is unavailable: {reason}")
        self.role = role
        self.source = source
        self.reason = reason


@dataclass
class ModelInfo:
    """Provenance and cost of a loaded model, stored with every result it produces."""

    role: str
    source: str
    backend: str
    model_id: str
    weights_sha256: str
    device: str
    dtype: str
    parameters: int | None = None
    memory_bytes: int | None = None
    load_seconds: float | None = None
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def version(self) -> str:
        """A short label for job records: the model id and the first 12 hex digits of its weights hash."""
        return f"{self.model_id}@{self.weights_sha256[:12]}" if self.weights_sha256 else self.model_id


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".onnx")
_HASH_BLOCK = 4 * 1024 * 1024


def weights_sha256(path: str | os.PathLike) -> str:
    """Hash a weights file, or every weights file under a folder in name order.

    The digest covers each file's relative name and bytes, so renaming or changing any
    weights file changes it. Config and tokenizer files are left out on purpose: they do
    not change what the weights compute.
    """
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def torch_module_size(module) -> tuple[int, int]:
    """Return (parameter count, bytes of parameters and buffers) of a torch module."""
    parameters = sum(p.numel() for p in module.parameters())
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    size += sum(b.numel() * b.element_size() for b in module.buffers())
    return parameters, size
