"""Biovlm checkpoints: save, load through the registry, and each way a file can be wrong."""

from __future__ import annotations

import pytest
import torch

from analysis.backends import ModelRegistry, ModelUnavailable
from analysis.backends.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    register_architecture,
    registered_architectures,
    save_checkpoint,
)
from analysis.backends.roles import CheckpointModel
from tests.analysis.backends.network_guard import block_network

CLASS_NAMES = ["ribosome", "proteasome", "background"]


class TinyClassifier(torch.nn.Module):
    """A two-layer MLP over a flattened cube, standing in for APT-ViT."""

    def __init__(self, side: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(side**3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes)
        )
        self.register_buffer("mean", torch.zeros(1))

    def forward(self, volumes: torch.Tensor) -> torch.Tensor:
        return self.net(volumes - self.mean)


@register_architecture("tiny-classifier-test")
def build_tiny_classifier(config: dict) -> torch.nn.Module:
    return TinyClassifier(config["side"], config["hidden"], config["classes"])


CONFIG = {"side": 4, "hidden": 8, "classes": 3}


@pytest.fixture
def trained(tmp_path):
    """Save a tiny classifier with seeded random weights as a checkpoint and return (module, path)."""
    torch.manual_seed(0)
    module = TinyClassifier(**CONFIG)
    module.mean.fill_(0.25)
    path = save_checkpoint(
        tmp_path / "tiny.pt", "tiny-classifier-test", module, CONFIG, CLASS_NAMES, {"accuracy": 0.75, "epochs": 2}
    )
    return module, path


def load_through_registry(path):
    return ModelRegistry({"aptvit": f"local:{path}"}, device="cpu").get("aptvit")


def test_round_trip_same_outputs(trained, monkeypatch):
    module, path = trained
    attempts = block_network(monkeypatch)
    volumes = torch.randn(5, 4, 4, 4)

    model = load_through_registry(path)

    assert isinstance(model, CheckpointModel)
    assert model.config == CONFIG
    assert model.class_names == CLASS_NAMES
    assert model.metrics == {"accuracy": 0.75, "epochs": 2}
    assert model.module.training is False
    assert float(model.module.mean) == 0.25
    with torch.no_grad():
        assert torch.equal(model.module(volumes), module.eval()(volumes))
    assert attempts == []


def test_model_info(trained):
    _, path = trained

    info = load_through_registry(path).info

    assert info.role == "aptvit"
    assert info.backend == "torch-checkpoint"
    assert info.model_id == "tiny-classifier-test:tiny.pt"
    assert len(info.weights_sha256) == 64
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.parameters == 4**3 * 8 + 8 + 8 * 3 + 3
    assert info.details["architecture"] == "tiny-classifier-test"
    assert info.details["classes"] == 3


def test_saved_file_is_plain_data(trained):
    _, path = trained

    payload = torch.load(path, weights_only=True)

    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["version"] == 1
    assert set(payload) == {"format", "version", "architecture", "config", "class_names", "state_dict", "metrics"}
    assert not path.with_name("tiny.pt.partial").exists()


def test_save_rejects_non_json_config(tmp_path):
    with pytest.raises(ValueError, match="config must be JSON data"):
        save_checkpoint(tmp_path / "bad.pt", "tiny-classifier-test", TinyClassifier(**CONFIG), {"x": object()}, [])

    assert not (tmp_path / "bad.pt").exists()


def test_missing_file(tmp_path):
    path = tmp_path / "absent.pt"

    with pytest.raises(ModelUnavailable) as caught:
        load_through_registry(path)

    assert caught.value.reason == f"the checkpoint file {path} does not exist."


def test_not_a_biovlm_checkpoint(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, path)

    with pytest.raises(ModelUnavailable) as caught:
        load_through_registry(path)

    assert "is not a biovlm checkpoint" in caught.value.reason
    assert str(path) in caught.value.reason


def test_pickled_module_is_not_loaded(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(TinyClassifier(**CONFIG), path)

    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)

    message = str(caught.value)
    assert (
        "contains Python objects (tests.analysis.backends.test_checkpoint.TinyClassifier) other than tensors and plain data"
        in message
    )
    assert "not unpickled" in message


def test_text_file_is_not_torch(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")

    with pytest.raises(ModelUnavailable) as caught:
        load_through_registry(path)

    assert "is not a torch checkpoint: it is not a zip archive" in caught.value.reason


def test_truncated_file(trained):
    _, path = trained
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)

    assert str(path) in str(caught.value)


def test_newer_version_rejected(trained):
    _, path = trained
    payload = torch.load(path, weights_only=True)
    payload["version"] = 2
    torch.save(payload, path)

    with pytest.raises(CheckpointError, match="has checkpoint version 2, but this code reads version 1 only"):
        load_checkpoint(path)


def test_unknown_architecture_lists_registered(tmp_path):
    path = save_checkpoint(tmp_path / "other.pt", "no-such-net", TinyClassifier(**CONFIG), CONFIG, CLASS_NAMES)

    with pytest.raises(ModelUnavailable) as caught:
        load_through_registry(path)

    reason = caught.value.reason
    assert "'no-such-net', which is not registered" in reason
    assert "tiny-classifier-test" in reason
    assert "tiny-classifier-test" in registered_architectures()


def test_state_dict_mismatch_names_keys(tmp_path):
    torch.manual_seed(0)
    module = TinyClassifier(**CONFIG)
    path = save_checkpoint(tmp_path / "renamed.pt", "tiny-classifier-test", module, CONFIG, CLASS_NAMES)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["extra.weight"] = payload["state_dict"].pop("net.3.weight")
    torch.save(payload, path)

    with pytest.raises(ModelUnavailable) as caught:
        load_through_registry(path)

    reason = caught.value.reason
    assert "missing keys: net.3.weight" in reason
    assert "unexpected keys: extra.weight" in reason


def test_config_shape_mismatch_named(tmp_path):
    module = TinyClassifier(**CONFIG)
    wrong_config = {**CONFIG, "hidden": 16}
    path = save_checkpoint(tmp_path / "shape.pt", "tiny-classifier-test", module, wrong_config, CLASS_NAMES)

    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)

    message = str(caught.value)
    assert "shape mismatches" in message
    assert "net.1.weight (8, 64) vs (16, 64)" in message


def test_builder_error_is_reported(tmp_path):
    path = save_checkpoint(
        tmp_path / "noconfig.pt", "tiny-classifier-test", TinyClassifier(**CONFIG), {"side": 4}, CLASS_NAMES
    )

    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)

    assert "building the 'tiny-classifier-test' architecture" in str(caught.value)
    assert "KeyError" in str(caught.value)


def test_dtype_from_context(trained):
    _, path = trained

    model = load_checkpoint(path, dtype=torch.bfloat16)

    assert next(model.module.parameters()).dtype == torch.bfloat16
    assert model.info.dtype == "bfloat16"
