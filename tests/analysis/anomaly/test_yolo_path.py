"""The YOLO detector path: a tiny two-class YOLOv8n built from its yaml config, no downloads."""

from __future__ import annotations

import json

import pytest

from analysis.__main__ import main
from analysis.anomaly.detect import ModelDetector
from analysis.anomaly.pipeline import analyse
from analysis.anomaly.simulate import simulate_video
from analysis.backends import ModelRegistry
from tests.analysis.backends.network_guard import block_network
from tests.analysis.backends.test_yolo import CLASS_NAMES, build_yolo


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    attempts = block_network(monkeypatch)
    yield
    assert attempts == []


@pytest.fixture(scope="module")
def hot_yolo(tmp_path_factory):
    # The "hot" model scores every anchor about 0.98, so random weights still give boxes.
    return build_yolo(tmp_path_factory.mktemp("yolo"), "detect", hot=True)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "short.mp4"
    simulate_video(path, None, seed=5, duration_s=3.0, fps=10, size=(160, 120))
    return path


def test_analyse_with_yolo_detector(hot_yolo, short_clip, lab_scene):
    backend = ModelRegistry({"detector": f"local:{hot_yolo}?imgsz=128"}, device="cpu").get("detector")

    result = analyse(short_clip, lab_scene, ModelDetector(backend, confidence=0.5), "YOLO tiny")

    names = {fact.class_name for frame in result.frames for fact in frame.tracks}
    assert result.detector == "YOLO tiny"
    assert len(result.frames) == 30
    assert names and names <= set(CLASS_NAMES.values())
    assert all(0.0 <= score <= 1.0 for score in result.scores)


def test_class_filter_drops_other_classes(hot_yolo, short_clip, lab_scene):
    backend = ModelRegistry({"detector": f"local:{hot_yolo}?imgsz=128"}, device="cpu").get("detector")

    result = analyse(short_clip, lab_scene, ModelDetector(backend, confidence=0.5, classes=["tube"]))

    names = {fact.class_name for frame in result.frames for fact in frame.tracks}
    assert names <= {"tube"}


def test_command_line_detector_option(tmp_path, hot_yolo, short_clip, lab_scene, capsys):
    scene = tmp_path / "scene.json"
    lab_scene.save(scene)
    output = tmp_path / "result.json"

    code = main(
        [
            "anomaly",
            "run",
            str(short_clip),
            "--scene",
            str(scene),
            "--detector",
            f"local:{hot_yolo}?imgsz=128",
            "--json",
            str(output),
        ]
    )

    assert code in (0, 1)
    assert "short.mp4" in capsys.readouterr().out
    assert json.loads(output.read_text())["detector"].startswith("YOLO detect-hot.pt@")


def test_command_line_missing_detector_file(tmp_path, lab_set, lab_scene, capsys):
    folder, _ = lab_set
    scene = tmp_path / "scene.json"
    lab_scene.save(scene)

    code = main(
        [
            "anomaly",
            "run",
            str(folder / "normal_02.mp4"),
            "--scene",
            str(scene),
            "--detector",
            f"local:{tmp_path}/absent.pt",
        ]
    )

    assert code == 2
    assert "absent.pt does not exist" in capsys.readouterr().err


def test_scene_fitted_with_yolo(tmp_path, hot_yolo, short_clip, capsys):
    scene = tmp_path / "scene.json"
    source = f"local:{hot_yolo}?imgsz=128"

    code = main(["anomaly", "fit-scene", str(short_clip), "--detector", source, "--max-side", "160", "-o", str(scene)])

    assert code == 0
    fitted = json.loads(scene.read_text())
    assert fitted["detector"].startswith("YOLO detect-hot.pt@")
    assert fitted["quantiles"]["track_count"]["max"] > 0


def test_segmenter_masks_give_areas(tmp_path, short_clip, lab_scene):
    segmenter = build_yolo(tmp_path, "segment", hot=True)
    backend = ModelRegistry({"segmenter": f"local:{segmenter}?imgsz=128"}, device="cpu").get("segmenter")

    result = analyse(short_clip, lab_scene, ModelDetector(backend, confidence=0.5), "YOLO segmenter", max_seconds=1.0)

    facts = [fact for frame in result.frames for fact in frame.tracks]
    assert facts
    # Mask areas differ from box areas, which a box-only path would report.
    assert any(abs(fact.area - fact.width * fact.height) > 1e-3 for fact in facts)


def test_detector_from_environment(tmp_path, hot_yolo, short_clip, lab_scene, monkeypatch):
    scene = tmp_path / "scene.json"
    lab_scene.save(scene)
    output = tmp_path / "result.json"
    monkeypatch.setenv("BIOVLM_MODEL_DETECTOR", f"local:{hot_yolo}?imgsz=128")

    main(["anomaly", "run", str(short_clip), "--scene", str(scene), "--json", str(output)])

    assert json.loads(output.read_text())["detector"].startswith("YOLO detect-hot.pt@")
