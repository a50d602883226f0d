"""The measured proposer and ranker: morphometric features that separate the groups, written
as plain descriptions with their measured values. No model weights are involved."""

from __future__ import annotations

import numpy as np

from analysis.setdiff.features import FEATURE_NAMES, FEATURE_SPECS, measure_image
from analysis.setdiff.hypotheses import Hypothesis, score_hypothesis
from analysis.setdiff.stats import auroc, within_rounding

# Object property pairs that combine into one description, with the word for each direction:
# size with a shape measure, as in "larger and rounder objects". Eccentricity is not paired,
# because its lower direction reads the same as higher circularity ("rounder"). Brightness and texture are
# left out because blur makes small objects dimmer, and a brighter object with the same noise
# has a lower interior coefficient of variation, so both would join a plain size or
# brightness difference.
OBJECT_PROPERTY_WORDS = {
    "object_area": ("larger", "smaller"),
    "circularity": ("rounder", "less round"),
    "solidity": ("more convex", "more irregular"),
}
COMBINED_PAIRS = (
    ("object_area", "circularity"),
    ("object_area", "solidity"),
)
# Both features of a pair must separate the groups on their own, in the direction the text
# states, before they are joined. Each needs this AUROC (in its own A direction), a one-sided
# Mann-Whitney p-value below COMBINE_MAX_P, and medians that differ by at least
# COMBINE_MIN_CHANGE of the larger one.
COMBINE_MIN_AUROC = 0.75
COMBINE_MAX_P = 0.01
# NOTE: pixelisation and touching objects shift shape measures with size alone: groups that
# differ only in nucleus radius (5 against 7.5 or 8 pixels) differed by 2 to 4 % in median
# circularity, solidity and eccentricity. The 5 % floor was set from those measurements, so
# a smaller true shape change is not joined to a size change.
COMBINE_MIN_CHANGE = 0.05

# A feature is not proposed when its group difference is practically nil, because a tiny but
# consistent shift separates the groups as well as a visible one. On greyscale tiles the
# colour fractions are 1/3 with shifts below 1e-4 from the epsilon in their denominator,
# and they reached AUROC 0.84 on the demo's nuclei tiles.
# The difference is nil when both the group medians and the group means differ by less than
# NEGLIGIBLE_RELATIVE_CHANGE of the larger magnitude, or, for colour fractions, by less than
# NEGLIGIBLE_COLOUR_FRACTION (a half-percentage-point shift in a channel's share of the RGB sum).
NEGLIGIBLE_RELATIVE_CHANGE = 0.001
NEGLIGIBLE_COLOUR_FRACTION = 0.005
COLOUR_FRACTION_FEATURES = ("red_fraction", "green_fraction", "blue_fraction")


def is_constant(values: np.ndarray) -> bool:
    """Return whether ``values`` all lie within floating-point rounding of each other."""
    return within_rounding(float(np.min(values)), float(np.max(values)))


def is_negligible(name: str, values_a: np.ndarray, values_b: np.ndarray) -> bool:
    """Return whether the groups' medians and means both differ by a practically nil amount."""
    pairs = (
        (float(np.median(values_a)), float(np.median(values_b))),
        (float(np.mean(values_a)), float(np.mean(values_b))),
    )
    for first, second in pairs:
        change = abs(first - second)
        if name in COLOUR_FRACTION_FEATURES and change >= NEGLIGIBLE_COLOUR_FRACTION:
            return False
        if name not in COLOUR_FRACTION_FEATURES and change >= NEGLIGIBLE_RELATIVE_CHANGE * max(abs(first), abs(second)):
            return False
    return True


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
            key = self.cache.key("measured-features-v2", "measure", sha256, {"method": self.method})
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
    """Describe every feature whose group difference is not negligible (see ``is_negligible``), in
    the direction in which A differs from B, then add combined descriptions of object property
    pairs that both separate the groups."""
    hypotheses = []
    for column, name in enumerate(FEATURE_NAMES):
        values = table[:, column]
        values_a, values_b = values[:count_a], values[count_a:]
        if is_constant(values) or is_negligible(name, values_a, values_b):
            continue
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
                    "label": spec.label,
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
    return hypotheses + propose_combined(table, count_a)


def _separates(values: np.ndarray, count_a: int) -> int:
    """Return +1 or -1 when A is clearly higher or lower than B in ``values``, else 0."""
    from scipy.stats import mannwhitneyu

    values_a, values_b = values[:count_a], values[count_a:]
    if is_constant(values):
        return 0
    area = auroc(values_a, values_b)
    sign = 1 if area >= 0.5 else -1
    if max(area, 1 - area) < COMBINE_MIN_AUROC:
        return 0
    median_a, median_b = np.median(values_a), np.median(values_b)
    if abs(median_a - median_b) < COMBINE_MIN_CHANGE * max(abs(median_a), abs(median_b)):
        return 0
    alternative = "greater" if sign == 1 else "less"
    if mannwhitneyu(values_a, values_b, alternative=alternative).pvalue >= COMBINE_MAX_P:
        return 0
    return sign


def combined_score(table: np.ndarray, features: dict[str, int], count_a: int) -> np.ndarray:
    """Return the mean of the features' signed z-scores per image.

    Each feature is centred on its mean over all images and divided by its pooled within-group
    standard deviation (the overall one when that is 0), and signed so that the described A
    direction is high. The mean of two such z-scores separates the groups at least as well as
    either one when both differ and vary independently within the groups.
    """
    parts = []
    for name, sign in features.items():
        values = table[:, FEATURE_NAMES.index(name)] * sign
        values_a, values_b = values[:count_a], values[count_a:]
        within = np.concatenate([values_a - values_a.mean(), values_b - values_b.mean()])
        spread = np.sqrt(np.sum(within**2) / max(len(values) - 2, 1))
        if spread == 0:
            spread = values.std()
        parts.append((values - values.mean()) / spread)
    return np.mean(parts, axis=0)


def propose_combined(table: np.ndarray, count_a: int) -> list[Hypothesis]:
    """Join object property pairs that both separate the groups into one description.

    The single-feature descriptions stay, and the combined one is ranked on ``combined_score``.
    """
    hypotheses = []
    for first, second in COMBINED_PAIRS:
        signs = {name: _separates(table[:, FEATURE_NAMES.index(name)], count_a) for name in (first, second)}
        if 0 in signs.values():
            continue
        words = [OBJECT_PROPERTY_WORDS[name][0 if sign == 1 else 1] for name, sign in signs.items()]
        text = f"{words[0]} and {words[1]} objects"
        medians = {}
        values_text = []
        for name in (first, second):
            values = table[:, FEATURE_NAMES.index(name)]
            median_a, median_b = float(np.median(values[:count_a])), float(np.median(values[count_a:]))
            medians[name] = {"median_a": median_a, "median_b": median_b}
            unit = FEATURE_SPECS[name].unit
            label = name.replace("object_", "").replace("_", " ")
            values_text.append(f"{label} {_format(median_a, unit)} in A against {_format(median_b, unit)} in B")
        hypotheses.append(
            Hypothesis(
                description=f"{text} (median {'; '.join(values_text)})",
                proposer="measured",
                source={
                    # One key per pair and direction, so a rename or dismissal carries over a re-run.
                    "feature": f"{first}+{second}",
                    "label": f"mean z-score of {FEATURE_SPECS[first].label} and {FEATURE_SPECS[second].label}",
                    "features": signs,
                    "family": "combined",
                    "whole_image": False,
                    "unit": "mean signed z-score",
                    "sign": 1,
                    "phrase": text,
                    "medians": medians,
                },
            )
        )
    return hypotheses


def rank_measured(
    hypotheses: list[Hypothesis], table: np.ndarray, names_a: list[str], names_b: list[str], **options
) -> list[Hypothesis]:
    """Score each measured hypothesis by its own feature, signed so that its A direction is high.

    A combined hypothesis is scored on ``combined_score`` of its features, and its evidence
    value is that score.
    """
    for hypothesis in hypotheses:
        features = hypothesis.source.get("features")
        if features:
            scores = combined_score(table, features, len(names_a))
            score_hypothesis(hypothesis, scores, names_a, names_b, "measured", **options)
            for entries in hypothesis.evidence.values():
                for entry in entries:
                    entry["value"] = entry["score"]
            continue
        column = FEATURE_NAMES.index(hypothesis.source["feature"])
        sign = hypothesis.source["sign"]
        score_hypothesis(hypothesis, table[:, column] * sign, names_a, names_b, "measured", **options)
        # Scores are signed so that higher fits the description; evidence also shows the measured value.
        for entries in hypothesis.evidence.values():
            for entry in entries:
                entry["value"] = entry["score"] * sign
    return hypotheses
