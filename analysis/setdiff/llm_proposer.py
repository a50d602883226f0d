"""LLM proposer: a language model reads sampled captions of both groups and lists differences."""

from __future__ import annotations

import re

import numpy as np

from analysis.setdiff.hypotheses import Hypothesis

INSTRUCTION = (
    "Below are captions of images in group A and in group B. List up to {count} short phrases, one per "
    "line, each describing something that is more true of group A than of group B, such as "
    '"larger cells" or "more stained nuclei". Write only the phrases.'
)
_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")


def parse_phrases(reply: str, limit: int) -> list[str]:
    """Return distinct, non-empty lines of ``reply`` with list markers and quotes removed."""
    phrases: list[str] = []
    for line in reply.splitlines():
        phrase = _LIST_MARKER.sub("", line).strip().strip("\"'.").strip()
        if phrase and len(phrase) <= 120 and phrase.lower() not in (item.lower() for item in phrases):
            phrases.append(phrase)
    return phrases[:limit]


def propose_with_llm(
    llm, captions_a: list[str], captions_b: list[str], count: int = 5, sample: int = 20, seed: int = 0
) -> list[Hypothesis]:
    generator = np.random.default_rng(seed)
    sample_a = [
        captions_a[i] for i in sorted(generator.choice(len(captions_a), min(sample, len(captions_a)), replace=False))
    ]
    sample_b = [
        captions_b[i] for i in sorted(generator.choice(len(captions_b), min(sample, len(captions_b)), replace=False))
    ]
    text = (
        INSTRUCTION.format(count=count)
        + "\n\nGroup A:\n"
        + "\n".join(f"- {caption}" for caption in sample_a)
        + "\n\nGroup B:\n"
        + "\n".join(f"- {caption}" for caption in sample_b)
    )
    reply = llm.chat([{"role": "user", "content": text}], max_new_tokens=128).text
    return [
        Hypothesis(
            description=phrase, proposer="llm", source={"model": llm.info.version, "captions_per_group": len(sample_a)}
        )
        for phrase in parse_phrases(reply, count)
    ]
