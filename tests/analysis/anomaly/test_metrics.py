"""Metrics against examples worked by hand, and the annotation formats."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.anomaly.metrics import (
    VideoAnnotation,
    average_precision,
    frame_labels,
    read_json_annotations,
    read_ucf_crime,
    roc_auc,
    segment_metrics,
    temporal_iou,
    video_metrics,
    write_json_annotations,
    write_ucf_crime,
)


def test_roc_auc_hand_worked():
    # Positive scores 0.35, 0.8; negatives 0.1, 0.4. Pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_ties_count_half():
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([0, 0, 1], [0.2, 0.7, 0.7]) == pytest.approx(0.75)


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="both anomalous and normal"):
        roc_auc([1, 1], [0.2, 0.3])


def test_average_precision_hand_worked():
    # Ranked: 0.8 (pos) P=1 R=0.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1. AP = 0.5*1 + 0.5*2/3.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 1 / 3)


def test_average_precision_with_ties():
    # All tied: one threshold with precision 2/4 at recall 1.
    assert average_precision([0, 1, 0, 1], [0.5] * 4) == pytest.approx(0.5)


def test_temporal_iou():
    assert temporal_iou((0, 2), (1, 3)) == pytest.approx(1 / 3)
    assert temporal_iou((0, 1), (2, 3)) == 0.0
    assert temporal_iou((1, 4), (1, 4)) == 1.0
    assert temporal_iou((0, 4), (1, 2)) == pytest.approx(0.25)


def test_frame_labels_half_open():
    labels = frame_labels([0.0, 0.5, 1.0, 1.5, 2.0], [(0.5, 1.5)])
    assert labels.tolist() == [False, True, True, False, False]


def test_segment_metrics_hand_worked():
    truth = [VideoAnnotation("a", [(0, 2), (10, 12)]), VideoAnnotation("b", [(5, 9)])]
    predicted = [VideoAnnotation("a", [(1, 3), (10, 12)]), VideoAnnotation("b", [])]

    result = segment_metrics(truth, predicted)

    # Best IoUs: 1/3, 1, 0.
    assert result["miou"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert result["recall@0.3"] == pytest.approx(2 / 3)
    assert result["recall@0.5"] == pytest.approx(1 / 3)


def test_video_metrics_hand_worked():
    truth = [VideoAnnotation("a", [(0, 1)]), VideoAnnotation("b", [(0, 1)]), VideoAnnotation("c"), VideoAnnotation("d")]
    predicted = [VideoAnnotation("a", [(0, 1)]), VideoAnnotation("c", [(3, 4)])]

    result = video_metrics(truth, predicted)

    assert (result["tp"], result["fp"], result["fn"], result["tn"]) == (1, 1, 1, 1)
    assert result["accuracy"] == 0.5
    assert result["precision"] == 0.5
    assert result["recall"] == 0.5
    assert result["f1"] == 0.5


def test_ucf_crime_round_trip(tmp_path):
    path = tmp_path / "Temporal_Anomaly_Annotation.txt"
    path.write_text(
        "Arson011_x264.mp4  Arson  150  420  680  1267\nNormal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
    )

    videos = read_ucf_crime(path, fps=30)

    assert videos[0].segments == [(5.0, 421 / 30), (680 / 30, 1268 / 30)]
    assert videos[0].categories == ["Arson", "Arson"]
    assert videos[1].segments == []
    out = tmp_path / "out.txt"
    write_ucf_crime(out, videos, fps=30)
    assert out.read_text().split() == path.read_text().split()


def test_ucf_crime_rejects_bad_lines(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("video.mp4 Arson 10 20\n")

    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 6 fields"):
        read_ucf_crime(path, fps=30)


def test_json_round_trip(tmp_path):
    videos = [VideoAnnotation("a.mp4", [(1.0, 2.5)], ["spill"], 10.0), VideoAnnotation("b.mp4", [], [], 8.0)]
    path = tmp_path / "annotations.json"

    write_json_annotations(path, videos)

    assert read_json_annotations(path) == videos


def test_segment_metrics_without_truth_is_nan():
    result = segment_metrics([VideoAnnotation("a")], [VideoAnnotation("a", [(0, 1)])])
    assert result["true_segments"] == 0
    assert math.isnan(result["miou"])


def test_perfect_scores():
    labels = np.array([0, 0, 1, 1, 0])
    assert roc_auc(labels, labels.astype(float)) == 1.0
    assert average_precision(labels, labels.astype(float)) == 1.0
