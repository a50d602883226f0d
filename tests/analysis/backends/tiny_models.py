"""Tiny random-weight Hugging Face models, saved with ``save_pretrained`` for backend tests.

Every model has a few thousand to a few tens of thousands of parameters, and its tokenizer
is built here from a word list, so nothing is downloaded. Once transformers is imported,
each model loads in well under a second. The weights are random: the tests check shapes, types, determinism,
caching and consistency between code paths, never the meaning of the outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = (
    "a an the cell cells nucleus nuclei membrane protein image images micrograph microscope "
    "fluorescent green red blue bright dark round small large many few dividing stained tissue "
    "sample of in on with and is are shows two one car sports fast road what describe answer "
    "yes no call tool function name arguments count"
).split()

BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# A chat template in the shape most instruct models use: role markers, then the content.
# It renders ``tools`` as JSON, so a test can check that the tools reach the prompt.
LLAMA_CHAT_TEMPLATE = (
    "{% if tools %}<|system|> tools {{ tools | tojson }} {% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|> "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %} "
    "{% endfor %}{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
# A template with no place for tools, like SmolLM2's.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
# Special tokens beyond unknown, begin, end and padding: the image placeholder and role markers.
LLAMA_MARKERS = ["<image>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
LLAMA_SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", *LLAMA_MARKERS]


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def bert_tokenizer():
    """A lower-casing WordPiece tokenizer over ``WORDS``, built like a real BERT one."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(BERT_SPECIAL + list(WORDS))}
    return BertTokenizer(vocab=vocab, model_max_length=64)


def word_level_tokenizer(
    chat_template: str | None = LLAMA_CHAT_TEMPLATE,
    extra_words: tuple[str, ...] = (),
    extra_special: tuple[str, ...] = (),
):
    """A whitespace-split word tokenizer with Llama-style special tokens and a chat template.

    Decoding joins words with spaces, so decoded text tokenizes back to the same ids. Like
    Llama's tokenizer, it starts each text with ``<s>`` unless ``add_special_tokens`` is false.
    ``extra_words`` extend the vocabulary, and ``extra_special`` become special tokens.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tokens = list(dict.fromkeys([*LLAMA_SPECIAL, *extra_special, *WORDS, *extra_words]))
    backend = Tokenizer(WordLevel({token: index for index, token in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokens.index("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=[*LLAMA_MARKERS, *extra_special],
        model_max_length=512,
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def save_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer BertModel with hidden size 16 and its tokenizer into ``folder``."""
    from transformers import BertConfig, BertModel

    _seed(seed)
    tokenizer = bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def _tiny_llama_config(vocab_size: int, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _special_token_ids(tokenizer) -> list[int]:
    return sorted(tokenizer.convert_tokens_to_ids(token) for token in LLAMA_SPECIAL if token != "</s>")


def save_tiny_llama(folder: Path, seed: int = 0, chat_template: str | None = LLAMA_CHAT_TEMPLATE) -> Path:
    """Save a 2-layer LlamaForCausalLM with a word-level tokenizer and ``chat_template``.

    The generation config suppresses every special token except the end of sequence, so
    the random model writes plain words and stops only at ``</s>`` or the token limit.
    """
    from transformers import GenerationConfig, LlamaForCausalLM

    _seed(seed)
    tokenizer = word_level_tokenizer(chat_template)
    model = LlamaForCausalLM(_tiny_llama_config(len(tokenizer), tokenizer)).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=_special_token_ids(tokenizer),
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def save_scripted_llama(folder: Path, reply_words: list[str], chat_template: str = PLAIN_CHAT_TEMPLATE) -> Path:
    """Save a LlamaForCausalLM wired to reply with ``reply_words`` and then ``</s>``.

    Its attention and MLP outputs are zero and its embeddings are one-hot, so each next token
    depends only on the current one. The output head maps ``<|assistant|>`` (the last token
    of every prompt) to the first reply word, each reply word to the next, and every other
    token to ``</s>``. The words must be distinct. ``<tool_call>`` and ``</tool_call>`` are
    special tokens, as in Qwen2.5 and SmolLM3 tokenizers.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = word_level_tokenizer(
        chat_template, extra_words=tuple(reply_words), extra_special=("<tool_call>", "</tool_call>")
    )
    size = len(tokenizer) + (-len(tokenizer)) % 4
    config = LlamaConfig(
        vocab_size=size,
        hidden_size=size,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).eval()
    chain = tokenizer.convert_tokens_to_ids(["<|assistant|>", *reply_words, "</s>"])
    next_token = dict.fromkeys(range(size), tokenizer.eos_token_id)
    next_token.update(zip(chain, chain[1:], strict=False))
    head = torch.zeros(size, size)
    for current, following in next_token.items():
        head[following, current] = 10.0
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(size))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.copy_(head)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


GGUF_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write a 2-layer Llama with random float32 weights as a GGUF file, as llama.cpp names them.

    The file carries a byte-level BPE tokenizer trained here on a few sentences and a
    ChatML chat template, so transformers reads model, tokenizer and template from it alone.
    """
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([" ".join(WORDS), "a cell nucleus under a microscope"], trainer)
    bpe = json.loads(tokenizer.to_str())["model"]
    tokens = sorted(bpe["vocab"], key=bpe["vocab"].get)
    merges = [" ".join(merge) if isinstance(merge, list) else merge for merge in bpe["merges"]]

    hidden, layers, feed_forward = 16, 2, 32
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(layers)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(feed_forward)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if token.startswith("<|") else gguf.TokenType.NORMAL for token in tokens]
    )
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_chat_template(GGUF_CHAT_TEMPLATE)

    generator = np.random.default_rng(seed)

    def add_random(name: str, *shape: int) -> None:
        writer.add_tensor(name, (generator.standard_normal(shape) * 0.2).astype(np.float32))

    add_random("token_embd.weight", len(tokens), hidden)
    for layer in range(layers):
        writer.add_tensor(f"blk.{layer}.attn_norm.weight", np.ones(hidden, np.float32))
        add_random(f"blk.{layer}.attn_q.weight", hidden, hidden)
        add_random(f"blk.{layer}.attn_k.weight", hidden // 2, hidden)
        add_random(f"blk.{layer}.attn_v.weight", hidden // 2, hidden)
        add_random(f"blk.{layer}.attn_output.weight", hidden, hidden)
        writer.add_tensor(f"blk.{layer}.ffn_norm.weight", np.ones(hidden, np.float32))
        add_random(f"blk.{layer}.ffn_gate.weight", feed_forward, hidden)
        add_random(f"blk.{layer}.ffn_up.weight", feed_forward, hidden)
        add_random(f"blk.{layer}.ffn_down.weight", hidden, feed_forward)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    add_random("output.weight", len(tokens), hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def _tiny_vision_kwargs() -> dict:
    # BLIP's vision config defaults to initializer_range=1e-10, which makes every image
    # look the same to a random model. With 0.2 the captions depend on the image.
    return {
        "initializer_range": 0.2,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }


def save_tiny_blip(folder: Path, seed: int = 0) -> Path:
    """Save a BlipForConditionalGeneration with 32-pixel images and a BERT tokenizer."""
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    _seed(seed)
    tokenizer = bert_tokenizer()
    text_config = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        encoder_hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        initializer_range=0.2,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = BlipVisionConfig(**_tiny_vision_kwargs())
    config = BlipConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=16)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return Path(folder)


def save_tiny_git(folder: Path, seed: int = 0) -> Path:
    """Save a GitForCausalLM with 32-pixel images and a BERT tokenizer."""
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor

    _seed(seed)
    tokenizer = bert_tokenizer()
    config = GitConfig(
        vision_config=_tiny_vision_kwargs(),
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        initializer_range=0.2,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    GitForCausalLM(config).eval().save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return Path(folder)


def save_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """Save a LlavaForConditionalGeneration: a tiny CLIP vision tower and a tiny Llama.

    Images are 32 pixels with 8-pixel patches, so each image becomes 16 ``<image>`` tokens
    (the CLIP class token is dropped by the ``default`` feature selection).
    """
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    _seed(seed)
    tokenizer = word_level_tokenizer()
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_tiny_vision_kwargs()).to_dict(),
        text_config=_tiny_llama_config(len(tokenizer), tokenizer).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=_special_token_ids(tokenizer),
    )
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAMA_CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    return Path(folder)


def save_tiny_paligemma(folder: Path, seed: int = 0) -> Path:
    """Save a PaliGemmaForConditionalGeneration: a tiny SigLIP vision tower and a tiny Gemma.

    Its processor has no chat template and adds 1152 location and segmentation tokens to
    the tokenizer, which the generation config suppresses along with the special tokens.
    Attention over the prompt is bidirectional and over the answer causal, as in PaliGemma.
    """
    from transformers import (
        GemmaConfig,
        GenerationConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
        SiglipVisionConfig,
    )

    _seed(seed)
    tokenizer = word_level_tokenizer(chat_template=None)
    word_count = len(tokenizer)
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vocab_size = len(processor.tokenizer)
    vision_kwargs = {key: value for key, value in _tiny_vision_kwargs().items() if key != "initializer_range"}
    text_config = GemmaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=256,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=SiglipVisionConfig(**vision_kwargs).to_dict(),
        text_config=text_config.to_dict(),
        image_token_id=processor.image_token_id,
        projection_dim=16,
    )
    model = PaliGemmaForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=_special_token_ids(tokenizer) + list(range(word_count, vocab_size)),
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def sample_images(count: int, size: int = 40, seed: int = 0) -> list:
    """Return ``count`` different random RGB PIL images of ``size`` pixels square."""
    from PIL import Image

    generator = np.random.default_rng(seed)
    return [
        Image.fromarray(generator.integers(0, 256, (size, size, 3), dtype=np.uint8), mode="RGB") for _ in range(count)
    ]
