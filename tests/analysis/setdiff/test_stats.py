"""Ranking statistics against hand-worked values and brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from analysis.setdiff import stats


def brute_force_auroc(a, b) -> float:
    wins = 0.0
    for x in a:
        for y in b:
            if x > y:
                wins += 1.0
            elif x == y:
                wins += 0.5
    return wins / (len(a) * len(b))


def test_auroc_hand_worked():
    # Pairs (A, B): 3>1, 3>2, 3=3 (1/2), 5>1, 5>2, 5>3 -> 5.5 of 6.
    assert stats.auroc([3, 5], [1, 2, 3]) == pytest.approx(5.5 / 6)


def test_auroc_matches_pair_count():
    generator = np.random.default_rng(3)
    a = generator.integers(0, 6, 9).astype(float)
    b = generator.integers(0, 6, 7).astype(float)
    assert stats.auroc(a, b) == pytest.approx(brute_force_auroc(a, b))


def test_auroc_extremes():
    assert stats.auroc([4, 5, 6], [1, 2, 3]) == 1.0
    assert stats.auroc([1, 2, 3], [4, 5, 6]) == 0.0
    assert stats.auroc([1, 1], [1, 1]) == 0.5


def test_welch_hand_worked():
    # A = 1, 2, 3, 4: mean 2.5, variance 5/3. B = 2, 4, 6, 8, 10: mean 6, variance 10.
    # t = -3.5 / sqrt(5/12 + 2) = -2.25189; Welch-Satterthwaite df = 5.1485.
    t, p = stats.welch_test([1, 2, 3, 4], [2, 4, 6, 8, 10])
    assert t == pytest.approx(-3.5 / math.sqrt(5 / 12 + 2))
    standard_error_a, standard_error_b = 5 / 12, 2.0
    degrees = (standard_error_a + standard_error_b) ** 2 / (standard_error_a**2 / 3 + standard_error_b**2 / 4)
    from scipy.stats import t as student_t

    assert p == pytest.approx(2 * student_t.sf(abs(t), degrees))
    assert p == pytest.approx(0.0691, abs=5e-4)  # t = -2.252 on 5.15 degrees of freedom


def test_welch_constant_groups():
    assert stats.welch_test([2, 2, 2], [2, 2]) == (0.0, 1.0)
    t, p = stats.welch_test([3, 3, 3], [2, 2])
    assert t == math.inf
    assert p == 0.0


def test_hedges_g_hand_worked():
    # Pooled SD = sqrt((3 * 5/3 + 4 * 10) / 7) = sqrt(45 / 7); correction 1 - 3 / 27.
    expected = (2.5 - 6) / math.sqrt(45 / 7) * (1 - 3 / 27)
    assert stats.hedges_g([1, 2, 3, 4], [2, 4, 6, 8, 10]) == pytest.approx(expected)


def test_benjamini_hochberg_hand_worked():
    # Sorted p: 0.01, 0.02, 0.03, 0.5 with m = 4 -> 0.04, 0.04, 0.04, 0.5.
    q = stats.benjamini_hochberg([0.5, 0.01, 0.03, 0.02])
    assert q == pytest.approx([0.5, 0.04, 0.04, 0.04])


def test_benjamini_hochberg_caps_at_one():
    assert stats.benjamini_hochberg([0.9, 0.95]).tolist() == [0.95, 0.95]
    assert stats.benjamini_hochberg([1.0, 1.0, 0.8]).max() <= 1.0
    assert stats.benjamini_hochberg([]).size == 0


def exact_permutation_p(a, b) -> float:
    pooled = np.concatenate([a, b])
    observed = abs(brute_force_auroc(a, b) - 0.5)
    extreme = total = 0
    for chosen in itertools.combinations(range(pooled.size), len(a)):
        rest = [index for index in range(pooled.size) if index not in chosen]
        total += 1
        extreme += abs(brute_force_auroc(pooled[list(chosen)], pooled[rest]) - 0.5) >= observed - 1e-12
    return extreme / total


def test_permutation_p_near_exact():
    a = np.array([2.0, 3.5, 4.0, 5.0])
    b = np.array([1.0, 2.5, 3.0, 3.2, 0.5])
    exact = exact_permutation_p(a, b)  # enumerates all 126 labellings
    estimate = stats.permutation_p_value(a, b, permutations=20000, seed=1)
    assert estimate == pytest.approx(exact, abs=0.01)


def test_permutation_p_floor():
    # Perfect separation of 10 against 10: only 2 of 184,756 labellings are as extreme.
    p = stats.permutation_p_value(np.arange(10) + 10.0, np.arange(10.0), permutations=999)
    assert p == pytest.approx(1 / 1000, abs=2 / 1000)


def test_bootstrap_interval_matches_loop():
    generator = np.random.default_rng(5)
    a = np.round(generator.normal(1.0, 1.0, 15), 1)  # rounding makes ties within and across groups
    b = np.round(generator.normal(0.0, 1.0, 12), 1)
    low, high = stats.bootstrap_auroc_interval(a, b, resamples=300, seed=7)
    # The same resamples, drawn in the same order, computed one at a time by pair counting.
    rerun = np.random.default_rng(7)
    index_a = rerun.integers(0, a.size, (300, a.size))
    index_b = rerun.integers(0, b.size, (300, b.size))
    values = [brute_force_auroc(a[index_a[i]], b[index_b[i]]) for i in range(300)]
    assert low == pytest.approx(np.percentile(values, 2.5))
    assert high == pytest.approx(np.percentile(values, 97.5))
    assert low < stats.auroc(a, b) < high


def test_separation_and_q_values():
    a = [5.0, 6.0, 7.0, 8.0]
    b = [1.0, 2.0, 3.0, 4.0]
    results = [stats.separation(a, b, resamples=200, permutations=500), stats.separation(a, a[::-1], 200, 500)]
    stats.fill_q_values(results)
    assert results[0].auroc == 1.0
    assert results[0].mean_a == 6.5
    assert results[1].auroc == 0.5
    assert results[1].permutation_p == 1.0
    assert results[0].q == pytest.approx(min(1.0, results[0].permutation_p * 2))
    assert results[0].as_dict()["auroc"] == 1.0


def test_separation_needs_two_per_group():
    with pytest.raises(ValueError, match="at least 2"):
        stats.separation([1.0], [2.0, 3.0])


def scored(description: str, scores_a, scores_b):
    from analysis.setdiff.hypotheses import Hypothesis

    item = Hypothesis(description, "measured")
    item.result = stats.separation(scores_a, scores_b, resamples=100, permutations=200)
    return item


def test_rank_puts_rounding_difference_last():
    from analysis.setdiff.hypotheses import rank

    # The rounding difference separates perfectly, with an infinite effect size.
    rounding = scored("smoother objects", [7.6e-8] * 3, [7.56e-8] * 3)
    weaker = scored("larger objects", [3.0, 5.0, 4.0], [1.0, 3.5, 2.0])
    constant = scored("more objects", [16.0] * 3, [6.0] * 3)
    assert rounding.result.auroc == 1.0
    assert math.isinf(rounding.result.effect_size)
    assert weaker.result.auroc < 1.0
    ordered = [item.description for item in rank([rounding, weaker, constant])]
    assert ordered == ["more objects", "larger objects", "smoother objects"]


def test_rank_reads_missing_effect_as_infinite():
    from analysis.setdiff.hypotheses import rank

    # A stored infinite effect size is read back as NaN, as when the web app ranks its table again.
    varying = scored("more edges", [20.0, 21.0, 22.0], [10.0, 11.0, 12.0])
    constant = scored("more objects", [16.0] * 3, [6.0] * 3)
    rounding = scored("smoother objects", [7.6e-8] * 3, [7.56e-8] * 3)
    for item in (constant, rounding):
        item.result.effect_size = float("nan")
    ordered = [item.description for item in rank([rounding, varying, constant])]
    assert ordered == ["more objects", "more edges", "smoother objects"]


def test_rank_sorts_by_exact_auroc():
    from analysis.setdiff.hypotheses import rank

    # AUROCs 0.984 and 0.983 once rounded alike, so the larger effect size went first.
    higher = scored("brighter images", [0.0, 1.0], [0.0, 1.0])
    lower = scored("more varied fine texture", [0.0, 1.0], [0.0, 1.0])
    higher.result.auroc, higher.result.effect_size = 0.984, 2.0
    lower.result.auroc, lower.result.effect_size = 0.983, 3.0
    ordered = [item.description for item in rank([lower, higher])]
    assert ordered == ["brighter images", "more varied fine texture"]
