"""Rankers that score a text description against every image through embeddings.

The CLIP ranker scores each image by the cosine similarity of its image embedding and the
description's text embedding. The sentence-embedder ranker scores each image by the cosine
similarity of its caption's embedding and the description's. Both keep the image-side
embeddings, so a description a user types later is ranked with one text embedding and a
matrix product.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from analysis.setdiff.hypotheses import Hypothesis, score_hypothesis


class EmbeddingIndex:
    """Image-side embeddings of one comparison (A images first), with the ranker that made them.

    ``keys`` optionally name the input of each row, such as the image's sha256, so that a later
    run with the same model reuses the rows of unchanged images.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        names_a: list[str],
        names_b: list[str],
        ranker: str,
        model: str,
        keys: list[str] | None = None,
    ) -> None:
        if embeddings.shape[0] != len(names_a) + len(names_b):
            raise ValueError(f"{embeddings.shape[0]} embeddings for {len(names_a) + len(names_b)} images")
        if keys is not None and len(keys) != embeddings.shape[0]:
            raise ValueError(f"{len(keys)} keys for {embeddings.shape[0]} embeddings")
        self.embeddings = np.asarray(embeddings, np.float32)
        self.names_a = list(names_a)
        self.names_b = list(names_b)
        self.ranker = ranker
        self.model = model
        self.keys = list(keys) if keys is not None else None

    @classmethod
    def from_clip(
        cls,
        clip,
        images_a: list,
        images_b: list,
        names_a: list[str],
        names_b: list[str],
        keys: list[str] | None = None,
        previous: EmbeddingIndex | None = None,
    ) -> EmbeddingIndex:
        """Embed the images with CLIP, reusing the rows of ``previous`` whose key and model match."""
        images = [*images_a, *images_b]
        known = previous.rows_by_key(clip.info.version) if previous is not None else {}
        row_keys = keys if keys is not None else [None] * len(images)
        rows = [known.get(key) for key in row_keys]
        missing = [index for index, key in enumerate(row_keys) if key not in known]
        if missing:
            for index, row in zip(missing, clip.embed_images([images[index] for index in missing]), strict=True):
                rows[index] = row
        embeddings = np.stack(rows)
        return cls(embeddings, names_a, names_b, "clip", clip.info.version, keys)

    def rows_by_key(self, model: str) -> dict[str, np.ndarray]:
        """Return each keyed row when this index was made with ``model``, else nothing."""
        if self.keys is None or self.model != model:
            return {}
        return dict(zip(self.keys, self.embeddings, strict=True))

    @classmethod
    def from_captions(
        cls, embedder, captions_a: list[str], captions_b: list[str], names_a: list[str], names_b: list[str]
    ) -> EmbeddingIndex:
        embeddings = embedder.embed([*captions_a, *captions_b])
        return cls(embeddings, names_a, names_b, "sentence_embedder", embedder.info.version)

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write the index as an .npz file to a path or a binary file object."""
        arrays = {
            "embeddings": self.embeddings,
            "names_a": np.array(self.names_a, dtype=str),
            "names_b": np.array(self.names_b, dtype=str),
            "ranker": np.array(self.ranker),
            "model": np.array(self.model),
        }
        if self.keys is not None:
            arrays["keys"] = np.array(self.keys, dtype=str)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> EmbeddingIndex:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["embeddings"],
                [str(name) for name in data["names_a"]],
                [str(name) for name in data["names_b"]],
                str(data["ranker"]),
                str(data["model"]),
                [str(key) for key in data["keys"]] if "keys" in data.files else None,
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
