"""Role interfaces that pipelines call, whichever backend loads the model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.backends.base import ModelInfo


@dataclass
class Generation:
    """Generated text, with each generated token and its log-probability when the model gives them."""

    text: str
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] | None = None


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass
class ChatResult:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class Detections:
    """Detections in one frame: boxes as (x1, y1, x2, y2) pixels, with optional instance masks."""

    boxes: np.ndarray  # (n, 4) float32
    scores: np.ndarray  # (n,) float32
    class_ids: np.ndarray  # (n,) int64
    class_names: list[str]  # one per detection, parallel to class_ids
    masks: np.ndarray | None = None  # (n, height, width) bool


class Backend(ABC):
    """A loaded model of one role. ``info`` records its source, weights hash, device and memory."""

    role: str
    info: ModelInfo

    def close(self) -> None:  # noqa: B027  optional hook, a no-op for backends that hold no memory
        """Release the model's memory; the registry calls this when it unloads the role."""


class Captioner(Backend):
    role = "captioner"

    @abstractmethod
    def caption(self, images: list, max_new_tokens: int = 30) -> list[str]:
        """Return one caption per PIL image."""


class VisionLanguageModel(Backend):
    role = "vlm"

    @abstractmethod
    def generate(
        self, images: list, prompt: str, max_new_tokens: int = 64, with_logprobs: bool = False
    ) -> Generation:
        """Generate a reply to ``prompt`` about ``images`` (PIL images, all shown to the model at once)."""

    def continuation_logprobs(self, images: list, prompt: str, continuation: str) -> list[float]:
        """Return the log-probability of each token of ``continuation`` after ``images`` and ``prompt``."""
        raise NotImplementedError(f"{type(self).__name__} cannot score a given continuation.")


class LanguageModel(Backend):
    role = "llm"

    @abstractmethod
    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> ChatResult:
        """Continue a chat given as OpenAI-style messages; ``tools`` are OpenAI-style function specs."""


class ClipModel(Backend):
    role = "clip"

    @abstractmethod
    def embed_images(self, images: list) -> np.ndarray:
        """Return L2-normalised image embeddings, shape (n, dim)."""

    @abstractmethod
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Return L2-normalised text embeddings, shape (n, dim)."""


class TextEmbedder(Backend):
    role = "sentence_embedder"

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """Return L2-normalised sentence embeddings, shape (n, dim)."""


class Detector(Backend):
    role = "detector"

    @abstractmethod
    def detect(self, frames: list[np.ndarray], confidence: float = 0.25) -> list[Detections]:
        """Detect objects in RGB uint8 frames of shape (height, width, 3)."""


class CheckpointModel(Backend):
    """A torch module restored from a checkpoint, with the config and class names it was saved with."""

    role = "aptvit"
    module: Any
    config: dict
    class_names: list[str]
