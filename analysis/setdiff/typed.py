"""Match a typed description to the measured feature it names.

Two matchers, best first:

- ``EmbeddingMatcher`` embeds the text with the sentence embedder and takes the feature
  description (such as "more objects per image") with the highest cosine similarity. The
  descriptions are embedded once per embedder model and kept, so each typed text costs one
  embedding.
- ``match_by_words`` takes the description that shares the most words with the text. It needs
  no model.

Both fold common words first ("cells" and "nuclei" read as "objects", "bigger" as "larger"),
because the feature descriptions use "objects".
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from analysis.setdiff.features import FEATURE_SPECS, FEATURES

WORD_FORMS = {
    "cell": "object", "cells": "object", "nucleus": "object", "nuclei": "object", "objects": "object",
    "particle": "object", "particles": "object", "organelle": "object", "organelles": "object", "blob": "object",
    "blobs": "object", "spot": "object", "spots": "object", "bigger": "larger", "big": "larger", "large": "larger",
    "small": "smaller", "tinier": "smaller", "elongate": "elongated", "oval": "elongated", "round": "rounder",
    "circular": "rounder", "dim": "dimmer", "brighter": "brighter", "bright": "brighter", "many": "more",
    "less": "fewer", "clumped": "clustered", "grouped": "clustered", "dark": "darker", "textured": "textured",
    "texture": "texture", "spread": "spread", "spaced": "spaced", "images": "image", "outline": "outlines",
    "colour": "colour", "color": "colour", "smooth": "smoother",
}  # fmt: skip
# Words that give a direction or the objects but no property. A word match needs a property
# word, except for counts, whose description has none.
GENERIC_WORDS = {"more", "fewer", "object", "per", "image", "of", "the", "a", "an", "in", "with", "than", "by"}
# Plural nouns fold to "objects" in text for the embedder, where the singular would read oddly.
EMBEDDER_FORMS = {**WORD_FORMS, "cells": "objects", "nuclei": "objects", "particles": "objects", "spots": "objects"}
# NOTE: set by reading all-MiniLM-L6-v2 similarities after folding: unrelated texts ("a
# happier mood", "the weather is nice") scored at most 0.32, and short property texts ("more
# crowded", "fewer nuclei") 0.47 to 0.75 with their feature. A text that names cells but no
# measured property can still pass ("happier cells" scored 0.44), and other embedders may
# need another floor.
MIN_SIMILARITY = 0.4


class TypedHypothesisError(ValueError):
    """A typed description that no stored measurement can rank, with what to type instead."""


@dataclass(frozen=True)
class FeatureMatch:
    """The measured feature a typed text names, and how it was matched."""

    feature: str
    sign: int  # +1 when the text describes higher values, -1 for lower
    phrase: str  # the feature description that matched
    matcher: str  # "sentence_embedder" or "word_overlap"
    similarity: float | None = None  # cosine similarity, for the sentence embedder
    model: str | None = None  # the sentence embedder's version

    def as_source(self) -> dict:
        spec = FEATURE_SPECS[self.feature]
        source = {
            "feature": self.feature,
            "label": spec.label,
            "sign": self.sign,
            "phrase": self.phrase,
            "matcher": self.matcher,
            "whole_image": spec.whole_image,
            "unit": spec.unit,
        }
        if self.similarity is not None:
            source["similarity"] = round(self.similarity, 4)
        if self.model is not None:
            source["matcher_model"] = self.model
        return source


def feature_phrases() -> list[tuple[str, int, str]]:
    """Return (feature, sign, description) for both directions of every measured feature."""
    return [(spec.name, sign, phrase) for spec in FEATURES for phrase, sign in ((spec.higher, 1), (spec.lower, -1))]


def fold_words(text: str, forms: dict[str, str]) -> list[str]:
    return [forms.get(word, word) for word in re.findall(r"[a-z]+", text.lower())]


def no_match_error(text: str) -> TypedHypothesisError:
    examples = ", ".join(repr(FEATURE_SPECS[name].higher) for name in ("object_count", "object_area", "eccentricity"))
    return TypedHypothesisError(
        f"No measured property matches {text!r}. Describe a measured property, such as {examples}, "
        "or configure CLIP on the models page and run the comparison with the CLIP text ranker."
    )


def match_by_words(text: str) -> FeatureMatch:
    """Match ``text`` to the description that shares the most words with it.

    The score counts shared property words twice and shared direction or object words once,
    less half a point for each property word of the description that the text lacks.
    """
    words = set(fold_words(text, WORD_FORMS))
    best: tuple[float, str, int, str] | None = None
    for feature, sign, phrase in feature_phrases():
        phrase_words = set(fold_words(phrase, WORD_FORMS))
        content = (words & phrase_words) - GENERIC_WORDS
        generic = words & phrase_words & GENERIC_WORDS
        missing = (phrase_words - words) - GENERIC_WORDS
        counts_objects = feature == "object_count" and "object" in generic and len(generic) >= 2
        if not content and not counts_objects:
            continue
        score = 2 * len(content) + len(generic) - 0.5 * len(missing)
        if best is None or score > best[0]:
            best = (score, feature, sign, phrase)
    if best is None:
        raise no_match_error(text)
    return FeatureMatch(best[1], best[2], best[3], "word_overlap")


class EmbeddingMatcher:
    """Match typed texts to feature descriptions by the cosine similarity of their sentence embeddings."""

    _description_embeddings: dict[str, np.ndarray] = {}
    _lock = threading.Lock()

    def __init__(self, embedder, min_similarity: float = MIN_SIMILARITY) -> None:
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.phrases = feature_phrases()

    def description_embeddings(self) -> np.ndarray:
        """Return the embeddings of every feature description, computed once per embedder model."""
        version = self.embedder.info.version
        with self._lock:
            cached = self._description_embeddings.get(version)
            if cached is None:
                texts = [" ".join(fold_words(phrase, EMBEDDER_FORMS)) for _, _, phrase in self.phrases]
                cached = np.asarray(self.embedder.embed(texts), np.float32)
                self._description_embeddings[version] = cached
        return cached

    def similarities(self, text: str) -> np.ndarray:
        """Return the cosine similarity of ``text`` to each of ``self.phrases``."""
        query = np.asarray(self.embedder.embed([" ".join(fold_words(text, EMBEDDER_FORMS))])[0], np.float32)
        return self.description_embeddings() @ query

    def match(self, text: str) -> FeatureMatch:
        similarities = self.similarities(text)
        best = int(np.argmax(similarities))
        if similarities[best] < self.min_similarity:
            raise no_match_error(text)
        feature, sign, phrase = self.phrases[best]
        similarity = float(similarities[best])
        return FeatureMatch(feature, sign, phrase, "sentence_embedder", similarity, self.embedder.info.version)
