"""Vision backends on Hugging Face transformers: BLIP and GIT captioners, and image-text-to-text VLMs.

Both load from a ``save_pretrained`` folder (``local:``) or the Hugging Face cache (``hf:``).
The VLM is any model that ``AutoModelForImageTextToText`` loads (LLaVA, Qwen2-VL, SmolVLM,
PaliGemma and others), prompted through its processor's chat template.
"""

from __future__ import annotations

import inspect
import logging

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
    require_tokenizer_files,
)
from analysis.backends.registry import LoadContext, register_loader
from analysis.backends.roles import Captioner, Generation, VisionLanguageModel
from analysis.backends.spec import ModelSource

logger = logging.getLogger(__name__)

# model_type in config.json -> the transformers class that captions with it.
CAPTIONER_CLASSES = {"blip": "BlipForConditionalGeneration", "git": "GitForCausalLM"}
DEFAULT_CAPTION_BATCH_SIZE = 8
# Inputs with one entry per prompt token, which grow with the continuation when it is scored,
# and the value that the continuation's tokens get (input_ids take the tokens themselves).
_PER_TOKEN_INPUTS = {"input_ids": None, "attention_mask": 1, "token_type_ids": 0, "mm_token_type_ids": 0}
# Models whose generated tokens get another token type. PaliGemma marks generated text (its
# "suffix") with type 1, which makes attention over it causal. Gemma 3 and the Qwen-VL
# models use types to mark image tokens, so text tokens there have type 0.
_CONTINUATION_TOKEN_TYPE = {"paligemma": 1}


def as_rgb_images(images) -> list:
    """Convert PIL images and uint8 arrays of shape (height, width[, channels]) to RGB PIL images."""
    from PIL import Image

    converted = []
    for index, image in enumerate(images):
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        elif not isinstance(image, Image.Image):
            raise TypeError(f"images[{index}] is a {type(image).__name__}. Pass PIL images or uint8 NumPy arrays.")
        converted.append(image if image.mode == "RGB" else image.convert("RGB"))
    return converted


def _to_model(inputs, model) -> dict:
    """Move processor outputs to the model's device, and floating-point ones to its dtype."""
    import torch

    moved = {}
    for key, value in inputs.items():
        if torch.is_tensor(value):
            value = value.to(model.device, dtype=model.dtype) if value.is_floating_point() else value.to(model.device)
        moved[key] = value
    return moved


class ImageCaptioner(CachedResults, Captioner):
    """Captions from a BLIP or GIT model, generated in batches and cached per image.

    With a ``prompt`` (such as "a micrograph of"), each caption continues it and starts with it,
    as BLIP's conditional captioning does.
    """

    def __init__(
        self,
        model,
        processor,
        info: ModelInfo,
        *,
        cache: ResultCache | None = None,
        batch_size: int = DEFAULT_CAPTION_BATCH_SIZE,
        prompt: str = "",
        num_beams: int = 1,
    ) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.cache = cache
        self.batch_size = batch_size
        self.prompt = prompt
        self.num_beams = num_beams
        self.model_type = model.config.model_type

    def caption(self, images: list, max_new_tokens: int = 30) -> list[str]:
        images = as_rgb_images(images)
        if not images:
            return []
        params = {"max_new_tokens": max_new_tokens, "prompt": self.prompt, "num_beams": self.num_beams}

        def compute(indices: list[int]) -> list[str]:
            return self._caption_uncached([images[index] for index in indices], max_new_tokens)

        return self.cached_map("caption", [input_hash(image) for image in images], params, compute)

    def _caption_uncached(self, images: list, max_new_tokens: int) -> list[str]:
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}.")
        # Keyword arguments rather than a GenerationConfig, because BLIP's generate passes its
        # own end and padding tokens, which transformers 5 rejects next to a config object.
        generation_options = {"max_new_tokens": max_new_tokens, "num_beams": self.num_beams, "do_sample": False}
        captions = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            inputs = _to_model(self._batch_inputs(batch), self.model)
            with torch.inference_mode():
                output = self.model.generate(**inputs, **generation_options)
            decoded = self.processor.batch_decode(output, skip_special_tokens=True)
            captions.extend(text.strip() for text in decoded)
        return captions

    def _batch_inputs(self, batch: list) -> dict:
        import torch

        if not self.prompt:
            return dict(self.processor(images=batch, return_tensors="pt"))
        if self.model_type == "blip":
            # BLIP's generate replaces the first token with its decoder start token and drops
            # the final [SEP], so the caption continues the prompt.
            return dict(self.processor(images=batch, text=[self.prompt] * len(batch), return_tensors="pt"))
        # GIT continues input_ids that start with [CLS] and carry no [SEP].
        tokenizer = self.processor.tokenizer
        prompt_ids = [tokenizer.cls_token_id, *tokenizer(self.prompt, add_special_tokens=False)["input_ids"]]
        inputs = dict(self.processor(images=batch, return_tensors="pt"))
        inputs["input_ids"] = torch.tensor([prompt_ids] * len(batch))
        return inputs

    def close(self) -> None:
        self.model = None
        release_torch_memory(self.info.device)


def _load_processor(role: str, source: ModelSource, files: ModelFiles):
    from transformers import AutoProcessor

    require_tokenizer_files(role, source, files)
    try:
        processor = AutoProcessor.from_pretrained(files.folder, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ModelUnavailable(
            role,
            str(source),
            f"loading the processor from {files.folder} failed ({error}). "
            "Save the processor (image processor and tokenizer) with save_pretrained into the model folder.",
        ) from error
    if not hasattr(processor, "tokenizer") or not hasattr(processor, "image_processor"):
        raise ModelUnavailable(
            role,
            str(source),
            f"{files.folder} has a {type(processor).__name__}, not a processor with an image processor and a "
            "tokenizer. Save the model's full processor with save_pretrained.",
        )
    return processor


@register_loader("captioner", ("local", "hf"))
def load_captioner(role: str, source: ModelSource, context: LoadContext) -> ImageCaptioner:
    import transformers

    files = locate_model_files(role, source, context.allow_downloads)
    device, dtype = pick_device_and_dtype(role, source, context.device, context.dtype)
    config = read_config(role, source, files)
    class_name = CAPTIONER_CLASSES.get(config.model_type)
    if class_name is None:
        raise ModelUnavailable(
            role,
            str(source),
            f"{files.folder} contains a {config.model_type!r} model, but the captioner loads BLIP (model_type 'blip', "
            "such as Salesforce/blip-image-captioning-base) or GIT (model_type 'git', such as microsoft/git-base-coco).",
        )
    architectures = config.architectures or []
    if architectures and class_name not in architectures:
        raise ModelUnavailable(
            role,
            str(source),
            f"{files.folder} is a {', '.join(architectures)} checkpoint, not a {class_name} captioning model.",
        )
    batch_size = positive_int_option(role, source, "batch_size", DEFAULT_CAPTION_BATCH_SIZE)
    num_beams = positive_int_option(role, source, "num_beams", 1)
    prompt = source.option("prompt", "") or ""

    processor = _load_processor(role, source, files)
    model_class = getattr(transformers, class_name)
    model = model_class.from_pretrained(files.folder, dtype=dtype, local_files_only=True).to(device).eval()
    info = describe_model(
        role,
        source,
        files,
        ImageCaptioner.__name__,
        model,
        device,
        dtype,
        {"model_type": config.model_type, "batch_size": batch_size, "num_beams": num_beams, "prompt": prompt},
    )
    return ImageCaptioner(
        model, processor, info, cache=context.cache, batch_size=batch_size, prompt=prompt, num_beams=num_beams
    )


class ImageTextToTextModel(VisionLanguageModel):
    """A VLM that answers a prompt about images, with greedy decoding and token log-probabilities.

    Log-probabilities come from the model's raw logits (before any logits processors), so
    ``continuation_logprobs`` of a generated text gives the same values as ``generate``.
    """

    def __init__(self, model, processor, info: ModelInfo) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.info = info
        self._forward_takes_logits_to_keep = "logits_to_keep" in inspect.signature(model.forward).parameters

    def format_prompt(self, image_count: int, prompt: str) -> str:
        """Render one user turn with ``image_count`` images and ``prompt``, ending where the reply starts."""
        if getattr(self.processor, "chat_template", None):
            content = [{"type": "image"} for _ in range(image_count)] + [{"type": "text", "text": prompt}]
            return self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
        # Without a template, the image placeholders go first, as LLaVA and PaliGemma expect.
        image_token = getattr(self.processor, "image_token", None) or ""
        return f"{image_token * image_count}{prompt}"

    def _prompt_inputs(self, images: list, prompt: str) -> dict:
        images = as_rgb_images(images)
        text = self.format_prompt(len(images), prompt)
        # When the chat template writes the BOS token itself, the tokenizer must not add a
        # second one. The processor's own apply_chat_template(tokenize=True) checks the same.
        bos_token = self.tokenizer.bos_token
        add_special_tokens = not (bos_token and text.startswith(bos_token))
        inputs = self.processor(
            images=images or None, text=[text], add_special_tokens=add_special_tokens, return_tensors="pt"
        )
        # PaliGemma's processor also returns training labels, which would make the model compute a loss.
        inputs.pop("labels", None)
        return _to_model(inputs, self.model)

    def generate(self, images: list, prompt: str, max_new_tokens: int = 64, with_logprobs: bool = False) -> Generation:
        """Generate a reply greedily. The end-of-sequence token is not part of the text, tokens or logprobs."""
        import torch

        inputs = self._prompt_inputs(images, prompt)
        prompt_length = inputs["input_ids"].shape[1]
        generation_config = generation_config_for(
            self.model,
            max_new_tokens,
            num_beams=1,
            return_dict_in_generate=True,
            output_logits=with_logprobs,
        )
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=generation_config)
        new_ids = output.sequences[0, prompt_length:].tolist()
        stop_ids = _as_id_set(generation_config.eos_token_id)
        end = next((index for index, token_id in enumerate(new_ids) if token_id in stop_ids), len(new_ids))
        token_ids = new_ids[:end]
        logprobs = None
        if with_logprobs:
            logprobs = _gather_logprobs(torch.stack(output.logits[:end])[:, 0].float(), token_ids) if end else []
        return Generation(
            text=self.tokenizer.decode(token_ids, skip_special_tokens=True).strip(),
            tokens=[self.tokenizer.decode([token_id]) for token_id in token_ids],
            logprobs=logprobs,
        )

    def continuation_logprobs(self, images: list, prompt: str, continuation: str) -> list[float]:
        """Score ``continuation`` after the prompt with one forward pass.

        The continuation is tokenized on its own and appended to the prompt's tokens, as
        generated tokens are, so scoring a ``generate`` result gives its logprobs again.
        """
        import torch

        inputs = self._prompt_inputs(images, prompt)
        continuation_ids = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not continuation_ids:
            return []
        count = len(continuation_ids)
        appended = torch.tensor([continuation_ids], device=self.model.device)
        for key, fill in _PER_TOKEN_INPUTS.items():
            if key not in inputs:
                continue
            if key == "input_ids":
                extra = appended
            elif key == "token_type_ids":
                extra = torch.full_like(appended, _CONTINUATION_TOKEN_TYPE.get(self.model.config.model_type, fill))
            else:
                extra = torch.full_like(appended, fill)
            inputs[key] = torch.cat([inputs[key], extra.to(inputs[key].dtype)], dim=1)
        if self._forward_takes_logits_to_keep:
            # Only the positions that predict the continuation are needed.
            inputs["logits_to_keep"] = count + 1
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0]
        return _gather_logprobs(logits[-(count + 1) : -1].float(), continuation_ids)

    def close(self) -> None:
        self.model = None
        release_torch_memory(self.info.device)


def _as_id_set(token_ids) -> set[int]:
    if token_ids is None:
        return set()
    return set(token_ids) if isinstance(token_ids, list | tuple) else {int(token_ids)}


def _gather_logprobs(logits, token_ids: list[int]) -> list[float]:
    """Log-softmax each row of ``logits`` (tokens, vocabulary) and pick the given token's value."""
    import torch

    if not token_ids:
        return []
    index = torch.tensor(token_ids, device=logits.device).unsqueeze(1)
    return torch.log_softmax(logits, dim=-1).gather(1, index).squeeze(1).tolist()


@register_loader("vlm", ("local", "hf"))
def load_vision_language_model(role: str, source: ModelSource, context: LoadContext) -> ImageTextToTextModel:
    from transformers import AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    files = locate_model_files(role, source, context.allow_downloads)
    device, dtype = pick_device_and_dtype(role, source, context.device, context.dtype)
    config = read_config(role, source, files)
    if config.model_type in CAPTIONER_CLASSES:
        # transformers lists BLIP and GIT as image-text-to-text models, but they take no chat
        # prompt, and BLIP's generate drops the prompt's last token, which breaks scoring.
        raise ModelUnavailable(
            role,
            str(source),
            f"{files.folder} contains a {config.model_type!r} captioning model, which takes no chat prompt. "
            "Configure it as the captioner, and use a model such as LLaVA or Qwen2-VL for the vlm role.",
        )
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ModelUnavailable(
            role,
            str(source),
            f"{files.folder} contains a {config.model_type!r} model, not an image-text-to-text model. "
            "The vlm role needs a model such as LLaVA, Qwen2-VL, SmolVLM or PaliGemma.",
        )
    processor = _load_processor(role, source, files)
    model = AutoModelForImageTextToText.from_pretrained(files.folder, dtype=dtype, local_files_only=True)
    model = model.to(device).eval()
    info = describe_model(
        role,
        source,
        files,
        ImageTextToTextModel.__name__,
        model,
        device,
        dtype,
        {"model_type": config.model_type, "chat_template": bool(getattr(processor, "chat_template", None))},
    )
    return ImageTextToTextModel(model, processor, info)
