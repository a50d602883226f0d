"""Store a run's ranked hypotheses, and rank a typed hypothesis at once.

A typed description is ranked on the first of these paths that is available:

1. ``clip``: when the last run stored CLIP image embeddings (see ``embeddings``) and the same
   CLIP model loads here, the text is embedded with CLIP's text encoder and each image scores
   the cosine similarity of its embedding with the text's.
2. ``sentence_embedder``: the text is matched to the measured feature whose description is
   closest in sentence-embedding space (``analysis.setdiff.typed.EmbeddingMatcher``), and the
   images score that feature's stored values, signed by the direction the description states.
3. ``word_overlap``: as 2, matching the description that shares the most words with the text.

Every path gives the hypothesis the same statistics and evidence as the run's own, and its
``source`` records the path, the matched feature and why a better path was not taken.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from django.db import transaction

from analysis.backends import ModelUnavailable
from analysis.setdiff.hypotheses import Hypothesis as AnalysisHypothesis
from analysis.setdiff.hypotheses import rank, score_hypothesis
from analysis.setdiff.rankers import EmbeddingIndex
from analysis.setdiff.stats import Separation
from analysis.setdiff.typed import EmbeddingMatcher, FeatureMatch, TypedHypothesisError, match_by_words
from biovlm_web.comparisons.embeddings import load_index, stored_entry
from biovlm_web.comparisons.models import Comparison, Hypothesis

logger = logging.getLogger(__name__)

RESULT_FIELDS = (
    "auroc", "auroc_low", "auroc_high", "welch_t", "welch_p", "permutation_p", "effect_size", "mean_a", "mean_b", "q",
)  # fmt: skip

__all__ = ["TypedHypothesisError", "carry_over", "rank_typed", "rerank", "row_values", "score_typed"]


def _finite(value):
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def feature_column(comparison: Comparison, feature: str) -> tuple[np.ndarray, list[str], list[str]]:
    """Return the stored values of ``feature`` (A images first) and the image UUIDs of A and B."""
    stored = comparison.features
    if not stored or feature not in stored.get("names", []):
        raise TypedHypothesisError("This comparison has no stored measurements yet; run it first.")
    column = stored["names"].index(feature)
    values = np.array([np.nan if row[column] is None else row[column] for row in stored["rows"]], np.float64)
    return values, list(stored["images_a"]), list(stored["images_b"])


def _analysis_hypothesis(row: Hypothesis) -> AnalysisHypothesis:
    values = {name: (np.nan if getattr(row, name) is None else getattr(row, name)) for name in RESULT_FIELDS}
    item = AnalysisHypothesis(description=row.description, proposer=row.proposer, source=row.source, ranker=row.ranker)
    item.result = Separation(**values)
    item.evidence = {"row": row}
    return item


def edit_key(proposer: str, source: dict, original_description: str) -> tuple:
    """Identify a hypothesis across runs: measured ones by feature and direction, since their
    text includes the medians, and the others by their original text."""
    if proposer == "measured":
        return (proposer, source.get("feature"), source.get("sign"))
    return (proposer, original_description.lower())


def carry_over(comparison: Comparison, previous: list[Hypothesis], registry=None) -> None:
    """Keep a re-run's renames and dismissals, and rank the typed hypotheses again on the new measurements.

    A typed hypothesis whose text no longer matches a measured property is dropped.
    """
    edits = {edit_key(row.proposer, row.source, row.original_description): row for row in previous}
    changed = []
    for row in comparison.hypotheses.all():
        old = edits.get(edit_key(row.proposer, row.source, row.original_description))
        if old is None:
            continue
        row.dismissed = old.dismissed
        if old.description != old.original_description:
            row.description = old.description
        changed.append(row)
    Hypothesis.objects.bulk_update(changed, ["dismissed", "description"])
    for old in previous:
        if old.proposer != "user":
            continue
        try:
            values = score_typed(comparison, old.original_description, registry)
        except TypedHypothesisError:
            continue
        values.update(description=old.description, dismissed=old.dismissed)
        Hypothesis.objects.create(comparison=comparison, typed_by=old.typed_by, **values)


def rerank(comparison: Comparison) -> None:
    """Recompute q-values across the comparison's table and store the rank of every row."""
    rows = list(comparison.hypotheses.all())
    ordered = rank([_analysis_hypothesis(row) for row in rows])
    for position, item in enumerate(ordered, start=1):
        row = item.evidence["row"]
        row.rank = position
        row.q = _finite(item.result.q)
    Hypothesis.objects.bulk_update(rows, ["rank", "q"])


def row_values(item: AnalysisHypothesis, names: list[str]) -> dict:
    """Return the model fields of one scored analysis hypothesis."""
    result = item.result.as_dict()
    return {
        "description": item.description[:500],
        "original_description": item.description[:500],
        "proposer": item.proposer,
        "ranker": item.ranker,
        **{name: _finite(result.get(name)) for name in RESULT_FIELDS},
        "source": _finite(item.source),
        "evidence": _finite(item.evidence),
        "scores": _finite(dict(zip(names, [float(value) for value in item.scores], strict=True))),
    }


def _typing_options(comparison: Comparison) -> dict:
    return {key: comparison.options[key] for key in ("resamples", "permutations") if key in comparison.options}


def _stored_clip(comparison: Comparison, registry, notes: list[str]) -> tuple[EmbeddingIndex, object] | None:
    """Return the stored CLIP image embeddings and the CLIP backend that made them, or None with a note."""
    entry = stored_entry(comparison)
    if entry is None:
        return None
    try:
        clip = registry.get("clip")
    except ModelUnavailable as error:
        notes.append(f"CLIP is unavailable ({error.reason}), so the stored image embeddings were not used")
        logger.warning("Typed hypothesis of comparison %s not ranked by CLIP: %s", comparison.uuid, error.reason)
        return None
    if clip.info.version != entry["model"]:
        notes.append(
            f"the stored image embeddings are of CLIP {entry['model']} but the configured CLIP is "
            f"{clip.info.version}; run the comparison again to rank typed text with it"
        )
        return None
    index = load_index(comparison)
    stored = comparison.features
    if index is None or index.names_a != stored["images_a"] or index.names_b != stored["images_b"]:
        notes.append("the stored image embeddings are missing or of other images; run the comparison again")
        return None
    return index, clip


def _match_feature(text: str, registry, notes: list[str]) -> FeatureMatch:
    """Match ``text`` to a measured feature with the sentence embedder, or by words without one."""
    try:
        embedder = registry.get("sentence_embedder")
    except ModelUnavailable as error:
        notes.append(f"the sentence embedder is unavailable ({error.reason}), so the text was matched by words")
        logger.warning("Typed hypothesis matched by words: the sentence embedder is unavailable: %s", error.reason)
        return match_by_words(text)
    return EmbeddingMatcher(embedder).match(text)


def _score_on_clip(comparison: Comparison, text: str, index: EmbeddingIndex, clip) -> dict:
    item = AnalysisHypothesis(description=text, proposer="user", source={"path": "clip"})
    index.rank([item], clip, **_typing_options(comparison))
    return row_values(item, index.names_a + index.names_b)


def _score_on_feature(comparison: Comparison, text: str, match: FeatureMatch) -> dict:
    values, names_a, names_b = feature_column(comparison, match.feature)
    item = AnalysisHypothesis(description=text, proposer="user", source={"path": match.matcher, **match.as_source()})
    score_hypothesis(item, values * match.sign, names_a, names_b, "measured", **_typing_options(comparison))
    for entries in item.evidence.values():
        for entry in entries:
            entry["value"] = entry["score"] * match.sign
    return row_values(item, names_a + names_b)


def score_typed(comparison: Comparison, text: str, registry=None) -> dict:
    """Score a typed description on the first available path (see the module docstring).

    Returns the new row's model fields. ``registry`` defaults to this process's model registry.
    """
    text = " ".join(text.split())
    if not text:
        raise TypedHypothesisError("Type a description, such as 'more cells per image'.")
    if len(text) > 500:
        raise TypedHypothesisError(f"The description has {len(text)} characters; the maximum is 500.")
    if not comparison.features or not comparison.features.get("names"):
        raise TypedHypothesisError("This comparison has no stored measurements yet; run it first.")
    if registry is None:
        from biovlm_web.core.model_registry import get_registry

        # NOTE: the web process loads the CLIP or sentence-embedder model on the first typed
        # description, which takes seconds on a CPU; later ones reuse the loaded model.
        registry = get_registry()

    notes: list[str] = []
    stored_clip = _stored_clip(comparison, registry, notes)
    if stored_clip is not None:
        values = _score_on_clip(comparison, text, *stored_clip)
    else:
        values = _score_on_feature(comparison, text, _match_feature(text, registry, notes))
    if notes:
        values["source"]["path_note"] = "; ".join(notes)
    return values


def rank_typed(comparison: Comparison, text: str, user=None, registry=None) -> Hypothesis:
    """Rank a typed description at once and add it to the comparison's table."""
    values = score_typed(comparison, text, registry)
    with transaction.atomic():
        row = Hypothesis.objects.create(comparison=comparison, typed_by=user, **values)
        rerank(comparison)
    row.refresh_from_db()
    return row
