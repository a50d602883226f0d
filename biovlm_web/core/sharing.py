"""The kinds of result that share links can open, and where each one's page lives.

An app makes a result shareable with ``register_shareable("name", Model, page_url)``; the
model needs a ``uuid`` field and a ``project`` attribute.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType


@dataclass(frozen=True)
class Shareable:
    name: str
    model: type
    page_url: Callable[[object], str]


_SHAREABLES: dict[str, Shareable] = {}


def register_shareable(name: str, model: type, page_url: Callable[[object], str]) -> None:
    _SHAREABLES[name] = Shareable(name, model, page_url)


def shareable_names() -> list[str]:
    return sorted(_SHAREABLES)


def get_shareable(name: str) -> Shareable | None:
    return _SHAREABLES.get(name)


def shareable_for_object(obj) -> Shareable | None:
    for shareable in _SHAREABLES.values():
        if isinstance(obj, shareable.model):
            return shareable
    return None


def shareable_for_content_type(content_type: ContentType) -> Shareable | None:
    model = content_type.model_class()
    for shareable in _SHAREABLES.values():
        if shareable.model is model:
            return shareable
    return None
