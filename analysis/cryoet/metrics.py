"""Scoring of particle picks by the rule of the CZ Imaging Institute cryo-ET benchmark.

A pick is a true positive when it has the same class as a reference particle and lies within
``distance_multiplier`` (0.5 in the benchmark) times that class's radius of it. Each reference
point matches at most one pick. Matching here is greedy by distance: all pick-reference pairs
within the threshold are sorted by distance and taken shortest first, skipping pairs whose pick
or reference is already matched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree

from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES, FBETA_BETA

# The benchmark's match threshold as a fraction of the particle radius.
DISTANCE_MULTIPLIER = 0.5


@dataclass
class ClassScore:
    name: str
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    fbeta: float
    weight: float


@dataclass
class PickScore:
    classes: list[ClassScore]
    # Mean of the per-class F-beta weighted by each class's benchmark weight.
    weighted_fbeta: float
    beta: float

    def to_dict(self) -> dict:
        return {
            "classes": [asdict(score) for score in self.classes],
            "weighted_fbeta": self.weighted_fbeta,
            "beta": self.beta,
        }


def fbeta_score(precision: float, recall: float, beta: float = FBETA_BETA) -> float:
    """Return the F-beta score, 0 when precision and recall are both 0."""
    denominator = beta**2 * precision + recall
    if denominator == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / denominator


def match_points(picks: np.ndarray, references: np.ndarray, threshold: float) -> int:
    """Return the number of one-to-one pick-reference matches within ``threshold``, greedy by distance."""
    picks = np.asarray(picks, dtype=float).reshape(-1, 3)
    references = np.asarray(references, dtype=float).reshape(-1, 3)
    if len(picks) == 0 or len(references) == 0:
        return 0
    pairs = cKDTree(picks).sparse_distance_matrix(cKDTree(references), threshold, output_type="ndarray")
    # sparse_distance_matrix keeps pairs with distance <= threshold.
    order = np.argsort(pairs["v"], kind="stable")
    pick_used = np.zeros(len(picks), dtype=bool)
    reference_used = np.zeros(len(references), dtype=bool)
    matches = 0
    for pick_index, reference_index in zip(pairs["i"][order], pairs["j"][order], strict=True):
        if pick_used[pick_index] or reference_used[reference_index]:
            continue
        pick_used[pick_index] = True
        reference_used[reference_index] = True
        matches += 1
    return matches


def score_picks(
    picks: dict[str, np.ndarray],
    references: dict[str, np.ndarray],
    beta: float = FBETA_BETA,
    distance_multiplier: float = DISTANCE_MULTIPLIER,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> PickScore:
    """Score picks against references, both mapping a class name to (n, 3) x, y, z positions in angstroms.

    A class missing from either mapping counts as having no points. Precision and recall are 0
    when their denominator is 0.
    """
    unknown = sorted((set(picks) | set(references)) - set(CLASS_BY_NAME))
    if unknown:
        raise ValueError(f"Unknown particle class {unknown[0]!r}; expected one of {', '.join(CLASS_NAMES)}.")
    scores = []
    for name in class_names:
        particle_class = CLASS_BY_NAME[name]
        class_picks = np.asarray(picks.get(name, np.empty((0, 3))), dtype=float).reshape(-1, 3)
        class_references = np.asarray(references.get(name, np.empty((0, 3))), dtype=float).reshape(-1, 3)
        threshold = particle_class.radius_angstrom * distance_multiplier
        true_positives = match_points(class_picks, class_references, threshold)
        false_positives = len(class_picks) - true_positives
        false_negatives = len(class_references) - true_positives
        precision = true_positives / len(class_picks) if len(class_picks) else 0.0
        recall = true_positives / len(class_references) if len(class_references) else 0.0
        scores.append(
            ClassScore(
                name=name,
                true_positives=true_positives,
                false_positives=false_positives,
                false_negatives=false_negatives,
                precision=precision,
                recall=recall,
                fbeta=fbeta_score(precision, recall, beta),
                weight=particle_class.weight,
            )
        )
    total_weight = sum(score.weight for score in scores)
    weighted = sum(score.weight * score.fbeta for score in scores) / total_weight if total_weight else 0.0
    return PickScore(classes=scores, weighted_fbeta=weighted, beta=beta)
