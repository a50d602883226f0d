"""Torch checkpoints of models trained in this project, such as the APT-ViT subtomogram classifier.

A checkpoint is a dict saved with ``torch.save``::

    {"format": "biovlm-checkpoint", "version": 1, "architecture": "<name>", "config": {...},
     "class_names": [...], "state_dict": {...}, "metrics": {...}}

It contains only plain data and tensors, so it loads with ``torch.load(weights_only=True)`` and
loading never unpickles code. The module is rebuilt by the builder registered for its
architecture name with ``register_architecture``, then the state dict is loaded strictly.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis.backends.base import ModelInfo, ModelUnavailable, torch_module_size, weights_sha256
from analysis.backends.device import pick_device, pick_dtype
from analysis.backends.registry import LoadContext, register_loader
from analysis.backends.roles import CheckpointModel
from analysis.backends.spec import ModelSource

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "biovlm-checkpoint"
CHECKPOINT_VERSION = 1
# Modules that register architectures when imported. They are imported when a checkpoint names
# an architecture that is not registered yet, and a module that does not exist is skipped.
# NOTE: assumes the cryo-ET package registers "aptvit" in analysis.cryoet.aptvit.
ARCHITECTURE_MODULES = ("analysis.cryoet.aptvit",)
# How many missing, unexpected or mismatched keys an error lists before it adds "and N more".
LISTED_KEYS = 8

ArchitectureBuilder = Callable[[dict], Any]
_ARCHITECTURES: dict[str, ArchitectureBuilder] = {}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded. The message names the file and the problem."""


def register_architecture(name: str, builder: ArchitectureBuilder | None = None):
    """Register ``builder(config) -> torch.nn.Module`` under ``name``.

    Called with a name only, it returns a decorator. Registering a name again replaces its builder.
    """

    def decorate(function: ArchitectureBuilder) -> ArchitectureBuilder:
        _ARCHITECTURES[name] = function
        return function

    return decorate(builder) if builder is not None else decorate


def registered_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


def _find_builder(architecture: str) -> ArchitectureBuilder | None:
    if architecture not in _ARCHITECTURES:
        for module_name in ARCHITECTURE_MODULES:
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name is None or not module_name.startswith(error.name):
                    raise
                logger.debug("Architecture module %s is not present: %s", module_name, error)
    return _ARCHITECTURES.get(architecture)


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED_KEYS])
    more = len(keys) - LISTED_KEYS
    return shown + (f" and {more} more" if more > 0 else "")


def _require_json(value: Any, name: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The checkpoint {name} must be JSON data (dicts, lists, str, numbers): {error}") from None


def save_checkpoint(
    path: str | os.PathLike,
    architecture: str,
    module,
    config: dict,
    class_names: list[str],
    metrics: dict | None = None,
) -> Path:
    """Write ``module``'s weights and its metadata as a biovlm checkpoint and return the path.

    ``config`` and ``metrics`` must be JSON data, so the file loads with ``weights_only=True``.
    The file is written to a temporary name first and renamed, so a crash never leaves half a
    checkpoint at ``path``.
    """
    import torch

    _require_json(config, "config")
    _require_json(metrics or {}, "metrics")
    _require_json(list(class_names), "class names")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {key: value.detach().cpu() for key, value in module.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": architecture,
        "config": config,
        "class_names": [str(name) for name in class_names],
        "state_dict": state_dict,
        "metrics": metrics or {},
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load and check a checkpoint's dict without building its module, or raise CheckpointError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"the checkpoint file {path} does not exist.")
    if not zipfile.is_zipfile(path):
        # torch.save has written zip archives since torch 1.6, and save_checkpoint always does.
        raise CheckpointError(f"{path} is not a torch checkpoint: it is not a zip archive written by torch.save.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only=True rejects any pickled class that is not plain data or a tensor, and
        # torch names the first such class as "GLOBAL module.Name" in its message.
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        example = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path} contains Python objects{example} other than tensors and plain data, so it is not a "
            "biovlm checkpoint and is not unpickled."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(error).__name__}: {error}).") from None

    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a biovlm checkpoint: it lacks format={CHECKPOINT_FORMAT!r}. "
            "Write checkpoints with analysis.backends.checkpoint.save_checkpoint."
        )
    version = payload.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {version!r}, but this code reads version {CHECKPOINT_VERSION} only."
        )
    for key, kind in (("architecture", str), ("config", dict), ("class_names", list), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path} has no valid {key!r} entry (expected {kind.__name__}).")
    payload.setdefault("metrics", {})
    return payload


def _check_state_dict(path: Path, module, state_dict: dict) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list_keys(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (checkpoint vs module): {_list_keys(mismatched)}")
    if problems:
        raise CheckpointError(
            f"the state dict in {path} does not match the module its config builds; " + "; ".join(problems) + "."
        )


class TorchCheckpointModel(CheckpointModel):
    """A module restored from a biovlm checkpoint, in eval mode on its device."""

    def __init__(self, role: str, module, config: dict, class_names: list[str], metrics: dict, info: ModelInfo) -> None:
        self.role = role
        self.module = module
        self.config = config
        self.class_names = class_names
        self.metrics = metrics
        self.info = info

    @property
    def device(self) -> str:
        return self.info.device

    def close(self) -> None:
        self.module = None


def load_checkpoint(
    path: str | os.PathLike, device: str = "cpu", dtype=None, role: str = "aptvit", source: str | None = None
) -> TorchCheckpointModel:
    """Rebuild a checkpoint's module, load its weights strictly and put it in eval mode on ``device``.

    ``dtype`` is a torch dtype to cast floating-point weights to; None keeps the saved dtype.
    Raises CheckpointError naming the file and what is wrong.
    """
    path = Path(path)
    payload = read_checkpoint(path)
    architecture = payload["architecture"]
    builder = _find_builder(architecture)
    if builder is None:
        registered = ", ".join(registered_architectures()) or "none"
        raise CheckpointError(
            f"{path} needs the architecture {architecture!r}, which is not registered "
            f"(registered: {registered}). Import the module that calls register_architecture for it."
        )
    try:
        module = builder(payload["config"])
    except Exception as error:  # a builder may raise anything on a config it cannot use
        raise CheckpointError(
            f"building the {architecture!r} architecture from the config in {path} failed with "
            f"{type(error).__name__}: {error}"
        ) from error

    _check_state_dict(path, module, payload["state_dict"])
    module.load_state_dict(payload["state_dict"], strict=True)
    module.to(device=device)
    if dtype is not None:
        module.to(dtype=dtype)
    module.eval()

    parameters, size = torch_module_size(module)
    first = next(iter(module.parameters()), None)
    info = ModelInfo(
        role=role,
        source=source or f"local:{path}",
        backend="torch-checkpoint",
        model_id=f"{architecture}:{path.name}",
        weights_sha256=weights_sha256(path),
        device=device,
        dtype=str(first.dtype).removeprefix("torch.") if first is not None else "none",
        parameters=parameters,
        memory_bytes=size,
        details={
            "path": str(path),
            "architecture": architecture,
            "classes": len(payload["class_names"]),
            "format_version": payload["version"],
            "metrics": payload["metrics"],
        },
    )
    return TorchCheckpointModel(role, module, payload["config"], payload["class_names"], payload["metrics"], info)


@register_loader("aptvit", ("local",))
def load_checkpoint_model(role: str, source: ModelSource, context: LoadContext) -> TorchCheckpointModel:
    """Load a ``local:/path/model.pt`` checkpoint on the context's device.

    The weights stay in the dtype they were saved in (float32 for trained models), so callers
    feed float32 inputs. A ``dtype`` in the context, such as ``bfloat16``, casts them.
    """
    device = pick_device(context.device)
    dtype = pick_dtype(device, context.dtype) if context.dtype else None
    try:
        return load_checkpoint(source.location, device=device, dtype=dtype, role=role, source=str(source))
    except CheckpointError as error:
        raise ModelUnavailable(role, str(source), str(error)) from error
