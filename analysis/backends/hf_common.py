"""Loading steps shared by the Hugging Face transformers backends.

``locate_model_files`` turns a ``local:``, ``hf:`` or ``package:`` source into a folder on
disk (and a GGUF file inside it, for language models stored that way), raising
ModelUnavailable with a reason a user can act on. ``describe_model`` fills the ModelInfo
that every backend records, and ``CachedResults`` gives a backend per-item result caching.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.backends.base import ModelInfo, ModelUnavailable, torch_module_size, weights_sha256
from analysis.backends.cache import ResultCache
from analysis.backends.device import pick_device, pick_dtype
from analysis.backends.packages import package_model_path
from analysis.backends.spec import ModelSource

logger = logging.getLogger(__name__)

# Files fetched from the Hub when downloads are allowed: configs, tokenizers, chat templates
# and safetensors weights. Repositories often also carry TensorFlow, Flax, ONNX or GGUF copies
# of the same weights, which these backends never read.
HUB_DOWNLOAD_PATTERNS = ["*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken", "*.safetensors"]


@dataclass(frozen=True)
class ModelFiles:
    """The location of a model on disk: a ``save_pretrained`` folder, or a GGUF file in a folder."""

    folder: Path
    model_id: str
    gguf_file: str | None = None

    @property
    def weights_path(self) -> Path:
        return self.folder / self.gguf_file if self.gguf_file else self.folder


def locate_model_files(role: str, source: ModelSource, allow_downloads: bool, *, gguf: bool = False) -> ModelFiles:
    """Find the folder that ``source`` names and check that transformers can read it.

    With ``gguf``, the source may also name a ``.gguf`` file, or a folder with one ``.gguf``
    file in it, or choose one with the ``file`` option. ``hf:`` ids resolve from the local
    Hugging Face cache, and are downloaded only when ``allow_downloads`` is true.
    Raises ModelUnavailable naming the path or id and what to do.
    """
    file_option = source.option("file")
    if file_option and not gguf:
        raise ModelUnavailable(
            role, str(source), "the file option selects a GGUF file, which only the llm role loads. Remove the option."
        )
    if file_option and not file_option.endswith(".gguf"):
        raise ModelUnavailable(
            role,
            str(source),
            f"the file option must name a .gguf file, not {file_option!r}. Remove it to load a folder.",
        )
    if source.kind == "local":
        path = Path(source.location).expanduser()
        if gguf and path.suffix == ".gguf" and not file_option and not path.is_dir():
            if not path.is_file():
                raise ModelUnavailable(role, str(source), f"the GGUF file {path} does not exist. Check the path.")
            return ModelFiles(path.parent, path.name, path.name)
        if not path.exists():
            raise ModelUnavailable(
                role,
                str(source),
                f"the folder {path} does not exist. Point the source at a folder saved by save_pretrained.",
            )
        if not path.is_dir():
            raise ModelUnavailable(
                role,
                str(source),
                f"{path} is a file, not a folder. Point the source at the folder saved by save_pretrained that contains it.",
            )
        return _check_folder(role, source, path, path.name, file_option, gguf)
    if source.kind == "package":
        try:
            folder, package_file = package_model_path(source.location)
        except LookupError as error:
            raise ModelUnavailable(role, str(source), str(error)) from error
        file_name = file_option or package_file
        model_id = f"{source.location}/{file_name}" if file_name else source.location
        return _check_folder(role, source, folder, model_id, file_name, gguf)
    if source.kind == "hf":
        folder = _hub_snapshot(role, source, allow_downloads, file_option)
        model_id = f"{source.location}/{file_option}" if file_option else source.location
        return _check_folder(role, source, folder, model_id, file_option, gguf)
    raise ModelUnavailable(role, str(source), f"the Hugging Face backends do not load {source.kind!r} sources.")


def _check_folder(
    role: str, source: ModelSource, folder: Path, model_id: str, file_name: str | None, gguf: bool
) -> ModelFiles:
    if file_name:
        if not (folder / file_name).is_file():
            present = ", ".join(sorted(path.name for path in folder.glob("*.gguf"))) or "none"
            raise ModelUnavailable(
                role,
                str(source),
                f"the GGUF file {folder / file_name} does not exist. GGUF files in {folder}: {present}.",
            )
        return ModelFiles(folder, model_id, file_name)
    if (folder / "config.json").is_file():
        return ModelFiles(folder, model_id)
    if gguf:
        gguf_files = sorted(path.name for path in folder.glob("*.gguf"))
        if len(gguf_files) == 1:
            return ModelFiles(folder, model_id, gguf_files[0])
        if gguf_files:
            raise ModelUnavailable(
                role,
                str(source),
                f"{folder} has no config.json but several GGUF files ({', '.join(gguf_files)}). "
                "Choose one with ?file=NAME.",
            )
    nested = sorted(str(path.parent) for path in folder.glob("*/config.json"))
    hint = f" A model folder was found inside it: {nested[0]}." if nested else ""
    raise ModelUnavailable(
        role,
        str(source),
        f"{folder} has no config.json, so it is not a folder saved by save_pretrained. "
        f"Point the source at the folder that contains config.json.{hint}",
    )


def _hub_snapshot(role: str, source: ModelSource, allow_downloads: bool, file_name: str | None) -> Path:
    """Return the cached snapshot folder of an ``hf:`` id, downloading it only when allowed."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id = source.location
    revision = source.option("revision")
    try:
        # A snapshot counts as cached when it has the config (or the chosen GGUF file). The
        # loader reports any other missing file by name.
        folder = snapshot_download(
            repo_id, revision=revision, local_files_only=True, allow_patterns=[file_name or "config.json"]
        )
        return Path(folder)
    except LocalEntryNotFoundError as error:
        if not allow_downloads:
            raise ModelUnavailable(
                role,
                str(source),
                f"{repo_id} is missing or incomplete in the local Hugging Face cache ({constants.HF_HUB_CACHE}), "
                "and downloads are off. "
                f"Run `hf download {repo_id}` on a machine with network access and copy its cache here, "
                "or set BIOVLM_ALLOW_DOWNLOADS=1.",
            ) from error
    except ValueError as error:  # HFValidationError: not an org/name id
        raise ModelUnavailable(
            role, str(source), f"{repo_id!r} is not a valid Hugging Face model id: {error}"
        ) from error

    # NOTE: the tests never run this download path, because they must not reach the network.
    patterns = [file_name] if file_name else HUB_DOWNLOAD_PATTERNS
    logger.info("Downloading %s from the Hugging Face Hub (files: %s)", repo_id, ", ".join(patterns))
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
        if not file_name and not any(folder.glob("*.safetensors")):
            # Older checkpoints ship only PyTorch pickles.
            folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[*patterns, "*.bin"]))
    except (OSError, ValueError) as error:  # HfHubHTTPError and connection errors are OSErrors
        raise ModelUnavailable(role, str(source), f"downloading {repo_id} failed: {error}") from error
    return folder


# Files that hold a tokenizer's vocabulary in a save_pretrained folder.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model", "tekken.json")


def require_tokenizer_files(role: str, source: ModelSource, files: ModelFiles) -> None:
    """Raise ModelUnavailable unless the folder has a tokenizer vocabulary.

    transformers 5 otherwise builds an empty tokenizer for the model type, which maps
    every word to the unknown token without any error.
    """
    if files.gguf_file or any((files.folder / name).is_file() for name in TOKENIZER_FILES):
        return
    raise ModelUnavailable(
        role,
        str(source),
        f"{files.folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)}). "
        "Save the tokenizer or processor with save_pretrained into the model folder.",
    )


def pick_device_and_dtype(role: str, source: ModelSource, device: str | None, dtype: str | None):
    """Return (device, torch dtype). The source's ``dtype`` option overrides ``dtype``."""
    try:
        chosen_device = pick_device(device)
        return chosen_device, pick_dtype(chosen_device, source.option("dtype") or dtype)
    except (RuntimeError, ValueError) as error:
        raise ModelUnavailable(role, str(source), str(error)) from error


def read_config(role: str, source: ModelSource, files: ModelFiles):
    """Read ``config.json`` with AutoConfig, raising ModelUnavailable when transformers cannot."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(files.folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelUnavailable(
            role,
            str(source),
            f"transformers cannot read {files.folder / 'config.json'} ({error}). "
            "Check that it comes from a model that this version of transformers supports.",
        ) from error


def positive_int_option(role: str, source: ModelSource, name: str, default: int) -> int:
    text = source.option(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ModelUnavailable(role, str(source), f"the {name} option must be a positive whole number, not {text!r}.")
    return value


def require_gguf(role: str, source: ModelSource) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailable(
            role, str(source), "reading GGUF files needs the gguf package. Install it with `pip install gguf`."
        )


def describe_model(
    role: str,
    source: ModelSource,
    files: ModelFiles,
    backend_name: str,
    module,
    device: str,
    dtype,
    details: dict | None = None,
) -> ModelInfo:
    """Build the ModelInfo of a loaded torch module: weights hash, size, device and dtype."""
    parameters, memory_bytes = torch_module_size(module)
    return ModelInfo(
        role=role,
        source=str(source),
        backend=backend_name,
        model_id=files.model_id,
        weights_sha256=weights_sha256(files.weights_path),
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        parameters=parameters,
        memory_bytes=memory_bytes,
        details={"path": str(files.weights_path), **(details or {})},
    )


def generation_config_for(model, max_new_tokens: int, temperature: float = 0.0, **overrides):
    """Copy the model's generation config with the requested length and sampling.

    A temperature of 0 means greedy decoding. The sampling settings that the checkpoint
    ships (temperature, top_k, top_p) are then cleared, so they cannot change the output.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}.")
    if temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or positive, not {temperature}.")
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if temperature > 0:
        config.do_sample = True
        config.temperature = temperature
    else:
        config.do_sample = False
        config.temperature = None
        config.top_k = None
        config.top_p = None
    if config.pad_token_id is None and config.eos_token_id is not None:
        eos = config.eos_token_id
        config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


class CachedResults:
    """Per-item result caching for a backend, keyed by its model version.

    Items with equal hashes are computed once per call. ``cache_hits`` and ``cache_misses``
    count distinct items per call over the backend's lifetime. Without a cache, every
    distinct item is a miss.
    """

    cache: ResultCache | None = None
    info: ModelInfo
    cache_hits: int = 0
    cache_misses: int = 0

    def cached_map(
        self,
        operation: str,
        item_hashes: Sequence[str],
        params: dict,
        compute: Callable[[list[int]], list[Any]],
    ) -> list[Any]:
        """Return one result per item, calling ``compute`` once with the indices of the items to compute."""
        first_index: dict[str, int] = {}
        for index, item_hash in enumerate(item_hashes):
            first_index.setdefault(item_hash, index)
        distinct = list(first_index.values())

        def compute_distinct(positions: list[int]) -> list[Any]:
            return compute([distinct[position] for position in positions])

        if self.cache is None:
            values = compute_distinct(list(range(len(distinct))))
            hits = 0
        else:
            keys = [ResultCache.key(self.info.version, operation, item_hashes[index], params) for index in distinct]
            values, hits = self.cache.map(keys, compute_distinct)
        self.cache_hits += hits
        self.cache_misses += len(distinct) - hits
        by_hash = {item_hashes[index]: value for index, value in zip(distinct, values, strict=True)}
        return [by_hash[item_hash] for item_hash in item_hashes]


def release_torch_memory(device: str) -> None:
    """Return freed CUDA memory to the driver after a model is dropped."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
