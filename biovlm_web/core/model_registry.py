"""The model registry of this process, built from settings.

Workers load weights for analysis jobs. The web process reads the configured sources and the
results of the last model check job, with one exception: ranking a typed comparison hypothesis
loads the text encoder (CLIP or the sentence embedder) in the web process, so the answer comes
at once (see ``biovlm_web/comparisons/ranking.py``).
"""

from functools import lru_cache

from django.conf import settings

from analysis.backends import ModelRegistry


@lru_cache(maxsize=1)
def get_registry() -> ModelRegistry:
    return ModelRegistry(
        settings.MODEL_SOURCES,
        allow_downloads=settings.MODEL_ALLOW_DOWNLOADS,
        cache_dir=settings.MODEL_CACHE_DIR,
        device=settings.MODEL_DEVICE,
    )


def reset_registry() -> None:
    """Forget the process's registry and its loaded models, such as after settings change in tests."""
    get_registry.cache_clear()
