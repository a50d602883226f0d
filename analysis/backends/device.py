"""Choose the device and dtype a model runs with."""

from __future__ import annotations

import os


def pick_device(requested: str | None = None) -> str:
    """Return ``requested`` if given (such as ``cuda:1`` or ``cpu``), else CUDA when present, else CPU.

    ``BIOVLM_DEVICE`` overrides the automatic choice for the whole process.
    """
    import torch

    requested = requested or os.environ.get("BIOVLM_DEVICE") or ""
    if requested:
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"Device {requested!r} was requested, but CUDA is not available on this machine.")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, requested: str | None = None):
    """Return the torch dtype for ``device``: bfloat16 on GPUs that support it, float16 on
    older GPUs, float32 on the CPU (half precision on the CPU is slow or unsupported)."""
    import torch

    if requested:
        dtype = getattr(torch, requested, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"Unknown dtype {requested!r}; use float32, float16 or bfloat16.")
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def device_memory_bytes(device: str) -> int | None:
    """Bytes currently allocated by torch on a CUDA device; None on the CPU."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return int(torch.cuda.memory_allocated(torch.device(device)))
    return None
