"""The measured proposer and ranker: morphometric features that separate the groups, written
as plain descriptions with their measured values. No model weights are involved."""

from __future__ import annotations

import numpy as np

from analysis.setdiff.features import FEATURE_NAMES, FEATURE_SPECS, measure_image
from analysis.setdiff.hypotheses import Hypothesis, score_hypothesis
from analysis.setdiff.stats import auroc


class FeatureTable:
    """Features of every image, computed once per image hash and kept for re-ranking."""

    def __init__(self, method: str = "watershed", cache=None) -> None:
        self.method = method
        self.cache = cache  # an analysis.backends.cache.ResultCache, or None
        self._memory: dict[str, np.ndarray] = {}

    def features(self, pixels: np.ndarray, sha256: str) -> np.ndarray:
        row = self._memory.get(sha256)
        if row is not None:
            return row
        key = None
        if self.cache is not None:
            key = self.cache.key("measured-features-v1", "measure", sha256, {"method": self.method})
            cached = self.cache.get(key)
            if cached is not None:
                self._memory[sha256] = cached
                return cached
        values = measure_image(pixels, self.method)
        row = np.array([values[name] for name in FEATURE_NAMES], np.float64)
        if key is not None:
            self.cache.put(key, row)
        self._memory[sha256] = row
        return row

    def table(self, images) -> np.ndarray:
        """Return a (len(images), len(FEATURE_NAMES)) array for ImageRecord-like items."""
        return np.array([self.features(image.pixels, image.sha256) for image in images])


def _format(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}" if unit in ("pixels", "objects") else f"{value:.3g}"


def propose_measured(table: np.ndarray, count_a: int) -> list[Hypothesis]:
    """Describe every feature that varies, in the direction in which A differs from B."""
    hypotheses = []
    for column, name in enumerate(FEATURE_NAMES):
        values = table[:, column]
        if np.ptp(values) == 0:
            continue
        values_a, values_b = values[:count_a], values[count_a:]
        area = auroc(values_a, values_b)
        higher_in_a = area > 0.5 or (area == 0.5 and np.median(values_a) >= np.median(values_b))
        spec = FEATURE_SPECS[name]
        median_a, median_b = float(np.median(values_a)), float(np.median(values_b))
        text = spec.higher if higher_in_a else spec.lower
        hypotheses.append(
            Hypothesis(
                description=f"{text} (median {_format(median_a, spec.unit)} in A against {_format(median_b, spec.unit)} in B)",
                proposer="measured",
                source={
                    "feature": name,
                    "family": spec.family,
                    "whole_image": spec.whole_image,
                    "unit": spec.unit,
                    "sign": 1 if higher_in_a else -1,
                    "phrase": text,
                    "median_a": median_a,
                    "median_b": median_b,
                },
            )
        )
    return hypotheses


def rank_measured(
    hypotheses: list[Hypothesis], table: np.ndarray, names_a: list[str], names_b: list[str], **options
) -> list[Hypothesis]:
    """Score each measured hypothesis by its own feature, signed so that its A direction is high."""
    for hypothesis in hypotheses:
        column = FEATURE_NAMES.index(hypothesis.source["feature"])
        sign = hypothesis.source["sign"]
        score_hypothesis(hypothesis, table[:, column] * sign, names_a, names_b, "measured", **options)
        # Scores are signed so that higher fits the description; evidence also shows the measured value.
        for entries in hypothesis.evidence.values():
            for entry in entries:
                entry["value"] = entry["score"] * sign
    return hypotheses
