"""Comparative decoding: write a description word by word that the VLM finds likely given A
images and unlikely given B images.

At each step every candidate word w is scored by log p(w | prefix, A) - weight * log p(w | prefix, B),
where each log-probability is the mean over a sample of images shown one at a time. Only words
that are plausible given A compete: those with log p(w | prefix, A) >= log(plausibility) + the
highest log p(. | prefix, A) among the candidates (the adaptive plausibility constraint of
contrastive decoding, Li et al., ACL 2023). Words are scored through
``continuation_logprobs``, so any VLM backend that scores a given continuation works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.setdiff.captions import CAPTION_PROMPT, STOPWORDS, WORD_PATTERN
from analysis.setdiff.hypotheses import Hypothesis

# Descriptive words offered to the decoder besides the words of the captions.
BASE_VOCABULARY = (
    "more fewer larger smaller brighter dimmer darker round rounder elongated irregular clustered "
    "scattered dense sparse textured smooth dividing stained bright dark many few cells nuclei "
    "objects membrane tissue fluorescent green red blue large small"
).split()


@dataclass
class DecodingStep:
    word: str
    logprob_a: float
    logprob_b: float
    score: float
    candidates: int  # words that passed the plausibility constraint


class ComparativeDecoder:
    def __init__(self, vlm, images_a: list, images_b: list, prompt: str = CAPTION_PROMPT) -> None:
        self.vlm = vlm
        self.images_a = images_a
        self.images_b = images_b
        self.prompt = prompt
        self._sums: dict[tuple[str, str], float] = {}

    def _text_logprob(self, group: str, text: str) -> float:
        """Mean over the group's images of the summed log-probability of ``text``."""
        if not text:
            return 0.0
        key = (group, text)
        if key not in self._sums:
            images = self.images_a if group == "a" else self.images_b
            self._sums[key] = float(
                np.mean([sum(self.vlm.continuation_logprobs([image], self.prompt, text)) for image in images])
            )
        return self._sums[key]

    def word_logprob(self, group: str, prefix: str, word: str) -> float:
        """log p(word | prefix, group) as the difference of the two continuations' log-probabilities."""
        return self._text_logprob(group, f"{prefix} {word}".strip()) - self._text_logprob(group, prefix)

    def step(self, prefix: str, vocabulary: list[str], weight: float, plausibility: float) -> DecodingStep | None:
        used = set(prefix.split())
        words = [word for word in vocabulary if word not in used]
        if not words:
            return None
        given_a = np.array([self.word_logprob("a", prefix, word) for word in words])
        keep = given_a >= np.log(plausibility) + given_a.max()
        best: DecodingStep | None = None
        for word, logprob_a in zip(np.array(words)[keep], given_a[keep], strict=True):
            logprob_b = self.word_logprob("b", prefix, str(word))
            score = float(logprob_a - weight * logprob_b)
            if best is None or score > best.score:
                best = DecodingStep(str(word), float(logprob_a), logprob_b, score, int(keep.sum()))
        return best

    def decode(
        self,
        vocabulary: list[str],
        length: int = 4,
        weight: float = 0.5,
        plausibility: float = 0.1,
        first_word: str = "",
    ) -> tuple[str, list[DecodingStep]]:
        prefix, steps = first_word, []
        for _ in range(length - (1 if first_word else 0)):
            chosen = self.step(prefix, vocabulary, weight, plausibility)
            if chosen is None:
                break
            steps.append(chosen)
            prefix = f"{prefix} {chosen.word}".strip()
        return prefix, steps


def decoding_vocabulary(captions: list[str], limit: int = 40) -> list[str]:
    """Return caption words (most frequent first, stopwords left out) followed by BASE_VOCABULARY."""
    counts: dict[str, int] = {}
    for caption in captions:
        for word in WORD_PATTERN.findall(caption.lower()):
            if word not in STOPWORDS:
                counts[word] = counts.get(word, 0) + 1
    words = sorted(counts, key=lambda word: (-counts[word], word))[:limit]
    return list(dict.fromkeys([*words, *BASE_VOCABULARY]))


def propose_by_decoding(
    vlm,
    images_a: list,
    images_b: list,
    vocabulary: list[str],
    descriptions: int = 3,
    length: int = 4,
    weight: float = 0.5,
    plausibility: float = 0.1,
    sample: int = 4,
    seed: int = 0,
) -> list[Hypothesis]:
    """Decode ``descriptions`` texts, each starting from a different one of the best first words."""
    generator = np.random.default_rng(seed)
    sample_a = [images_a[i] for i in generator.choice(len(images_a), min(sample, len(images_a)), replace=False)]
    sample_b = [images_b[i] for i in generator.choice(len(images_b), min(sample, len(images_b)), replace=False)]
    decoder = ComparativeDecoder(vlm, sample_a, sample_b)
    hypotheses: list[Hypothesis] = []
    first_words: list[str] = []
    for _ in range(descriptions):
        first = decoder.step("", [word for word in vocabulary if word not in first_words], weight, plausibility)
        if first is None:
            break
        first_words.append(first.word)
        text, steps = decoder.decode(vocabulary, length, weight, plausibility, first_word=first.word)
        steps = [first, *steps]
        hypotheses.append(
            Hypothesis(
                description=text,
                proposer="comparative_decoding",
                source={
                    "weight": weight,
                    "plausibility": plausibility,
                    "images_per_group": len(sample_a),
                    "steps": [vars(step) for step in steps],
                    "score": float(sum(step.score for step in steps)),
                },
            )
        )
    return hypotheses
