"""Caption token importance: words and phrases of the captions that are distinctive of group A.

Each term is scored by the log-odds ratio with an informative Dirichlet prior (Monroe,
Colaresi and Quinn, "Fightin' Words", Political Analysis 16(4), 2008), with the prior taken
from the pooled captions of both groups, and by its z-score. When a VLM is configured, each
term is also scored by how much more likely the model finds it after an A image than after a
B image (the mean per-token log-probability difference).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from analysis.setdiff.hypotheses import Hypothesis

STOPWORDS = frozenset(
    "a an the of in on at to with and or is are was were be been this that these those it its there "
    "image images picture photo photograph shows showing shown view close up some".split()
)
WORD_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
CAPTION_PROMPT = "Describe the image."


def caption_terms(caption: str) -> set[str]:
    """Return the distinct unigrams and bigrams of a caption, leaving out stopwords.

    A bigram is two adjacent words of which neither is a stopword.
    """
    words = WORD_PATTERN.findall(caption.lower())
    terms = {word for word in words if word not in STOPWORDS}
    for first, second in zip(words, words[1:], strict=False):
        if first not in STOPWORDS and second not in STOPWORDS:
            terms.add(f"{first} {second}")
    return terms


@dataclass
class TermScore:
    term: str
    count_a: int  # captions of A that contain the term
    count_b: int
    delta: float  # log-odds ratio of A against B
    z: float
    vlm_logprob_difference: float | None = None


def log_odds_dirichlet(counts_a: Counter, counts_b: Counter, prior_strength: float = 10.0) -> list[TermScore]:
    """Score every term by the log-odds ratio with an informative Dirichlet prior.

    With y the term's count in a group, n the group's total count, a_w = prior_strength *
    (pooled count of the term) / (pooled total) and a_0 = prior_strength:
    delta = log((y_A + a_w) / (n_A + a_0 - y_A - a_w)) - log((y_B + a_w) / (n_B + a_0 - y_B - a_w)),
    var(delta) ~ 1 / (y_A + a_w) + 1 / (y_B + a_w), and z = delta / sqrt(var). Sorted by z, highest first.
    """
    total_a, total_b = sum(counts_a.values()), sum(counts_b.values())
    pooled_total = total_a + total_b
    if pooled_total == 0:
        return []
    scores = []
    for term in set(counts_a) | set(counts_b):
        y_a, y_b = counts_a.get(term, 0), counts_b.get(term, 0)
        alpha = prior_strength * (y_a + y_b) / pooled_total
        delta = np.log((y_a + alpha) / (total_a + prior_strength - y_a - alpha)) - np.log(
            (y_b + alpha) / (total_b + prior_strength - y_b - alpha)
        )
        variance = 1.0 / (y_a + alpha) + 1.0 / (y_b + alpha)
        scores.append(TermScore(term, y_a, y_b, float(delta), float(delta / np.sqrt(variance))))
    return sorted(scores, key=lambda item: (-item.z, item.term))


def term_counts(captions: list[str]) -> Counter:
    """Count, for each term, the captions that contain it (document frequency)."""
    counts: Counter = Counter()
    for caption in captions:
        counts.update(caption_terms(caption))
    return counts


def vlm_logprob_difference(vlm, images_a: list, images_b: list, term: str, prompt: str = CAPTION_PROMPT) -> float:
    """Return the mean over image pairs of (mean log-probability of the term's tokens after the
    A image) minus (the same after the B image)."""
    differences = []
    for image_a, image_b in zip(images_a, images_b, strict=False):
        given_a = vlm.continuation_logprobs([image_a], prompt, term)
        given_b = vlm.continuation_logprobs([image_b], prompt, term)
        if given_a and given_b:
            differences.append(float(np.mean(given_a) - np.mean(given_b)))
    return float(np.mean(differences)) if differences else float("nan")


def propose_from_captions(
    captions_a: list[str],
    captions_b: list[str],
    top: int = 8,
    min_z: float = 1.0,
    vlm=None,
    images_a: list | None = None,
    images_b: list | None = None,
    vlm_pairs: int = 4,
) -> tuple[list[Hypothesis], list[TermScore]]:
    """Turn the most distinctive caption terms of A into hypotheses; return them and every term score.

    With a VLM and images, the candidates with the highest z are also scored by the VLM's
    log-probability difference, and terms the VLM finds more likely after A images but that
    missed the z cut are added.
    """
    scores = log_odds_dirichlet(term_counts(captions_a), term_counts(captions_b))
    chosen = [item for item in scores if item.z >= min_z][:top]
    if vlm is not None and images_a and images_b:
        candidates = scores[: top * 3]
        for item in candidates:
            item.vlm_logprob_difference = vlm_logprob_difference(
                vlm, images_a[:vlm_pairs], images_b[:vlm_pairs], item.term
            )
        extra = sorted(
            (item for item in candidates if item not in chosen and (item.vlm_logprob_difference or 0) > 0),
            key=lambda item: -item.vlm_logprob_difference,
        )
        chosen += extra[: max(0, top - len(chosen))]
    hypotheses = [
        Hypothesis(
            description=item.term,
            proposer="caption_tokens",
            source={
                "captions_with_term_a": item.count_a,
                "captions_with_term_b": item.count_b,
                "log_odds": item.delta,
                "z": item.z,
                "vlm_logprob_difference": item.vlm_logprob_difference,
            },
        )
        for item in chosen
    ]
    return hypotheses, scores
