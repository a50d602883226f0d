"""Store a run's ranked hypotheses, and rank a typed hypothesis from the stored measured features.

A typed description is matched to the measured feature whose plain description (such as
"more objects per image" or "rounder objects") shares the most words with it, after folding
common synonyms ("cells" and "nuclei" read as "objects", "bigger" as "larger"). The image
scores are then that feature's stored values, signed by the direction the text states, and
the hypothesis gets the same statistics and evidence as the run's own.
"""

from __future__ import annotations

import math
import re

import numpy as np
from django.db import transaction

from analysis.setdiff.features import FEATURE_SPECS
from analysis.setdiff.hypotheses import Hypothesis as AnalysisHypothesis
from analysis.setdiff.hypotheses import rank, score_hypothesis
from analysis.setdiff.stats import Separation
from biovlm_web.comparisons.models import Comparison, Hypothesis

RESULT_FIELDS = (
    "auroc", "auroc_low", "auroc_high", "welch_t", "welch_p", "permutation_p", "effect_size", "mean_a", "mean_b", "q",
)  # fmt: skip

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
# Words that give a direction or the objects but no property. A match needs a property word,
# except for counts, whose description has none.
GENERIC_WORDS = {"more", "fewer", "object", "per", "image", "of", "the", "a", "an", "in", "with", "than", "by"}


class TypedHypothesisError(ValueError):
    """A typed description that no stored measurement can rank, with what to type instead."""


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


def _words(text: str) -> set[str]:
    return {WORD_FORMS.get(word, word) for word in re.findall(r"[a-z]+", text.lower())}


def match_feature(text: str) -> tuple[str, int, str]:
    """Return (feature name, sign, matched phrase) for the measured description closest to ``text``.

    The score counts shared property words twice and shared direction or object words once,
    less half a point for each property word of the phrase that the text lacks.
    """
    words = _words(text)
    best: tuple[float, str, int, str] | None = None
    for spec in FEATURE_SPECS.values():
        for phrase, sign in ((spec.higher, 1), (spec.lower, -1)):
            phrase_words = _words(phrase)
            content = (words & phrase_words) - GENERIC_WORDS
            generic = words & phrase_words & GENERIC_WORDS
            missing = (phrase_words - words) - GENERIC_WORDS
            if not content and not (spec.name == "object_count" and generic >= {"object"} and len(generic) >= 2):
                continue
            score = 2 * len(content) + len(generic) - 0.5 * len(missing)
            if best is None or score > best[0]:
                best = (score, spec.name, sign, phrase)
    if best is None:
        examples = ", ".join(
            repr(FEATURE_SPECS[name].higher) for name in ("object_count", "object_area", "eccentricity")
        )
        raise TypedHypothesisError(
            f"No measured property matches {text!r}. Without a text model, describe a measured property, "
            f"such as {examples}, or configure CLIP on the models page."
        )
    return best[1], best[2], best[3]


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


def carry_over(comparison: Comparison, previous: list[Hypothesis]) -> None:
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
            values = score_typed(comparison, old.original_description)
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


def score_typed(comparison: Comparison, text: str) -> dict:
    """Score a typed description on the stored measurements; return the new row's model fields."""
    text = " ".join(text.split())
    if not text:
        raise TypedHypothesisError("Type a description, such as 'more cells per image'.")
    if len(text) > 500:
        raise TypedHypothesisError(f"The description has {len(text)} characters; the maximum is 500.")
    # NOTE: typed text is always ranked on a measured feature, even when CLIP or a sentence
    # embedder ranked the run's text hypotheses, because the web process loads no models.
    feature, sign, phrase = match_feature(text)
    values, names_a, names_b = feature_column(comparison, feature)
    spec = FEATURE_SPECS[feature]
    item = AnalysisHypothesis(
        description=text,
        proposer="user",
        source={"feature": feature, "sign": sign, "phrase": phrase, "whole_image": spec.whole_image, "unit": spec.unit},
    )
    options = {key: comparison.options[key] for key in ("resamples", "permutations") if key in comparison.options}
    score_hypothesis(item, values * sign, names_a, names_b, "measured", **options)
    for entries in item.evidence.values():
        for entry in entries:
            entry["value"] = entry["score"] * sign
    return row_values(item, names_a + names_b)


def rank_typed(comparison: Comparison, text: str, user=None) -> Hypothesis:
    """Rank a typed description on the stored measurements and add it to the comparison's table."""
    values = score_typed(comparison, text)
    with transaction.atomic():
        row = Hypothesis.objects.create(comparison=comparison, typed_by=user, **values)
        rerank(comparison)
    row.refresh_from_db()
    return row
