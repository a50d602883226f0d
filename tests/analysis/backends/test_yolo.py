"""The ultralytics backend on YOLOv8n detection and segmentation models with random weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from analysis.backends import ModelRegistry, ModelUnavailable
from analysis.backends.roles import Detections, Detector
from analysis.backends.yolo import import_ultralytics
from tests.analysis.backends.network_guard import block_network

REPO_ROOT = Path(__file__).resolve().parents[3]
CLASS_NAMES = {0: "pipette", 1: "tube"}
IMGSZ = 128


def build_yolo(folder: Path, task: str, hot: bool) -> Path:
    """Save a two-class YOLOv8n model with random weights as ``.pt`` and return its path.

    ``hot`` sets the bias of every classification output to 4, so each anchor scores about
    0.98 (the sigmoid of 4) and the model returns many boxes. Without it, random weights
    usually find nothing.
    """
    import torch

    # import_ultralytics sets the offline environment, so it must come before any other
    # ultralytics import.
    YOLO = import_ultralytics()
    from ultralytics.utils import ROOT, YAML

    base = "yolov8-seg.yaml" if task == "segment" else "yolov8.yaml"
    config = YAML.load(ROOT / "cfg" / "models" / "v8" / base)
    config.update(nc=len(CLASS_NAMES), scale="n")
    yaml_path = folder / f"tiny-{task}.yaml"
    YAML.save(yaml_path, config)

    torch.manual_seed(0)
    model = YOLO(str(yaml_path), verbose=False)
    model.model.names = dict(CLASS_NAMES)
    if hot:
        for branch in model.model.model[-1].cv3:
            torch.nn.init.constant_(branch[-1].bias, 4.0)
    path = folder / f"{task}{'-hot' if hot else ''}.pt"
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def yolo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolo")
    return {(task, hot): build_yolo(folder, task, hot) for task in ("detect", "segment") for hot in (False, True)}


def load(role: str, path, options: str = f"imgsz={IMGSZ}"):
    return ModelRegistry({role: f"local:{path}?{options}"}, device="cpu").get(role)


def make_frames(shapes=((96, 128), (120, 90))) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for height, width in shapes]


def check_types(detections: Detections) -> None:
    count = len(detections.boxes)
    assert detections.boxes.shape == (count, 4)
    assert detections.boxes.dtype == np.float32
    assert detections.scores.shape == (count,)
    assert detections.scores.dtype == np.float32
    assert detections.class_ids.shape == (count,)
    assert detections.class_ids.dtype == np.int64
    assert len(detections.class_names) == count


def test_detector_random_weights(yolo_files):
    detector = load("detector", yolo_files[("detect", False)])

    results = detector.detect(make_frames())

    assert isinstance(detector, Detector)
    assert len(results) == 2
    for detections in results:
        assert isinstance(detections, Detections)
        check_types(detections)
        assert detections.masks is None


def test_detector_boxes_and_names(yolo_files):
    detector = load("detector", yolo_files[("detect", True)])
    frames = make_frames()

    results = detector.detect(frames, confidence=0.5)

    for frame, detections in zip(frames, results, strict=True):
        check_types(detections)
        height, width = frame.shape[:2]
        assert len(detections.boxes) > 0
        assert set(detections.class_names) <= {"pipette", "tube"}
        assert detections.class_names == [CLASS_NAMES[int(i)] for i in detections.class_ids]
        assert (detections.scores >= 0.5).all()
        assert (detections.boxes[:, [0, 2]] >= 0).all()
        assert (detections.boxes[:, [0, 2]] <= width).all()
        assert (detections.boxes[:, [1, 3]] <= height).all()
        assert (detections.boxes[:, 2] >= detections.boxes[:, 0]).all()


def test_detector_reads_rgb_frames(yolo_files):
    detector = load("detector", yolo_files[("detect", True)])
    frame = make_frames(((96, 128),))[0]

    ours = detector.detect([frame], confidence=0.5)[0]
    # ultralytics takes NumPy images as BGR, so the backend must flip the channels of RGB frames.
    direct = detector.model.predict(
        [np.ascontiguousarray(frame[:, :, ::-1])], conf=0.5, imgsz=IMGSZ, device="cpu", verbose=False
    )[0]

    assert np.array_equal(ours.boxes, direct.boxes.xyxy.numpy())
    assert np.array_equal(ours.scores, direct.boxes.conf.numpy())


def test_segmenter_masks_at_frame_size(yolo_files):
    segmenter = load("segmenter", yolo_files[("segment", True)])
    frames = make_frames()

    results = segmenter.detect(frames, confidence=0.5)

    for frame, detections in zip(frames, results, strict=True):
        check_types(detections)
        count = len(detections.boxes)
        assert count > 0
        assert detections.masks.shape == (count, *frame.shape[:2])
        assert detections.masks.dtype == bool
        assert detections.masks.any()


def test_segmenter_without_detections(yolo_files):
    segmenter = load("segmenter", yolo_files[("segment", False)])

    results = segmenter.detect(make_frames(((64, 80),)), confidence=0.99)

    detections = results[0]
    assert len(detections.boxes) == 0
    assert detections.masks.shape == (0, 64, 80)
    assert detections.masks.dtype == bool


def test_batches_split_frames(yolo_files):
    frames = make_frames(((64, 64),) * 5)

    whole = load("detector", yolo_files[("detect", True)]).detect(frames, confidence=0.5)
    split = load("detector", yolo_files[("detect", True)], f"imgsz={IMGSZ}&batch_size=2").detect(frames, 0.5)

    assert len(split) == 5
    for a, b in zip(whole, split, strict=True):
        assert np.allclose(a.boxes, b.boxes, atol=1e-3)


def test_no_frames(yolo_files):
    assert load("detector", yolo_files[("detect", False)]).detect([]) == []


def test_invalid_frame(yolo_files):
    detector = load("detector", yolo_files[("detect", False)])

    with pytest.raises(ValueError, match=r"Frame 1 must be an RGB uint8 array \(height, width, 3\), got \(8, 8\)"):
        detector.detect([make_frames(((8, 8),))[0], np.zeros((8, 8), dtype=np.uint8)])
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        detector.detect(make_frames(((8, 8),)), confidence=25)


def test_model_info(yolo_files):
    path = yolo_files[("segment", False)]

    info = load("segmenter", path).info

    assert info.role == "segmenter"
    assert info.backend == "ultralytics"
    assert info.model_id == "segment.pt"
    assert len(info.weights_sha256) == 64
    assert info.device == "cpu"
    assert info.dtype == "float32"
    assert info.parameters > 1_000_000
    assert info.details["task"] == "segment"
    assert info.details["classes"] == 2
    assert info.details["imgsz"] == IMGSZ


@pytest.mark.parametrize(
    ("role", "task", "found"), [("detector", "segment", "'segment'"), ("segmenter", "detect", "'detect'")]
)
def test_wrong_task(yolo_files, role, task, found):
    with pytest.raises(ModelUnavailable) as caught:
        load(role, yolo_files[(task, False)])

    reason = caught.value.reason
    assert f"is a YOLO model for task {found}" in reason
    assert f"the {role} role needs" in reason


def test_missing_file_not_downloaded(tmp_path, monkeypatch):
    attempts = block_network(monkeypatch)
    # A released model's name, which ultralytics would try to download if asked to load it.
    path = tmp_path / "yolov8n.pt"

    with pytest.raises(ModelUnavailable) as caught:
        load("detector", path)

    assert caught.value.reason == f"the YOLO weights file {path} does not exist."
    assert attempts == []
    assert not path.exists()


def test_not_a_pt_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx")

    with pytest.raises(ModelUnavailable) as caught:
        load("detector", path)

    assert "is not a .pt file" in caught.value.reason


def test_corrupt_pt_file(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")

    with pytest.raises(ModelUnavailable) as caught:
        load("detector", path)

    assert f"ultralytics cannot load {path}" in caught.value.reason


def test_invalid_imgsz_option(yolo_files):
    with pytest.raises(ModelUnavailable) as caught:
        load("detector", yolo_files[("detect", False)], "imgsz=large")

    assert "the imgsz option 'large' must be a whole number of at least 1" in caught.value.reason


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import pytest
    from tests.analysis.backends.network_guard import block_network

    # Block the network before ultralytics is imported, because it checks for internet
    # access at import time unless YOLO_OFFLINE is set.
    attempts = block_network(pytest.MonkeyPatch())
    from pathlib import Path
    import numpy as np
    from analysis.backends import ModelRegistry
    from tests.analysis.backends.test_yolo import build_yolo, make_frames

    folder = Path(sys.argv[1])
    sources = {
        "detector": f"local:{build_yolo(folder, 'detect', True)}?imgsz=64",
        "segmenter": f"local:{build_yolo(folder, 'segment', True)}?imgsz=64",
    }
    registry = ModelRegistry(sources, device="cpu")
    counts = [len(registry.get(role).detect(make_frames(), 0.5)[0].boxes) for role in sources]
    print(json.dumps({"attempts": attempts, "counts": counts}))
    """
)


def test_build_load_predict_offline(tmp_path):
    """Build, save, load and run both models in a fresh process whose network access is blocked."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("YOLO_", "ULTRALYTICS_"))}
    environment["YOLO_CONFIG_DIR"] = str(tmp_path / "config")
    completed = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert all(count > 0 for count in report["counts"])


@pytest.mark.parametrize(
    "importer",
    [
        "from analysis.backends.yolo import import_ultralytics; import_ultralytics()",
        "from analysis.anomaly.track import Tracker; Tracker(fps=10)",
    ],
)
def test_ultralytics_import_keeps_pillow_open(importer):
    # A fresh process, because the first import of ultralytics is the one that patches Pillow.
    code = (
        f"{importer}\n"
        "import io\n"
        "from PIL import Image, UnidentifiedImageError\n"
        "try:\n"
        "    Image.open(io.BytesIO(b'Plate 3 was imaged on Tuesday.'))\n"
        "except UnidentifiedImageError:\n"
        "    print('unidentified')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "unidentified"
