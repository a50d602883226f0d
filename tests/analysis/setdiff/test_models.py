"""Proposers and rankers that use models, on tiny random models loaded through the registry."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.backends import ModelRegistry
from analysis.setdiff.captions import caption_terms, log_odds_dirichlet, propose_from_captions, vlm_logprob_difference
from analysis.setdiff.decoding import ComparativeDecoder, propose_by_decoding
from analysis.setdiff.hypotheses import Hypothesis
from analysis.setdiff.ingest import Groups, ImageRecord
from analysis.setdiff.llm_proposer import parse_phrases
from analysis.setdiff.pipeline import Settings, run_setdiff
from analysis.setdiff.rankers import VQA_PROMPT, EmbeddingIndex, rank_by_vqa
from tests.analysis.backends.network_guard import block_network
from tests.analysis.backends.tiny_models import save_scripted_llama, save_tiny_bert, save_tiny_blip, save_tiny_llava

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
FAST = {"resamples": 100, "permutations": 200}


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    attempts = block_network(monkeypatch)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    import open_clip

    root = tmp_path_factory.mktemp("setdiff-models")
    config_path = root / "tiny-clip-setdiff.json"
    config_path.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config_path)
    torch.manual_seed(0)
    clip_weights = root / "tiny-clip.pt"
    torch.save(open_clip.create_model("tiny-clip-setdiff", pretrained=None).state_dict(), clip_weights)
    return {
        "captioner": f"local:{save_tiny_blip(root / 'blip')}",
        "vlm": f"local:{save_tiny_llava(root / 'llava')}",
        "clip": f"local:{clip_weights}?arch={config_path}",
        "sentence_embedder": f"local:{save_tiny_bert(root / 'bert')}",
        "llm": f"local:{save_scripted_llama(root / 'llama', ['larger', 'nuclei'])}",
    }


@pytest.fixture(scope="module")
def registry(sources, tmp_path_factory):
    return ModelRegistry(sources, device="cpu", cache_dir=tmp_path_factory.mktemp("setdiff-cache"))


def coloured_images(colour, count: int, seed: int) -> list[Image.Image]:
    generator = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = np.clip(np.array(colour) + generator.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(pixels))
    return images


def groups_from(images_a, images_b) -> Groups:
    def records(images, group):
        return [
            ImageRecord(f"{group}{i}", group, np.asarray(image), f"{group}-{i}-{np.asarray(image).sum()}")
            for i, image in enumerate(images)
        ]

    return Groups(records(images_a, "A"), records(images_b, "B"))


def test_log_odds_hand_worked():
    # Totals 7 (A) and 5 (B); "round": y_A = 3, y_B = 1, a_w = 10 * 4 / 12.
    # delta = ln((3 + 10/3) / (4 + 10/3)) ... simplifies to ln(6.3333 / 4.3333) = 0.37949.
    scores = {item.term: item for item in log_odds_dirichlet(Counter(round=3, cell=4), Counter(round=1, cell=4))}
    assert scores["round"].delta == pytest.approx(math.log(19 / 13), rel=1e-6)
    assert scores["round"].z == pytest.approx(0.37949 / math.sqrt(3 / 19 + 3 / 13), rel=1e-4)
    # "cell": y_A = y_B = 4, a_w = 20/3; delta = ln(32/3 / (10/3)) - ln(32/3 / (-2/3 + 10 - 20/3 + 2)).
    expected_cell = math.log((4 + 20 / 3) / (7 + 10 - 4 - 20 / 3)) - math.log((4 + 20 / 3) / (5 + 10 - 4 - 20 / 3))
    assert scores["cell"].delta == pytest.approx(expected_cell)
    assert scores["cell"].delta < 0  # the same count in the smaller group B is relatively more frequent


def test_log_odds_sorted_by_z():
    scores = log_odds_dirichlet(Counter(dividing=8, cell=9), Counter(cell=9, round=8))
    assert scores[0].term == "dividing"
    assert scores[-1].term == "round"
    assert [item.z for item in scores] == sorted((item.z for item in scores), reverse=True)


def test_caption_terms_bigrams():
    assert caption_terms("A bright cell with two nuclei") == {
        "bright",
        "cell",
        "two",
        "nuclei",
        "bright cell",
        "two nuclei",
    }


def test_caption_proposer_picks_distinctive_term():
    captions_a = ["a dividing cell", "two dividing cells", "a dividing nucleus", "a round cell"]
    captions_b = ["a round cell", "a round nucleus", "two round cells", "a cell"]
    hypotheses, scores = propose_from_captions(captions_a, captions_b, top=3, min_z=0.5)
    assert hypotheses[0].description == "dividing"
    assert hypotheses[0].source["captions_with_term_a"] == 3
    assert hypotheses[0].source["captions_with_term_b"] == 0
    assert all(item.proposer == "caption_tokens" for item in hypotheses)
    assert "round" not in [item.description for item in hypotheses]


def test_vlm_logprob_difference_matches_direct_calls(registry):
    vlm = registry.get("vlm")
    images_a = coloured_images((220, 40, 40), 2, 1)
    images_b = coloured_images((40, 40, 220), 2, 2)
    measured = vlm_logprob_difference(vlm, images_a, images_b, "round cells")
    expected = np.mean(
        [
            np.mean(vlm.continuation_logprobs([a], "Describe the image.", "round cells"))
            - np.mean(vlm.continuation_logprobs([b], "Describe the image.", "round cells"))
            for a, b in zip(images_a, images_b, strict=True)
        ]
    )
    assert measured == pytest.approx(expected)
    assert measured != 0.0  # the random model does look at the image


def test_comparative_decoding_first_word_is_best_plausible(registry):
    vlm = registry.get("vlm")
    images_a = coloured_images((220, 40, 40), 2, 3)
    images_b = coloured_images((40, 40, 220), 2, 4)
    vocabulary = ["cells", "nuclei", "bright", "round"]
    decoder = ComparativeDecoder(vlm, images_a, images_b)
    chosen = decoder.step("", vocabulary, weight=0.5, plausibility=0.1)

    def mean_logprob(images, word):
        return np.mean([sum(vlm.continuation_logprobs([image], "Describe the image.", word)) for image in images])

    given_a = {word: mean_logprob(images_a, word) for word in vocabulary}
    plausible = [word for word in vocabulary if given_a[word] >= math.log(0.1) + max(given_a.values())]
    scores = {word: given_a[word] - 0.5 * mean_logprob(images_b, word) for word in plausible}
    assert chosen.word == max(scores, key=scores.get)
    assert chosen.score == pytest.approx(scores[chosen.word], rel=1e-5)
    assert chosen.candidates == len(plausible)


def test_decoding_proposals_distinct_starts(registry):
    vlm = registry.get("vlm")
    hypotheses = propose_by_decoding(
        vlm,
        coloured_images((200, 60, 60), 3, 5),
        coloured_images((60, 60, 200), 3, 6),
        ["cells", "nuclei", "dark"],
        descriptions=2,
        length=2,
        sample=1,
    )
    assert len(hypotheses) == 2
    first_words = [item.description.split()[0] for item in hypotheses]
    assert first_words[0] != first_words[1]
    assert all(len(item.description.split()) == 2 for item in hypotheses)
    assert all(item.proposer == "comparative_decoding" for item in hypotheses)


def test_parse_llm_phrases():
    reply = '1. Larger nuclei\n- "more cells".\n\n* larger nuclei\nbrighter background'
    assert parse_phrases(reply, 5) == ["Larger nuclei", "more cells", "brighter background"]


class ImageEmbeddingsForbidden:
    """Wrap a CLIP backend so that a test fails if image embeddings are computed again."""

    def __init__(self, clip) -> None:
        self.clip = clip
        self.text_calls = 0

    def embed_images(self, images):
        raise AssertionError("image embeddings were recomputed")

    def embed_texts(self, texts):
        self.text_calls += 1
        return self.clip.embed_texts(texts)


def test_clip_ranker_scores_and_typed_rerank(registry, tmp_path):
    clip = registry.get("clip")
    images_a = coloured_images((220, 40, 40), 4, 7)
    images_b = coloured_images((40, 40, 220), 4, 8)
    names_a, names_b = [f"a{i}" for i in range(4)], [f"b{i}" for i in range(4)]
    index = EmbeddingIndex.from_clip(clip, images_a, images_b, names_a, names_b)
    [ranked] = index.rank([Hypothesis("red cells", "user")], clip, **FAST)
    expected = clip.embed_images(images_a + images_b) @ clip.embed_texts(["red cells"])[0]
    assert np.allclose(ranked.scores, expected, atol=1e-5)
    assert ranked.ranker == "clip"

    index.save(tmp_path / "index.npz")
    reloaded = EmbeddingIndex.load(tmp_path / "index.npz")
    guard = ImageEmbeddingsForbidden(clip)
    [typed] = reloaded.rank([Hypothesis("red cells", "user")], guard, **FAST)
    assert guard.text_calls == 1
    assert np.allclose(typed.scores, ranked.scores)
    assert typed.result.auroc == ranked.result.auroc
    assert reloaded.names_b == names_b


def test_pipeline_with_every_model(registry):
    groups = groups_from(coloured_images((220, 40, 40), 4, 9), coloured_images((40, 40, 220), 4, 10))
    settings = Settings(
        resamples=100,
        permutations=200,
        user_descriptions=("red cells",),
        caption_terms=2,
        vlm_pairs=1,
        decoded_descriptions=2,
        decoding_length=2,
        decoding_sample=1,
        decoding_vocabulary=("cells", "nuclei", "bright", "dark"),
    )
    result = run_setdiff(groups, registry, settings)
    proposers = {item.proposer for item in result.hypotheses}
    assert {"measured", "comparative_decoding", "llm", "user"} <= proposers
    assert {item.ranker for item in result.hypotheses} == {"measured", "clip"}
    assert set(result.models) == {"captioner", "vlm", "llm", "clip"}
    assert len(result.captions) == 8
    llm_rows = [item for item in result.hypotheses if item.proposer == "llm"]
    assert [item.description for item in llm_rows] == ["larger nuclei"]
    # The ranking sorts by AUROC rounded to 2 decimals; ties are broken by other keys.
    aurocs = [round(item.result.auroc, 2) for item in result.hypotheses]
    assert aurocs == sorted(aurocs, reverse=True)
    assert all(0.0 <= item.result.q <= 1.0 for item in result.hypotheses)
    assert result.unavailable == {}
    json.dumps(result.as_dict())


def test_pipeline_sentence_embedder_without_clip(sources, tmp_path):
    registry = ModelRegistry(
        {**sources, "clip": "none", "vlm": "none", "llm": "none"}, device="cpu", cache_dir=tmp_path
    )
    groups = groups_from(coloured_images((220, 40, 40), 3, 11), coloured_images((40, 40, 220), 3, 12))
    settings = Settings(proposers=("captions",), resamples=100, permutations=200, user_descriptions=("red cells",))
    result = run_setdiff(groups, registry, settings)
    assert {item.ranker for item in result.hypotheses} == {"sentence_embedder"}
    assert "clip" in result.unavailable
    embedder = registry.get("sentence_embedder")
    captions = list(result.captions.values())
    user = next(item for item in result.hypotheses if item.proposer == "user")
    expected = embedder.embed(captions) @ embedder.embed(["red cells"])[0]
    assert np.allclose(user.scores, expected, atol=1e-5)


def test_vqa_ranker_matches_direct_calls(registry):
    vlm = registry.get("vlm")
    images_a = coloured_images((220, 40, 40), 2, 13)
    images_b = coloured_images((40, 40, 220), 2, 14)
    [ranked] = rank_by_vqa(
        [Hypothesis("red cells", "user")], vlm, images_a, images_b, ["a0", "a1"], ["b0", "b1"], **FAST
    )
    prompt = VQA_PROMPT.format(description="red cells")
    expected = [
        sum(vlm.continuation_logprobs([image], prompt, "yes")) - sum(vlm.continuation_logprobs([image], prompt, "no"))
        for image in images_a + images_b
    ]
    assert np.allclose(ranked.scores, expected)
    assert ranked.ranker == "vqa"
    assert ranked.evidence["a_best"][0]["image"] in ("a0", "a1")


def test_pipeline_vqa_text_ranker(registry):
    groups = groups_from(coloured_images((220, 40, 40), 2, 15), coloured_images((40, 40, 220), 2, 16))
    settings = Settings(proposers=("measured",), text_ranker="vqa", user_descriptions=("red cells",), **FAST)
    result = run_setdiff(groups, registry, settings)
    user = [item for item in result.hypotheses if item.proposer == "user"]
    assert [item.ranker for item in user] == ["vqa"]
    assert "vlm" in result.models


def test_cli_rank_from_stored_embeddings(sources, tmp_path, monkeypatch, capsys):
    from analysis.__main__ import main

    for role in ("CAPTIONER", "VLM", "LLM", "CLIP", "SENTENCE_EMBEDDER"):
        monkeypatch.delenv(f"BIOVLM_MODEL_{role}", raising=False)
    monkeypatch.setenv("BIOVLM_MODEL_CLIP", sources["clip"])
    for seed, (group, colour) in enumerate((("A", (220, 40, 40)), ("B", (40, 40, 220))), start=17):
        (tmp_path / group).mkdir()
        for index, image in enumerate(coloured_images(colour, 3, seed)):
            image.save(tmp_path / group / f"{index}.png")
    output = tmp_path / "run.json"
    arguments = [
        "setdiff",
        "run",
        str(tmp_path / "A"),
        str(tmp_path / "B"),
        "-o",
        str(output),
        "--proposers",
        "measured",
    ]
    assert main([*arguments, "--describe", "red cells", "--resamples", "50", "--permutations", "50"]) == 0
    stored = tmp_path / "run.embeddings.npz"
    assert stored.is_file()
    run_rows = {row["description"]: row for row in json.loads(output.read_text())["hypotheses"]}
    capsys.readouterr()

    assert main(["setdiff", "rank", str(stored), "red cells", "blue cells"]) == 0
    printed = capsys.readouterr().out
    assert "red cells" in printed
    assert "blue cells" in printed
    assert f"{run_rows['red cells']['auroc']:5.3f}" in printed

    assert main(["setdiff", "rank", str(tmp_path / "missing.npz"), "red cells"]) == 2
    assert "run 'setdiff run' first" in capsys.readouterr().err


class CountingClip:
    """Wrap a CLIP backend and count the images it embeds."""

    def __init__(self, clip) -> None:
        self.clip = clip
        self.info = clip.info
        self.images = 0

    def embed_images(self, images):
        self.images += len(images)
        return self.clip.embed_images(images)

    def embed_texts(self, texts):
        return self.clip.embed_texts(texts)


def test_clip_index_reuses_rows_by_key(registry, tmp_path):
    clip = registry.get("clip")
    images_a = coloured_images((220, 40, 40), 3, 31)
    images_b = coloured_images((40, 40, 220), 3, 32)
    names_a, names_b = ["a0", "a1", "a2"], ["b0", "b1", "b2"]
    keys = [f"sha-{name}" for name in names_a + names_b]
    first = EmbeddingIndex.from_clip(clip, images_a, images_b, names_a, names_b, keys)
    first.save(tmp_path / "index.npz")
    stored = EmbeddingIndex.load(tmp_path / "index.npz")
    assert stored.keys == keys

    # One image of B changes; only it is embedded again.
    changed_b = [*images_b[:2], coloured_images((40, 220, 40), 1, 33)[0]]
    counting = CountingClip(clip)
    second = EmbeddingIndex.from_clip(
        counting, images_a, changed_b, names_a, names_b, [*keys[:5], "sha-new"], previous=stored
    )
    assert counting.images == 1
    assert np.allclose(second.embeddings[:5], first.embeddings[:5])
    assert np.allclose(second.embeddings[5], clip.embed_images(changed_b[2:])[0], atol=1e-5)


def test_clip_index_ignores_other_model(registry):
    clip = registry.get("clip")
    images_a = coloured_images((220, 40, 40), 2, 34)
    images_b = coloured_images((40, 40, 220), 2, 35)
    keys = ["k0", "k1", "k2", "k3"]
    other = EmbeddingIndex(np.zeros((4, 16), np.float32), ["a0", "a1"], ["b0", "b1"], "clip", "other@0", keys)
    counting = CountingClip(clip)
    index = EmbeddingIndex.from_clip(counting, images_a, images_b, ["a0", "a1"], ["b0", "b1"], keys, previous=other)
    assert counting.images == 4
    assert np.allclose(index.embeddings, clip.embed_images(images_a + images_b), atol=1e-5)


def test_clip_image_index_without_text(registry):
    from analysis.setdiff.pipeline import clip_image_index

    groups = groups_from(coloured_images((220, 40, 40), 3, 36), coloured_images((40, 40, 220), 3, 37))
    settings = Settings(proposers=("measured",), text_ranker="clip", **FAST)
    result = run_setdiff(groups, registry, settings)
    assert result.index is None
    index = clip_image_index(result, registry)
    assert index.ranker == "clip"
    assert index.keys == [image.sha256 for image in groups.images]
    assert index.names_a == [image.name for image in groups.a]
    assert result.models["clip"] == index.model
