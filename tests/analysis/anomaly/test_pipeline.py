"""The weight-free path end to end on synthetic lab videos, the scene file, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.__main__ import main
from analysis.anomaly.metrics import frame_labels, roc_auc, temporal_iou
from analysis.anomaly.pipeline import analyse
from analysis.anomaly.reason import MEASURED, explain_segments
from analysis.anomaly.scene import SceneModel
from analysis.anomaly.simulate import ANOMALY_KINDS, KIND_CATEGORIES, GroundTruth


@pytest.fixture(scope="module")
def results(lab_set, lab_scene):
    folder, truths = lab_set
    names = ["normal_02", *(f"{kind}_00" for kind in ANOMALY_KINDS)]
    return {name: analyse(folder / f"{name}.mp4", lab_scene) for name in names}


def test_normal_video_has_no_segment(results):
    assert results["normal_02"].segments == []
    assert results["normal_02"].scores.max() < 0.5


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_anomaly_found_at_true_time(lab_set, results, kind):
    _, truths = lab_set
    truth = truths[kind][0].anomalies[0]

    segments = results[f"{kind}_00"].segments

    best = max((temporal_iou((truth.start_s, truth.end_s), (s.start_s, s.end_s)) for s in segments), default=0.0)
    assert best >= 0.5, [(s.start_s, s.end_s) for s in segments]


def test_frame_auroc_over_set(lab_set, results):
    _, truths = lab_set
    labels, scores = [], []
    for name, result in results.items():
        truth = GroundTruth.from_dict(json.loads((lab_set[0] / f"{name}.json").read_text()))
        labels.append(frame_labels(result.times, [(a.start_s, a.end_s) for a in truth.anomalies]))
        scores.append(result.scores)

    assert roc_auc(np.concatenate(labels), np.concatenate(scores)) >= 0.9


def test_segments_carry_reasons(results):
    segment = results["restricted_zone_00"].segments[0]
    assert "restricted_zone" in {hit["rule"] for hit in segment.rules}
    assert segment.components
    assert segment.track_ids


@pytest.mark.parametrize("kind", ["restricted_zone", "skipped_step", "spill"])
def test_measured_explanation_category(lab_scene, results, kind):
    result = results[f"{kind}_00"]

    explain_segments(result, lab_scene)

    explanation = result.segments[0].explanation
    assert explanation["source"] == MEASURED
    assert explanation["category"] == KIND_CATEGORIES[kind]
    assert 0 <= explanation["start"] <= explanation["end"] <= 1
    assert "Flagged from" in explanation["explanation"]


def test_scene_file_round_trip(tmp_path, lab_set, lab_scene):
    folder, _ = lab_set
    path = tmp_path / "scene.json"
    lab_scene.save(path)

    loaded = SceneModel.load(path)
    first = analyse(folder / "spill_00.mp4", lab_scene)
    second = analyse(folder / "spill_00.mp4", loaded)

    # The file stores the maps rounded to 5 decimals, so scores may move in the 4th decimal.
    np.testing.assert_allclose(first.scores, second.scores, atol=1e-3)
    assert loaded.rules == lab_scene.rules


def test_scene_file_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"format": "something else"}')

    with pytest.raises(ValueError, match=r"other\.json is not a scene model file"):
        SceneModel.load(path)


def test_command_line_fit_and_run(tmp_path, lab_set, capsys):
    folder, _ = lab_set
    scene = tmp_path / "scene.json"
    output = tmp_path / "result.json"

    assert (
        main(
            [
                "anomaly",
                "fit-scene",
                str(folder / "normal_00.mp4"),
                str(folder / "normal_01.mp4"),
                "--lab-rules",
                "--max-side",
                "160",
                "-o",
                str(scene),
            ]
        )
        == 0
    )
    code = main(
        ["anomaly", "run", str(folder / "restricted_zone_00.mp4"), "--scene", str(scene), "--json", str(output)]
    )

    printed = capsys.readouterr().out
    assert code == 1
    assert "entry into a restricted zone (measured facts)" in printed
    data = json.loads(output.read_text())
    assert data["anomalous"] is True
    assert data["segments"][0]["explanation"]["category"] == "restricted_zone"
    assert len(data["frames"]) == 140
    assert data["frames"][0]["appeared"] == [data["frames"][0]["tracks"][0]["track_id"]]


def test_command_line_reports_broken_video(tmp_path, lab_scene, capsys):
    scene = tmp_path / "scene.json"
    lab_scene.save(scene)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)

    code = main(["anomaly", "run", str(broken), "--scene", str(scene)])

    assert code == 2
    assert "broken.mp4" in capsys.readouterr().err


def test_command_line_simulate(tmp_path, capsys):
    code = main(
        [
            "anomaly",
            "simulate",
            str(tmp_path),
            "--normal",
            "1",
            "--kinds",
            "spill",
            "--size",
            "96x64",
            "--duration",
            "3",
            "--fps",
            "5",
        ]
    )

    assert code == 0
    truth = json.loads((tmp_path / "spill_00.json").read_text())
    assert truth["width"] == 96
    assert (tmp_path / "normal_00.mp4").stat().st_size > 0


def test_command_line_evaluate(tmp_path, lab_set, lab_scene, capsys):
    folder, _ = lab_set
    scene = tmp_path / "scene.json"
    lab_scene.save(scene)
    results = []
    for name in ("normal_02", "spill_00"):
        results.append(tmp_path / f"{name}.result.json")
        main(["anomaly", "run", str(folder / f"{name}.mp4"), "--scene", str(scene), "--json", str(results[-1])])
    capsys.readouterr()
    exported = tmp_path / "predicted.json"

    truth_files = [str(folder / "normal_02.json"), str(folder / "spill_00.json")]
    code = main(["anomaly", "evaluate", *map(str, results), "--truth", *truth_files, "--export", str(exported)])

    printed = capsys.readouterr().out
    assert code == 0
    assert "Video accuracy 1.000" in printed
    assert "Segments: 1 true" in printed
    videos = {video["video"]: video for video in json.loads(exported.read_text())["videos"]}
    assert videos["normal_02.mp4"]["segments"] == []
    assert videos["spill_00.mp4"]["segments"][0]["category"] == "spill"


def test_observe_without_scene_background(lab_set):
    from analysis.anomaly.pipeline import observe
    from analysis.anomaly.simulate import lab_rules

    folder, truths = lab_set
    truth = truths["restricted_zone"][0].anomalies[0]

    observation = observe(folder / "restricted_zone_00.mp4", lab_rules(), fps=10, max_side=160)

    hits = [hit for hit in observation.hits if hit.rule == "restricted_zone"]
    assert hits
    assert min(hit.start_s for hit in hits) >= truth.start_s
    assert max(hit.end_s for hit in hits) <= truth.end_s + 0.2
