"""The open_clip backend on a tiny random-weight CLIP built from a JSON config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.backends import ModelRegistry, ModelUnavailable
from analysis.backends.roles import ClipModel
from tests.analysis.backends.network_guard import block_network

# A ViT with 2 layers on 32-pixel images and a 2-layer text transformer. The vocabulary size is
# that of open_clip's bundled BPE tokenizer, which tokenizes without any download.
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """Save the tiny config and a seeded random state dict; return (config path, weights path, model)."""
    import open_clip

    folder = tmp_path_factory.mktemp("clip")
    config_path = folder / "tiny-clip-test.json"
    config_path.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config_path)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test", pretrained=None)
    weights_path = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), weights_path)
    return config_path, weights_path, model


def sample_images(count: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)) for i in range(count)]


def load_clip(source: str, cache_dir=None):
    return ModelRegistry({"clip": source}, cache_dir=cache_dir, device="cpu").get("clip")


def source_for(tiny_clip, **options) -> str:
    config_path, weights_path, _ = tiny_clip
    query = "&".join(f"{key}={value}" for key, value in {"arch": config_path, **options}.items())
    return f"local:{weights_path}?{query}"


def test_embedding_shapes_and_norms(tiny_clip, tmp_path):
    clip = load_clip(source_for(tiny_clip), cache_dir=tmp_path)

    image_vectors = clip.embed_images(sample_images(3))
    text_vectors = clip.embed_texts(["a round cell", "two nuclei", "a stained membrane in a tissue sample"])

    assert isinstance(clip, ClipModel)
    assert image_vectors.shape == (3, 16)
    assert text_vectors.shape == (3, 16)
    assert image_vectors.dtype == np.float32
    assert text_vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(text_vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(text_vectors[0], text_vectors[1])


def test_matches_open_clip_directly(tiny_clip):
    import open_clip

    _, _, model = tiny_clip
    clip = load_clip(source_for(tiny_clip))
    images = sample_images(2)
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-clip-test", pretrained=None)
    tokenizer = open_clip.get_tokenizer("tiny-clip-test")

    with torch.no_grad():
        model.eval()
        expected_images = model.encode_image(torch.stack([preprocess(image) for image in images]))
        expected_texts = model.encode_text(tokenizer(["a cell"]))
    expected_images = torch.nn.functional.normalize(expected_images, dim=-1).numpy()
    expected_texts = torch.nn.functional.normalize(expected_texts, dim=-1).numpy()

    assert np.allclose(clip.embed_images(images), expected_images, atol=1e-5)
    assert np.allclose(clip.embed_texts(["a cell"]), expected_texts, atol=1e-5)


def test_deterministic_across_loads(tiny_clip):
    images = sample_images(2)

    first = load_clip(source_for(tiny_clip)).embed_images(images)
    second = load_clip(source_for(tiny_clip)).embed_images(images)

    assert np.array_equal(first, second)


def test_same_image_twice_is_cache_hit(tiny_clip, tmp_path):
    clip = load_clip(source_for(tiny_clip), cache_dir=tmp_path)
    image = sample_images(1)[0]

    first = clip.embed_images([image])
    assert clip.cache_hits == 0
    assert clip.cache_misses == 1
    second = clip.embed_images([image.copy()])

    assert np.array_equal(first, second)
    assert clip.cache_hits == 1
    assert clip.cache_misses == 1


def test_cache_persists_across_registries(tiny_clip, tmp_path):
    texts = ["a dividing cell", "a bright nucleus"]
    first = load_clip(source_for(tiny_clip), cache_dir=tmp_path).embed_texts(texts)

    clip = load_clip(source_for(tiny_clip), cache_dir=tmp_path)
    second = clip.embed_texts(texts)

    assert np.array_equal(first, second)
    assert clip.cache_hits == 2
    assert clip.cache_misses == 0


def test_partial_cache_hit_keeps_order(tiny_clip, tmp_path):
    images = sample_images(4)
    clip = load_clip(source_for(tiny_clip), cache_dir=tmp_path)
    reference = clip.embed_images(images)

    mixed = clip.embed_images([images[2], sample_images(1, seed=9)[0], images[0]])

    assert clip.cache_hits == 2
    assert np.array_equal(mixed[0], reference[2])
    assert np.array_equal(mixed[2], reference[0])
    assert not np.allclose(mixed[1], reference[0])


def test_batches_give_same_vectors(tiny_clip):
    images = sample_images(5)

    whole = load_clip(source_for(tiny_clip)).embed_images(images)
    batched = load_clip(source_for(tiny_clip, batch_size=2)).embed_images(images)

    assert np.allclose(whole, batched, atol=1e-5)


def test_array_input_matches_pil(tiny_clip):
    clip = load_clip(source_for(tiny_clip))
    image = sample_images(1)[0]

    assert np.array_equal(clip.embed_images([np.asarray(image)]), clip.embed_images([image]))


def test_empty_inputs(tiny_clip):
    clip = load_clip(source_for(tiny_clip))

    assert clip.embed_images([]).shape == (0, 16)
    assert clip.embed_texts([]).shape == (0, 16)


def test_model_info(tiny_clip):
    _, weights_path, model = tiny_clip

    info = load_clip(source_for(tiny_clip)).info

    assert info.backend == "open_clip"
    assert info.model_id == "tiny-clip-test:tiny-clip.pt"
    assert len(info.weights_sha256) == 64
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.details["embed_dim"] == 16
    assert info.details["image_size"] == [32, 32]
    assert info.details["path"] == str(weights_path)


def save_hub_folder(model, folder):
    """Write ``model`` in the open_clip hub layout: open_clip_config.json and safetensors weights."""
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=TINY_CONFIG)
    return folder


def test_hub_folder_layout(tiny_clip, tmp_path):
    _, _, model = tiny_clip
    folder = save_hub_folder(model, tmp_path / "tiny-clip-folder")
    images = sample_images(2)

    from_folder = load_clip(f"local:{folder}")
    from_file = load_clip(source_for(tiny_clip))

    assert from_folder.info.model_id == "tiny-clip-folder"
    assert np.allclose(from_folder.embed_images(images), from_file.embed_images(images), atol=1e-6)
    assert np.allclose(from_folder.embed_texts(["a cell"]), from_file.embed_texts(["a cell"]), atol=1e-6)


def test_hf_source_reads_local_cache(tiny_clip, tmp_path, monkeypatch):
    import huggingface_hub.constants

    _, _, model = tiny_clip
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--test-org--tiny-clip"
    save_hub_folder(model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    attempts = block_network(monkeypatch)

    clip = load_clip("hf:test-org/tiny-clip")

    assert clip.info.model_id == "test-org/tiny-clip"
    assert clip.embed_texts(["a cell"]).shape == (1, 16)
    assert attempts == []


def test_hf_source_not_cached(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    attempts = block_network(monkeypatch)

    with pytest.raises(ModelUnavailable) as caught:
        load_clip("hf:test-org/not-cached-clip")

    assert "test-org/not-cached-clip is not in the local Hugging Face cache and downloads are off" in (
        caught.value.reason
    )
    assert attempts == []


def test_load_and_embed_offline(tiny_clip, tmp_path, monkeypatch):
    attempts = block_network(monkeypatch)

    clip = load_clip(source_for(tiny_clip), cache_dir=tmp_path)
    clip.embed_images(sample_images(2))
    clip.embed_texts(["a cell"])

    assert attempts == []


def test_missing_checkpoint(tiny_clip, tmp_path):
    config_path, _, _ = tiny_clip
    missing = tmp_path / "absent.pt"

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{missing}?arch={config_path}")

    assert caught.value.reason == f"the CLIP weights {missing} do not exist."


def test_unknown_arch_name(tiny_clip):
    _, weights_path, _ = tiny_clip

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{weights_path}?arch=ViT-Q-99")

    assert "'ViT-Q-99' is not an open_clip architecture" in caught.value.reason


def test_weights_file_needs_arch(tiny_clip):
    _, weights_path, _ = tiny_clip

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{weights_path}")

    assert "needs ?arch=<open_clip model name>" in caught.value.reason


def test_missing_config_file(tiny_clip, tmp_path):
    _, weights_path, _ = tiny_clip
    config_path = tmp_path / "absent-config.json"

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{weights_path}?arch={config_path}")

    assert f"the model config file {config_path} given as arch does not exist" in caught.value.reason


def test_config_without_model_keys(tiny_clip, tmp_path):
    _, weights_path, _ = tiny_clip
    config_path = tmp_path / "not-a-model.json"
    config_path.write_text(json.dumps({"embed_dim": 16}))

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{weights_path}?arch={config_path}")

    assert "lacks vision_cfg, text_cfg" in caught.value.reason


def test_weights_of_other_arch(tiny_clip, tmp_path):
    _, weights_path, _ = tiny_clip
    wider = {**TINY_CONFIG, "embed_dim": 24}
    config_path = tmp_path / "tiny-clip-wider.json"
    config_path.write_text(json.dumps(wider))

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{weights_path}?arch={config_path}")

    reason = caught.value.reason
    assert "the weights do not fit the architecture 'tiny-clip-wider'" in reason
    assert "size mismatch" in reason


def test_folder_without_weights(tmp_path):
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{folder}")

    assert "no weights file" in caught.value.reason


def test_folder_without_config(tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()

    with pytest.raises(ModelUnavailable) as caught:
        load_clip(f"local:{folder}")

    assert "has no open_clip_config.json" in caught.value.reason


def test_invalid_batch_size(tiny_clip):
    with pytest.raises(ModelUnavailable) as caught:
        load_clip(source_for(tiny_clip, batch_size=0))

    assert "the batch_size option '0' must be a whole number of at least 1" in caught.value.reason
