"""One set-difference comparison: propose descriptions of A against B and rank them.

The measured proposer runs unless left out. Caption token importance needs the captioner,
comparative decoding the VLM, and the LLM proposer the captioner and the LLM. With the
``auto`` text ranker, text descriptions are ranked by CLIP when it is configured, else by the
sentence embedder on the captions, else by the VLM's yes/no answers. A role that cannot load
is recorded with its reason, and the comparison goes on without it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from analysis.backends import ModelUnavailable
from analysis.setdiff.captions import CAPTION_PROMPT, propose_from_captions
from analysis.setdiff.decoding import decoding_vocabulary, propose_by_decoding
from analysis.setdiff.hypotheses import Hypothesis, rank
from analysis.setdiff.ingest import Groups
from analysis.setdiff.llm_proposer import propose_with_llm
from analysis.setdiff.measured import FeatureTable, propose_measured, rank_measured
from analysis.setdiff.rankers import EmbeddingIndex, rank_by_vqa

logger = logging.getLogger(__name__)

PROPOSERS = ("measured", "captions", "decoding", "llm")
TEXT_RANKERS = ("auto", "clip", "sentence_embedder", "vqa")


@dataclass
class Settings:
    proposers: tuple[str, ...] = PROPOSERS
    segmentation: str = "watershed"
    resamples: int = 1000
    permutations: int = 2000
    caption_terms: int = 8
    # Image pairs on which the VLM scores each caption term.
    vlm_pairs: int = 4
    decoded_descriptions: int = 3
    decoding_length: int = 4
    # Images per group that condition comparative decoding.
    decoding_sample: int = 4
    # Candidate words for comparative decoding; None takes caption words and BASE_VOCABULARY.
    decoding_vocabulary: tuple[str, ...] | None = None
    user_descriptions: tuple[str, ...] = ()
    text_ranker: str = "auto"


@dataclass
class SetDiffResult:
    groups: Groups
    hypotheses: list[Hypothesis]
    models: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)
    captions: dict = field(default_factory=dict)
    index: EmbeddingIndex | None = None
    seconds: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "groups": {
                "a": {"name": self.groups.name_a, "images": len(self.groups.a)},
                "b": {"name": self.groups.name_b, "images": len(self.groups.b)},
            },
            "skipped": [{"image": name, "reason": reason} for name, reason in self.groups.skipped],
            "models": self.models,
            "unavailable": self.unavailable,
            "seconds": self.seconds,
            "hypotheses": [item.as_dict() for item in self.hypotheses],
        }


def _get(registry, role: str, unavailable: dict):
    if registry is None:
        unavailable[role] = "no model registry was given"
        return None
    try:
        return registry.get(role)
    except ModelUnavailable as error:
        unavailable[role] = error.reason
        return None


def run_setdiff(
    groups: Groups, registry=None, settings: Settings | None = None, feature_table: FeatureTable | None = None
) -> SetDiffResult:
    settings = settings or Settings()
    unknown = sorted(set(settings.proposers) - set(PROPOSERS))
    if unknown:
        raise ValueError(f"unknown proposer(s) {', '.join(unknown)}; choose from {', '.join(PROPOSERS)}")
    if settings.text_ranker not in TEXT_RANKERS:
        raise ValueError(f"unknown text ranker {settings.text_ranker!r}; choose from {', '.join(TEXT_RANKERS)}")
    names_a = [image.name for image in groups.a]
    names_b = [image.name for image in groups.b]
    options = {"resamples": settings.resamples, "permutations": settings.permutations}
    result = SetDiffResult(groups, [])
    hypotheses: list[Hypothesis] = []

    started = time.perf_counter()
    if "measured" in settings.proposers:
        table = (feature_table or FeatureTable(settings.segmentation, registry.cache if registry else None)).table(
            groups.images
        )
        hypotheses += rank_measured(propose_measured(table, len(groups.a)), table, names_a, names_b, **options)
        result.seconds["measured"] = round(time.perf_counter() - started, 3)

    wants_text = {"captions", "decoding", "llm"} & set(settings.proposers) or settings.user_descriptions
    if not wants_text:
        result.hypotheses = rank(hypotheses)
        return result

    images_a = [image.to_pil() for image in groups.a]
    images_b = [image.to_pil() for image in groups.b]
    captioner = (
        _get(registry, "captioner", result.unavailable) if {"captions", "llm"} & set(settings.proposers) else None
    )
    captions_a: list[str] = []
    captions_b: list[str] = []
    if captioner is not None:
        started = time.perf_counter()
        captions_a, captions_b = captioner.caption(images_a), captioner.caption(images_b)
        result.models["captioner"] = captioner.info.version
        result.captions = dict(zip(names_a + names_b, captions_a + captions_b, strict=True))
        result.seconds["captions"] = round(time.perf_counter() - started, 3)

    needs_vlm = {"captions", "decoding"} & set(settings.proposers) or settings.text_ranker in ("auto", "vqa")
    vlm = _get(registry, "vlm", result.unavailable) if needs_vlm else None
    if vlm is not None:
        result.models["vlm"] = vlm.info.version

    text_hypotheses: list[Hypothesis] = []
    if "captions" in settings.proposers and captions_a:
        found, _ = propose_from_captions(
            captions_a,
            captions_b,
            settings.caption_terms,
            vlm=vlm,
            images_a=images_a,
            images_b=images_b,
            vlm_pairs=settings.vlm_pairs,
        )
        text_hypotheses += found
    if "decoding" in settings.proposers and vlm is not None:
        started = time.perf_counter()
        try:
            vocabulary = list(settings.decoding_vocabulary or decoding_vocabulary(captions_a))
            text_hypotheses += propose_by_decoding(
                vlm,
                images_a,
                images_b,
                vocabulary,
                settings.decoded_descriptions,
                length=settings.decoding_length,
                sample=settings.decoding_sample,
            )
        except NotImplementedError as error:
            result.unavailable["comparative_decoding"] = str(error)
        result.seconds["decoding"] = round(time.perf_counter() - started, 3)
    if "llm" in settings.proposers and captions_a:
        llm = _get(registry, "llm", result.unavailable)
        if llm is not None:
            result.models["llm"] = llm.info.version
            text_hypotheses += propose_with_llm(llm, captions_a, captions_b)
    text_hypotheses += [Hypothesis(description=text, proposer="user") for text in settings.user_descriptions]

    # One description proposed twice is ranked once, keeping the first proposer.
    distinct: dict[str, Hypothesis] = {}
    for item in text_hypotheses:
        distinct.setdefault(item.description.lower(), item)
    text_hypotheses = list(distinct.values())

    started = time.perf_counter()
    if text_hypotheses:
        hypotheses += _rank_text(
            text_hypotheses, result, registry, settings, images_a, images_b, captions_a, captions_b, vlm
        )
    result.seconds["text_ranking"] = round(time.perf_counter() - started, 3)
    result.hypotheses = rank(hypotheses)
    return result


def _rank_text(text_hypotheses, result, registry, settings, images_a, images_b, captions_a, captions_b, vlm):
    """Rank text descriptions with the configured text ranker; record why when none can."""
    names_a = [image.name for image in result.groups.a]
    names_b = [image.name for image in result.groups.b]
    options = {"resamples": settings.resamples, "permutations": settings.permutations}
    choice = settings.text_ranker
    if choice in ("auto", "clip"):
        clip = _get(registry, "clip", result.unavailable)
        if clip is not None:
            keys = [image.sha256 for image in result.groups.images]
            result.index = EmbeddingIndex.from_clip(clip, images_a, images_b, names_a, names_b, keys)
            result.models["clip"] = result.index.model
            return result.index.rank(text_hypotheses, clip, **options)
    if choice in ("auto", "sentence_embedder") and captions_a:
        embedder = _get(registry, "sentence_embedder", result.unavailable)
        if embedder is not None:
            result.index = EmbeddingIndex.from_captions(embedder, captions_a, captions_b, names_a, names_b)
            result.models["sentence_embedder"] = result.index.model
            return result.index.rank(text_hypotheses, embedder, **options)
    if choice in ("auto", "vqa") and vlm is not None:
        result.models["vlm"] = vlm.info.version
        return rank_by_vqa(text_hypotheses, vlm, images_a, images_b, names_a, names_b, **options)
    result.unavailable["text_ranker"] = (
        f"the {choice} text ranker has no usable model (CLIP, captions with a sentence embedder, or a VLM), "
        "so text descriptions are not ranked"
    )
    return []


def clip_image_index(result: SetDiffResult, registry, previous: EmbeddingIndex | None = None) -> EmbeddingIndex | None:
    """Return CLIP embeddings of every image, keyed by sha256, for ranking typed descriptions later.

    The run's own index is returned when CLIP ranked its text descriptions. Otherwise the
    images are embedded now, reusing the rows of ``previous`` for unchanged images of the same
    model. Returns None, with the reason in ``result.unavailable``, when CLIP cannot load.
    """
    if result.index is not None and result.index.ranker == "clip":
        return result.index
    clip = _get(registry, "clip", result.unavailable)
    if clip is None:
        return None
    groups = result.groups
    started = time.perf_counter()
    index = EmbeddingIndex.from_clip(
        clip,
        [image.to_pil() for image in groups.a],
        [image.to_pil() for image in groups.b],
        [image.name for image in groups.a],
        [image.name for image in groups.b],
        keys=[image.sha256 for image in groups.images],
        previous=previous,
    )
    result.models["clip"] = index.model
    result.seconds["clip_embeddings"] = round(time.perf_counter() - started, 3)
    return index


__all__ = [
    "CAPTION_PROMPT",
    "PROPOSERS",
    "TEXT_RANKERS",
    "SetDiffResult",
    "Settings",
    "clip_image_index",
    "run_setdiff",
]
