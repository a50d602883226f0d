import numpy as np
import pytest

from analysis.cryoet.metrics import fbeta_score, match_points, score_picks


def by_name(score):
    return {class_score.name: class_score for class_score in score.classes}


def test_score_picks_hand_worked_example():
    # Ribosome radius 150 A gives a 75 A threshold; apo-ferritin radius 60 A gives 30 A.
    picks = {
        "ribosome": np.array([[50.0, 0, 0], [1000, 80, 0], [0, 0, 60]]),
        "apo-ferritin": np.array([[0.0, 0, 30]]),
    }
    references = {
        "ribosome": np.array([[0.0, 0, 0], [1000, 0, 0]]),
        "apo-ferritin": np.array([[0.0, 0, 0]]),
        "beta-galactosidase": np.array([[0.0, 0, 0]]),
    }
    score = score_picks(picks, references)
    classes = by_name(score)

    # (50, 0, 0) matches the first reference at 50 A. (0, 0, 60) is 60 A from it but it is taken,
    # and (1000, 80, 0) is 80 A from the second reference, beyond 75 A.
    ribosome = classes["ribosome"]
    assert (ribosome.true_positives, ribosome.false_positives, ribosome.false_negatives) == (1, 2, 1)
    assert ribosome.precision == pytest.approx(1 / 3)
    assert ribosome.recall == pytest.approx(1 / 2)
    # F4 = 17 * (1/3) * (1/2) / (16/3 + 1/2) = 17/35.
    assert ribosome.fbeta == pytest.approx(17 / 35)

    # A pick exactly at the threshold counts.
    ferritin = classes["apo-ferritin"]
    assert (ferritin.true_positives, ferritin.false_positives, ferritin.false_negatives) == (1, 0, 0)
    assert ferritin.fbeta == pytest.approx(1.0)

    galactosidase = classes["beta-galactosidase"]
    assert (galactosidase.true_positives, galactosidase.false_negatives) == (0, 1)
    assert galactosidase.fbeta == 0.0

    # Weights 1, 0, 2, 1, 2, 1: (1 * 1 + 1 * 17/35) / 7 = 52/245.
    assert score.weighted_fbeta == pytest.approx(52 / 245)
    assert score.to_dict()["weighted_fbeta"] == pytest.approx(52 / 245)


def test_score_picks_wrong_class_is_false_positive():
    score = score_picks({"ribosome": np.array([[0.0, 0, 0]])}, {"apo-ferritin": np.array([[0.0, 0, 0]])})
    classes = by_name(score)
    assert classes["ribosome"].false_positives == 1
    assert classes["apo-ferritin"].false_negatives == 1
    assert score.weighted_fbeta == 0.0


def test_match_points_greedy_by_distance():
    picks = np.array([[0.0, 0, 0], [-130, 0, 0]])
    references = np.array([[40.0, 0, 0], [-60, 0, 0]])
    # Shortest pair (0 to 40) first, then -130 to -60 at 70.
    assert match_points(picks, references, 75.0) == 2
    assert match_points(picks, references, 65.0) == 1
    assert match_points(np.empty((0, 3)), references, 75.0) == 0


def test_fbeta_score_values():
    assert fbeta_score(0.0, 0.0) == 0.0
    assert fbeta_score(1.0, 1.0) == pytest.approx(1.0)
    assert fbeta_score(0.5, 1.0, beta=1.0) == pytest.approx(2 / 3)


def test_score_picks_unknown_class_rejected():
    with pytest.raises(ValueError, match="ribosomes"):
        score_picks({"ribosomes": np.zeros((1, 3))}, {})
