"""Rankers that score a text description against every image through embeddings.

The CLIP ranker scores each image by the cosine similarity of its image embedding and the
description's text embedding. The sentence-embedder ranker scores each image by the cosine
similarity of its caption's embedding and the description's. Both keep the image-side
embeddings, so a description a user types later is ranked with one text embedding and a
matrix product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.setdiff.hypotheses import Hypothesis, score_hypothesis


class EmbeddingIndex:
    """Image-side embeddings of one comparison (A images first), with the ranker that made them."""

    def __init__(self, embeddings: np.ndarray, names_a: list[str], names_b: list[str], ranker: str, model: str) -> None:
        if embeddings.shape[0] != len(names_a) + len(names_b):
            raise ValueError(f"{embeddings.shape[0]} embeddings for {len(names_a) + len(names_b)} images")
        self.embeddings = np.asarray(embeddings, np.float32)
        self.names_a = list(names_a)
        self.names_b = list(names_b)
        self.ranker = ranker
        self.model = model

    @classmethod
    def from_clip(cls, clip, images_a: list, images_b: list, names_a: list[str], names_b: list[str]) -> EmbeddingIndex:
        embeddings = clip.embed_images([*images_a, *images_b])
        return cls(embeddings, names_a, names_b, "clip", clip.info.version)

    @classmethod
    def from_captions(
        cls, embedder, captions_a: list[str], captions_b: list[str], names_a: list[str], names_b: list[str]
    ) -> EmbeddingIndex:
        embeddings = embedder.embed([*captions_a, *captions_b])
        return cls(embeddings, names_a, names_b, "sentence_embedder", embedder.info.version)

    def save(self, path: str | Path) -> None:
        np.savez(
            path,
            embeddings=self.embeddings,
            names_a=np.array(self.names_a),
            names_b=np.array(self.names_b),
            ranker=np.array(self.ranker),
            model=np.array(self.model),
        )

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["embeddings"],
                [str(name) for name in data["names_a"]],
                [str(name) for name in data["names_b"]],
                str(data["ranker"]),
                str(data["model"]),
            )

    def text_encoder(self, backend):
        """Return the function of ``backend`` that embeds texts for this index."""
        return backend.embed_texts if self.ranker == "clip" else backend.embed

    def rank(self, hypotheses: list[Hypothesis], backend, **options) -> list[Hypothesis]:
        """Score each hypothesis on every image; ``backend`` only embeds the descriptions."""
        if not hypotheses:
            return hypotheses
        texts = self.text_encoder(backend)([item.description for item in hypotheses])
        similarities = self.embeddings @ np.asarray(texts, np.float32).T
        for column, hypothesis in enumerate(hypotheses):
            score_hypothesis(hypothesis, similarities[:, column], self.names_a, self.names_b, self.ranker, **options)
            hypothesis.source.setdefault("ranker_model", self.model)
        return hypotheses


VQA_PROMPT = "Is this true of the image: {description}? Answer yes or no."


def vqa_scores(vlm, images: list, description: str) -> np.ndarray:
    """Score each image by log p("yes") - log p("no") for the VLM's answer about ``description``.

    Each answer's log-probability is the sum over its tokens, scored with ``continuation_logprobs``.
    """
    prompt = VQA_PROMPT.format(description=description)
    scores = []
    for image in images:
        yes = sum(vlm.continuation_logprobs([image], prompt, "yes"))
        no = sum(vlm.continuation_logprobs([image], prompt, "no"))
        scores.append(yes - no)
    return np.array(scores, np.float64)


def rank_by_vqa(
    hypotheses: list[Hypothesis], vlm, images_a: list, images_b: list, names_a: list[str], names_b: list[str], **options
) -> list[Hypothesis]:
    """Score each hypothesis by yes/no answers of the VLM on every image (two forward passes per image)."""
    images = [*images_a, *images_b]
    for hypothesis in hypotheses:
        score_hypothesis(
            hypothesis, vqa_scores(vlm, images, hypothesis.description), names_a, names_b, "vqa", **options
        )
        hypothesis.source.setdefault("ranker_model", vlm.info.version)
    return hypotheses
