"""CLIP image and text embeddings with open_clip.

Sources:

- ``local:/models/clip.pt?arch=ViT-B-32``: a state dict saved from
  ``open_clip.create_model(arch, pretrained=None)``. ``arch`` is an open_clip model name, or the
  path of a JSON model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) for a custom
  architecture. open_clip registers such a config under the file's stem.
- ``local:/models/clip-folder``: a folder in the open_clip hub layout, with
  ``open_clip_config.json`` and a weights file (``open_clip_model.safetensors`` or
  ``open_clip_pytorch_model.bin``).
- ``hf:org/name``: such a folder from the local Hugging Face cache. It is downloaded only when
  downloads are allowed.

The ``batch_size`` option (default 32) sets how many images or texts go through the model at once.
Embeddings are cached by input hash, model version and dtype when the registry has a cache.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from analysis.backends.base import ModelInfo, ModelUnavailable, torch_module_size, weights_sha256
from analysis.backends.cache import ResultCache, input_hash
from analysis.backends.device import pick_device, pick_dtype
from analysis.backends.registry import LoadContext, register_loader
from analysis.backends.roles import ClipModel
from analysis.backends.spec import ModelSource

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
HUB_CONFIG_NAME = "open_clip_config.json"
# The weights files that open_clip's local-dir loader looks for (open_clip 3.3, factory.py).
HUB_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pth")
# The files fetched for an hf: source are the config, the weights and any Hugging Face tokenizer files.
HF_ALLOW_PATTERNS = [
    HUB_CONFIG_NAME,
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "tokenizer*",
    "special_tokens_map.json",
    "vocab*",
    "merges.txt",
    "spiece.model",
]
MODEL_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
# open_clip's precision names for each torch dtype. "bf16" and "fp16" cast linear, convolution and
# attention weights and keep embeddings and LayerNorm in float32 (open_clip convert_weights_to_lp).
PRECISIONS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class OpenClipModel(ClipModel):
    """An open_clip model with its image transform and tokenizer, in eval mode on one device."""

    def __init__(
        self, model, preprocess, tokenizer, info: ModelInfo, cache: ResultCache | None, batch_size: int
    ) -> None:
        import torch

        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.info = info
        self.cache = cache
        self.batch_size = batch_size
        self.device = torch.device(info.device)
        self.input_dtype = getattr(torch, info.dtype)
        self.cache_hits = 0
        self.cache_misses = 0

    def _cached(self, operation: str, items: list, compute) -> np.ndarray:
        """Return ``compute(items)`` row by row, reusing cached rows when the registry has a cache."""
        if not items:
            return np.zeros((0, self.info.details["embed_dim"]), dtype=np.float32)
        if self.cache is None:
            self.cache_misses += len(items)
            return compute(items)

        params = {"dtype": self.info.dtype}
        keys = [ResultCache.key(self.info.version, operation, input_hash(item), params) for item in items]

        def compute_missing(indices: list[int]) -> list[np.ndarray]:
            return list(compute([items[index] for index in indices]))

        rows, hits = self.cache.map(keys, compute_missing)
        self.cache_hits += hits
        self.cache_misses += len(items) - hits
        return np.stack(rows).astype(np.float32, copy=False)

    def _embed_batches(self, items: list, encode) -> np.ndarray:
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                features = encode(items[start : start + self.batch_size]).float()
                features = torch.nn.functional.normalize(features, dim=-1)
                chunks.append(features.cpu().numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def _encode_images(self, images: list):
        import torch
        from PIL import Image

        pil_images = [Image.fromarray(image) if isinstance(image, np.ndarray) else image for image in images]
        pixels = torch.stack([self.preprocess(image) for image in pil_images])
        return self.model.encode_image(pixels.to(self.device, dtype=self.input_dtype))

    def _encode_texts(self, texts: list[str]):
        tokens = self.tokenizer(texts).to(self.device)
        return self.model.encode_text(tokens)

    def embed_images(self, images: list) -> np.ndarray:
        """Return L2-normalised float32 embeddings, shape (n, dim), of PIL images or RGB uint8 arrays."""
        return self._cached(
            "clip.embed_image", list(images), lambda batch: self._embed_batches(batch, self._encode_images)
        )

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Return L2-normalised float32 embeddings, shape (n, dim), of texts."""
        texts = [str(text) for text in texts]
        return self._cached("clip.embed_text", texts, lambda batch: self._embed_batches(batch, self._encode_texts))

    def close(self) -> None:
        self.model = None


def _unavailable(role: str, source: ModelSource, reason: str) -> ModelUnavailable:
    return ModelUnavailable(role, str(source), reason)


def _resolve_arch(role: str, source: ModelSource, arch: str) -> str:
    """Return the open_clip model name for ``arch``, registering it first when it is a JSON config file."""
    import open_clip

    if arch.endswith(".json") or "/" in arch:
        config_path = Path(arch).expanduser()
        if not config_path.is_file():
            raise _unavailable(role, source, f"the model config file {config_path} given as arch does not exist.")
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError) as error:
            raise _unavailable(role, source, f"the model config {config_path} is not readable JSON: {error}") from None
        missing = (
            [key for key in MODEL_CONFIG_KEYS if key not in config] if isinstance(config, dict) else MODEL_CONFIG_KEYS
        )
        if missing:
            raise _unavailable(
                role,
                source,
                f"the model config {config_path} lacks {', '.join(missing)}; an open_clip model config "
                "has embed_dim, vision_cfg and text_cfg at its top level.",
            )
        open_clip.add_model_config(config_path)
        return config_path.stem

    if arch not in open_clip.list_models():
        raise _unavailable(
            role,
            source,
            f"{arch!r} is not an open_clip architecture. Use a name from open_clip.list_models(), "
            "such as ViT-B-32, or the path of a JSON model config.",
        )
    return arch


def _hub_folder_problem(folder: Path) -> str | None:
    if not (folder / HUB_CONFIG_NAME).is_file():
        return f"{folder} has no {HUB_CONFIG_NAME}; a CLIP folder needs it beside the weights."
    if not any(path for pattern in HUB_WEIGHT_PATTERNS for path in folder.glob(pattern)):
        return f"{folder} has {HUB_CONFIG_NAME} but no weights file (.safetensors, .bin or .pth)."
    return None


def _hf_snapshot(role: str, source: ModelSource, allow_downloads: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        folder = snapshot_download(
            source.location, allow_patterns=HF_ALLOW_PATTERNS, local_files_only=not allow_downloads
        )
    except (OSError, ValueError, EntryNotFoundError) as error:
        if allow_downloads:
            reason = f"downloading {source.location} from the Hugging Face Hub failed: {type(error).__name__}: {error}"
        else:
            reason = (
                f"{source.location} is not in the local Hugging Face cache and downloads are off. "
                "Copy the model into the cache, or allow downloads with BIOVLM_ALLOW_DOWNLOADS=1."
            )
        raise _unavailable(role, source, reason) from error
    return Path(folder)


def _create(role: str, source: ModelSource, name: str, pretrained: str | None, device: str, precision: str):
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            device=device,
            precision=precision,
            pretrained_image=False,
            pretrained_text=False,
            weights_only=True,
        )
        tokenizer = open_clip.get_tokenizer(name)
    except RuntimeError as error:
        # A strict state-dict load lists every missing and unexpected key, so keep the start only.
        text = " ".join(str(error).split())
        raise _unavailable(role, source, f"the weights do not fit the architecture {name!r}: {text[:400]}") from error
    model.eval()
    return model, preprocess, tokenizer


@register_loader("clip", ("local", "hf"))
def load_clip(role: str, source: ModelSource, context: LoadContext) -> OpenClipModel:
    device = pick_device(context.device)
    dtype = pick_dtype(device, context.dtype)
    dtype_name = str(dtype).removeprefix("torch.")
    if dtype_name not in PRECISIONS:
        raise _unavailable(role, source, f"open_clip cannot run in {dtype_name}; use float32, bfloat16 or float16.")
    batch_text = source.option("batch_size") or str(DEFAULT_BATCH_SIZE)
    if not batch_text.isdigit() or int(batch_text) < 1:
        raise _unavailable(role, source, f"the batch_size option {batch_text!r} must be a whole number of at least 1.")

    arch = source.option("arch")
    if source.kind == "hf":
        folder = _hf_snapshot(role, source, context.allow_downloads)
        weights_path, name, pretrained, model_id = folder, f"local-dir:{folder}", None, source.location
    else:
        weights_path = Path(source.location).expanduser()
        if weights_path.is_dir():
            name, pretrained, model_id = f"local-dir:{weights_path}", None, weights_path.name
        elif weights_path.is_file():
            if not arch:
                raise _unavailable(
                    role, source, f"{weights_path} is a weights file, so the source needs ?arch=<open_clip model name>."
                )
            name = _resolve_arch(role, source, arch)
            pretrained, model_id = str(weights_path), f"{name}:{weights_path.name}"
        else:
            raise _unavailable(role, source, f"the CLIP weights {weights_path} do not exist.")
    if name.startswith("local-dir:"):
        problem = _hub_folder_problem(weights_path)
        if problem:
            raise _unavailable(role, source, problem)

    model, preprocess, tokenizer = _create(role, source, name, pretrained, device, PRECISIONS[dtype_name])
    parameters, size = torch_module_size(model)
    image_size = model.visual.preprocess_cfg.get("size")
    info = ModelInfo(
        role=role,
        source=str(source),
        backend="open_clip",
        model_id=model_id,
        weights_sha256=weights_sha256(weights_path),
        device=device,
        dtype=dtype_name,
        parameters=parameters,
        memory_bytes=size,
        details={
            "path": str(weights_path),
            "arch": name if not name.startswith("local-dir:") else weights_path.name,
            "embed_dim": _embed_dim(model, tokenizer, device),
            "image_size": list(image_size) if isinstance(image_size, tuple | list) else [image_size, image_size],
        },
    )
    return OpenClipModel(model, preprocess, tokenizer, info, context.cache, int(batch_text))


def _embed_dim(model, tokenizer, device: str) -> int:
    """Return the embedding width by encoding one text, which works for every open_clip text tower."""
    import torch

    with torch.inference_mode():
        return int(model.encode_text(tokenizer(["a"]).to(device)).shape[-1])
