"""Statistics that rank a description: AUROC with a bootstrap interval, Welch's t-test, a
permutation p-value and Benjamini-Hochberg q-values.

Every function takes one score per image of group A and of group B; a higher score means the
description fits the image better.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

# Two values closer than this, relative to the larger of 1 and their magnitude, are equal up to
# floating-point rounding. One pixel of a 30000 x 30000 image is 1.1e-9 of it, so a real
# difference of a pixel fraction stays above it.
ROUNDING_TOLERANCE = 1e-9


def within_rounding(first: float, second: float) -> bool:
    """Return whether two values differ by no more than rounding (see ROUNDING_TOLERANCE)."""
    scale = max(1.0, abs(first), abs(second))
    return bool(abs(first - second) <= ROUNDING_TOLERANCE * scale)


@dataclass
class Separation:
    """Statistics of one score that measure its separation of group A from group B."""

    auroc: float  # P(score of a random A image > score of a random B image), ties count 1/2
    auroc_low: float  # bootstrap 95% percentile interval
    auroc_high: float
    welch_t: float
    welch_p: float
    permutation_p: float  # two-sided, on |AUROC - 0.5|
    effect_size: float  # Hedges' g, (mean A - mean B) / pooled SD with small-sample correction
    mean_a: float
    mean_b: float
    q: float = float("nan")  # Benjamini-Hochberg, filled in across all hypotheses of a run

    def as_dict(self) -> dict:
        return {
            key: (None if isinstance(value, float) and not np.isfinite(value) else value)
            for key, value in vars(self).items()
        }


def auroc(scores_a, scores_b) -> float:
    """Return the Mann-Whitney AUROC of A against B from mid-ranks of the pooled scores."""
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    ranks = scipy_stats.rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


def _resample_counts(generator: np.random.Generator, size: int, resamples: int) -> np.ndarray:
    """Draw ``resamples`` rows of ``size`` indices with replacement; return each index's count per row."""
    indices = generator.integers(0, size, (resamples, size))
    flat = (indices + np.arange(resamples)[:, None] * size).ravel()
    return np.bincount(flat, minlength=resamples * size).reshape(resamples, size)


def bootstrap_auroc_interval(
    scores_a, scores_b, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Return the percentile interval of AUROC over resamples drawn within each group.

    Each resample draws indices with replacement and keeps how often each score was drawn.
    For each A score, the weighted count of
    B scores below it (ties counting half) comes from a cumulative sum over the sorted B
    scores, so a resample costs O(n_A + n_B) instead of a sort.
    """
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    generator = np.random.default_rng(seed)
    weights_a = _resample_counts(generator, a.size, resamples)
    weights_b = _resample_counts(generator, b.size, resamples)
    order = np.argsort(b, kind="stable")
    cumulative = np.zeros((resamples, b.size + 1))
    np.cumsum(weights_b[:, order], axis=1, out=cumulative[:, 1:])
    sorted_b = b[order]
    below = cumulative[:, np.searchsorted(sorted_b, a, side="left")]
    below_or_equal = cumulative[:, np.searchsorted(sorted_b, a, side="right")]
    values = (weights_a * (below + below_or_equal) / 2.0).sum(axis=1) / (a.size * b.size)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def permutation_p_value(scores_a, scores_b, permutations: int = 2000, seed: int = 0) -> float:
    """Return the two-sided permutation p-value of |AUROC - 0.5|, counting the observed labelling.

    Relabelling the pooled images leaves their ranks unchanged, so each permutation only sums
    the ranks that fall in group A.
    """
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    ranks = scipy_stats.rankdata(np.concatenate([a, b]))
    pairs = a.size * b.size
    offset = a.size * (a.size + 1) / 2.0
    observed = abs((ranks[: a.size].sum() - offset) / pairs - 0.5)
    generator = np.random.default_rng(seed)
    order = generator.permuted(np.tile(np.arange(ranks.size), (permutations, 1)), axis=1)
    permuted = np.abs((ranks[order[:, : a.size]].sum(axis=1) - offset) / pairs - 0.5)
    # A small tolerance keeps floating-point noise from splitting exact ties.
    extreme = np.count_nonzero(permuted >= observed - 1e-12)
    return float((extreme + 1) / (permutations + 1))


def welch_test(scores_a, scores_b) -> tuple[float, float]:
    """Return Welch's t statistic and two-sided p-value; (0, 1) when both groups are constant."""
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    variance = a.var(ddof=1) / a.size + b.var(ddof=1) / b.size
    if variance == 0:
        return (0.0, 1.0) if a.mean() == b.mean() else (float(np.sign(a.mean() - b.mean()) * np.inf), 0.0)
    with warnings.catch_warnings():
        # Nearly constant groups make scipy warn about precision; the statistic is still usable.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def hedges_g(scores_a, scores_b) -> float:
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    degrees = a.size + b.size - 2
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / degrees)
    difference = a.mean() - b.mean()
    if pooled == 0:
        return 0.0 if difference == 0 else float(np.sign(difference) * np.inf)
    correction = 1.0 - 3.0 / (4.0 * degrees - 1.0)
    return float(difference / pooled * correction)


def benjamini_hochberg(p_values) -> np.ndarray:
    """Return Benjamini-Hochberg q-values: min over k >= i of p_(k) * m / k, capped at 1."""
    p = np.asarray(p_values, np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty_like(p)
    q[order] = np.minimum(ranked, 1.0)
    return q


def separation(scores_a, scores_b, resamples: int = 1000, permutations: int = 2000, seed: int = 0) -> Separation:
    """Compute every statistic of one score; q stays NaN until ``fill_q_values``."""
    a = np.asarray(scores_a, np.float64)
    b = np.asarray(scores_b, np.float64)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"each group needs at least 2 scores; got {a.size} and {b.size}")
    low, high = bootstrap_auroc_interval(a, b, resamples, seed=seed)
    t, p = welch_test(a, b)
    return Separation(
        auroc=auroc(a, b),
        auroc_low=low,
        auroc_high=high,
        welch_t=t,
        welch_p=p,
        permutation_p=permutation_p_value(a, b, permutations, seed=seed),
        effect_size=hedges_g(a, b),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
    )


def fill_q_values(separations: list[Separation]) -> None:
    """Set each ``q`` from the permutation p-values of all hypotheses ranked together."""
    q = benjamini_hochberg([item.permutation_p for item in separations])
    for item, value in zip(separations, q, strict=True):
        item.q = float(value)
