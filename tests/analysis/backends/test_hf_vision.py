"""BLIP and GIT captioners and the image-text-to-text VLM, on tiny random models."""

import json
import shutil

import numpy as np
import pytest
import torch

from analysis.backends import ModelRegistry, ModelUnavailable, weights_sha256
from analysis.backends.hf_vision import ImageCaptioner, ImageTextToTextModel
from tests.analysis.backends.network_guard import block_network
from tests.analysis.backends.tiny_models import (
    sample_images,
    save_tiny_bert,
    save_tiny_blip,
    save_tiny_git,
    save_tiny_llava,
    save_tiny_paligemma,
)

CAPTIONERS = ("blip", "git")
VLMS = ("llava", "paligemma")
PROMPT = "describe the cells"


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    """Block and record every attempt to reach a host other than this machine."""
    attempts = block_network(monkeypatch)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision-models")
    return {
        "blip": save_tiny_blip(root / "tiny-blip"),
        "git": save_tiny_git(root / "tiny-git"),
        "llava": save_tiny_llava(root / "tiny-llava"),
        "paligemma": save_tiny_paligemma(root / "tiny-paligemma"),
        "bert": save_tiny_bert(root / "tiny-bert"),
    }


@pytest.fixture(scope="module")
def vlms(model_dirs):
    return {kind: load("vlm", f"local:{model_dirs[kind]}") for kind in VLMS}


@pytest.fixture
def vlm(vlms):
    return vlms["llava"]


def load(role: str, source: str, device: str = "cpu", **registry_options):
    """Load through the registry, on the CPU unless ``device`` names another, so results do not depend on the machine."""
    return ModelRegistry({role: source}, device=device, **registry_options).get(role)


def unavailable_reason(role: str, source: str) -> str:
    with pytest.raises(ModelUnavailable) as raised:
        load(role, source)
    assert raised.value.role == role
    return raised.value.reason


# Captioners


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_captioner_info(model_dirs, kind):
    folder = model_dirs[kind]
    captioner = load("captioner", f"local:{folder}")

    assert isinstance(captioner, ImageCaptioner)
    info = captioner.info
    assert info.role == "captioner"
    assert info.backend == "ImageCaptioner"
    assert info.model_id == f"tiny-{kind}"
    assert info.weights_sha256 == weights_sha256(folder)
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.parameters == sum(p.numel() for p in captioner.model.parameters())
    assert info.memory_bytes >= info.parameters * 4
    assert info.details["model_type"] == kind


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_captioner_one_string_per_image(model_dirs, kind):
    captioner = load("captioner", f"local:{model_dirs[kind]}")
    images = sample_images(4)

    captions = captioner.caption(images, max_new_tokens=6)

    assert len(captions) == 4
    assert all(isinstance(caption, str) and caption for caption in captions)
    assert all(len(caption.split()) <= 6 for caption in captions)
    # The random weights are scaled so that the image changes the caption.
    assert len(set(captions)) > 1


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_captioner_is_deterministic(model_dirs, kind):
    images = sample_images(3)

    first = load("captioner", f"local:{model_dirs[kind]}").caption(images, max_new_tokens=6)
    second = load("captioner", f"local:{model_dirs[kind]}").caption(images, max_new_tokens=6)

    assert first == second


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_captioner_batches_keep_order(model_dirs, kind):
    images = sample_images(5)

    one_at_a_time = [
        load("captioner", f"local:{model_dirs[kind]}").caption([image], max_new_tokens=6)[0] for image in images
    ]
    batched = load("captioner", f"local:{model_dirs[kind]}?batch_size=2").caption(images, max_new_tokens=6)

    assert batched == one_at_a_time


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_captioner_second_call_hits_cache(model_dirs, kind, tmp_path):
    source = f"local:{model_dirs[kind]}"
    images = sample_images(3)
    captioner = load("captioner", source, cache_dir=tmp_path)

    first = captioner.caption(images, max_new_tokens=6)
    assert (captioner.cache_hits, captioner.cache_misses) == (0, 3)
    second = captioner.caption(images, max_new_tokens=6)
    assert (captioner.cache_hits, captioner.cache_misses) == (3, 3)
    assert second == first

    # A different length is a different result, so it is not served from the cache.
    captioner.caption(images[:1], max_new_tokens=3)
    assert (captioner.cache_hits, captioner.cache_misses) == (3, 4)

    reloaded = load("captioner", source, cache_dir=tmp_path)
    assert reloaded.caption(images, max_new_tokens=6) == first
    assert (reloaded.cache_hits, reloaded.cache_misses) == (3, 0)


def test_captioner_computes_repeated_image_once(model_dirs):
    captioner = load("captioner", f"local:{model_dirs['blip']}")
    image = sample_images(1)[0]

    captions = captioner.caption([image, image.copy(), image], max_new_tokens=6)

    assert captions[0] == captions[1] == captions[2]
    assert captioner.cache_misses == 1


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_captioner_prompt_starts_caption(model_dirs, kind):
    captioner = load("captioner", f"local:{model_dirs[kind]}?prompt=a micrograph of")

    captions = captioner.caption(sample_images(2), max_new_tokens=4)

    assert captioner.info.details["prompt"] == "a micrograph of"
    for caption in captions:
        assert caption.startswith("a micrograph of")


def test_captioner_accepts_arrays_and_greyscale(model_dirs, tmp_path):
    captioner = load("captioner", f"local:{model_dirs['git']}", cache_dir=tmp_path)
    image = sample_images(1)[0]
    grey = image.convert("L")

    from_array = captioner.caption([np.asarray(image)], max_new_tokens=6)
    from_image = captioner.caption([image], max_new_tokens=6)
    from_grey = captioner.caption([grey], max_new_tokens=6)

    assert from_array == from_image
    assert captioner.cache_hits == 1
    assert len(from_grey) == 1
    assert isinstance(from_grey[0], str)


def test_captioner_empty_and_invalid_input(model_dirs):
    captioner = load("captioner", f"local:{model_dirs['blip']}")

    assert captioner.caption([]) == []
    with pytest.raises(TypeError, match=r"images\[0\] is a str"):
        captioner.caption(["cells.png"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        captioner.caption(sample_images(1), max_new_tokens=0)


def test_captioner_num_beams_option(model_dirs):
    captioner = load("captioner", f"local:{model_dirs['blip']}?num_beams=3")

    captions = captioner.caption(sample_images(2), max_new_tokens=6)

    assert captioner.info.details["num_beams"] == 3
    assert len(captions) == 2


@pytest.mark.parametrize(("kind", "expected"), [("llava", "'llava'"), ("bert", "'bert'")])
def test_captioner_rejects_other_models(model_dirs, kind, expected):
    reason = unavailable_reason("captioner", f"local:{model_dirs[kind]}")

    assert expected in reason
    assert "BLIP" in reason
    assert "GIT" in reason


def test_captioner_rejects_blip_question_answering(model_dirs, tmp_path):
    folder = tmp_path / "blip-vqa"
    shutil.copytree(model_dirs["blip"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BlipForQuestionAnswering"]
    (folder / "config.json").write_text(json.dumps(config))

    reason = unavailable_reason("captioner", f"local:{folder}")

    assert "BlipForQuestionAnswering" in reason
    assert "not a BlipForConditionalGeneration" in reason


def test_captioner_needs_processor_files(model_dirs, tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dirs["blip"] / name, folder / name)

    reason = unavailable_reason("captioner", f"local:{folder}")

    assert "no tokenizer files" in reason
    assert str(folder) in reason


def test_captioner_missing_folder(tmp_path):
    reason = unavailable_reason("captioner", f"local:{tmp_path / 'blip'}")

    assert "does not exist" in reason


# Image-text-to-text VLM


def test_vlm_info(model_dirs, vlm):
    assert isinstance(vlm, ImageTextToTextModel)
    assert vlm.info.role == "vlm"
    assert vlm.info.backend == "ImageTextToTextModel"
    assert vlm.info.model_id == "tiny-llava"
    assert vlm.info.weights_sha256 == weights_sha256(model_dirs["llava"])
    assert vlm.info.details["model_type"] == "llava"
    assert vlm.info.details["chat_template"] is True
    assert vlm.info.parameters == sum(p.numel() for p in vlm.model.parameters())


def test_vlm_prompt_has_one_placeholder_per_image(vlm):
    prompt = vlm.format_prompt(2, PROMPT)

    assert prompt.count("<image>") == 2
    assert PROMPT in prompt
    assert prompt.endswith("<|assistant|> ")


@pytest.mark.parametrize("kind", VLMS)
def test_vlm_generates_logprobs_per_token(vlms, kind):
    generation = vlms[kind].generate(sample_images(2), PROMPT, max_new_tokens=8, with_logprobs=True)

    assert generation.text
    assert 1 <= len(generation.tokens) <= 8
    assert len(generation.logprobs) == len(generation.tokens)
    assert all(logprob <= 0.0 for logprob in generation.logprobs)
    assert generation.text == " ".join(generation.tokens)


@pytest.mark.parametrize("kind", VLMS)
def test_vlm_without_logprobs(vlms, kind):
    images = sample_images(1)

    plain = vlms[kind].generate(images, PROMPT, max_new_tokens=5)
    scored = vlms[kind].generate(images, PROMPT, max_new_tokens=5, with_logprobs=True)

    assert plain.logprobs is None
    assert plain.text == scored.text
    assert plain.tokens == scored.tokens


@pytest.mark.parametrize("kind", VLMS)
def test_vlm_continuation_matches_generation(vlms, kind):
    images = sample_images(2) if kind == "llava" else sample_images(1)
    generation = vlms[kind].generate(images, PROMPT, max_new_tokens=8, with_logprobs=True)

    scores = vlms[kind].continuation_logprobs(images, PROMPT, generation.text)

    # PaliGemma attends causally over generated text only when the continuation gets token type 1.
    np.testing.assert_allclose(scores, generation.logprobs, atol=1e-5)


@pytest.mark.parametrize("kind", VLMS)
def test_vlm_greedy_token_scores_highest(vlms, kind):
    images = sample_images(1)
    generation = vlms[kind].generate(images, PROMPT, max_new_tokens=3, with_logprobs=True)
    alternative = "car" if generation.tokens[0] != "car" else "cell"

    scores = vlms[kind].continuation_logprobs(images, PROMPT, alternative)

    assert len(scores) == 1
    assert scores[0] <= 0.0
    assert scores[0] < generation.logprobs[0]


@pytest.mark.parametrize("kind", VLMS)
def test_vlm_scores_depend_on_images(vlms, kind):
    first, second = sample_images(2)

    with_first = vlms[kind].continuation_logprobs([first], PROMPT, "round nuclei")
    with_second = vlms[kind].continuation_logprobs([second], PROMPT, "round nuclei")

    assert len(with_first) == 2
    assert not np.allclose(with_first, with_second, atol=1e-7)


def test_vlm_without_images(vlm):
    generation = vlm.generate([], PROMPT, max_new_tokens=4, with_logprobs=True)

    assert len(generation.logprobs) == len(generation.tokens)
    assert "<image>" not in vlm.format_prompt(0, PROMPT)


def test_vlm_prompt_without_chat_template(vlms):
    paligemma = vlms["paligemma"]

    assert paligemma.info.details["chat_template"] is False
    assert paligemma.format_prompt(1, PROMPT) == f"<image>{PROMPT}"


def test_vlm_prompt_has_one_bos(model_dirs, vlm, tmp_path):
    folder = tmp_path / "llava-bos-template"
    shutil.copytree(model_dirs["llava"], folder)
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").write_text("<s> " + template)
    bos_template = load("vlm", f"local:{folder}")
    bos_id = vlm.tokenizer.bos_token_id

    for model in (vlm, bos_template):
        input_ids = model._prompt_inputs(sample_images(1), PROMPT)["input_ids"][0].tolist()
        assert input_ids[0] == bos_id
        assert input_ids.count(bos_id) == 1
    assert bos_template.format_prompt(1, PROMPT).startswith("<s>")


def test_vlm_empty_continuation(vlm):
    assert vlm.continuation_logprobs(sample_images(1), PROMPT, "") == []


def test_vlm_rejects_text_encoder(model_dirs):
    reason = unavailable_reason("vlm", f"local:{model_dirs['bert']}")

    assert "'bert'" in reason
    assert "not an image-text-to-text model" in reason


@pytest.mark.parametrize("kind", CAPTIONERS)
def test_vlm_sends_captioners_to_captioner_role(model_dirs, kind):
    reason = unavailable_reason("vlm", f"local:{model_dirs[kind]}")

    assert f"{kind!r} captioning model" in reason
    assert "Configure it as the captioner" in reason


def test_vlm_hf_id_not_cached(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))

    reason = unavailable_reason("vlm", "hf:llava-hf/llava-1.5-7b-hf")

    assert "llava-hf/llava-1.5-7b-hf is missing or incomplete in the local Hugging Face cache" in reason


# CUDA, where a GPU is present


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_vision_backends_on_cuda(model_dirs):
    captioner = load("captioner", f"local:{model_dirs['blip']}", device="cuda")
    vlm = load("vlm", f"local:{model_dirs['llava']}", device="cuda")
    images = sample_images(2)

    captions = captioner.caption(images, max_new_tokens=6)
    generation = vlm.generate(images, PROMPT, max_new_tokens=6, with_logprobs=True)
    scores = vlm.continuation_logprobs(images, PROMPT, generation.text)

    assert captioner.info.device == "cuda"
    assert vlm.info.dtype in ("bfloat16", "float16")
    assert len(captions) == 2
    assert len(generation.logprobs) == len(generation.tokens)
    # Half precision rounds the cached and the full-sequence forward passes differently.
    np.testing.assert_allclose(scores, generation.logprobs, atol=0.05)
