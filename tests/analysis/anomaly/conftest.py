"""Synthetic lab videos shared by the anomaly tests: 160x120 pixels, 10 frames per second."""

from __future__ import annotations

import pytest

from analysis.anomaly.pipeline import fit_scene
from analysis.anomaly.simulate import ANOMALY_KINDS, lab_rules, simulate_set

SIZE = (160, 120)
FPS = 10.0
DURATION_S = 14.0


@pytest.fixture(scope="session")
def lab_set(tmp_path_factory):
    """Write 3 normal videos and one of each anomaly kind; return {kind: [GroundTruth]} and the folder."""
    folder = tmp_path_factory.mktemp("lab")
    truths = simulate_set(
        folder, ANOMALY_KINDS, normal=3, per_kind=1, seed=0, duration_s=DURATION_S, fps=FPS, size=SIZE
    )
    return folder, truths


@pytest.fixture(scope="session")
def lab_scene(lab_set):
    """A scene model fitted on the first two normal videos; the third stays unseen for testing."""
    folder, _ = lab_set
    return fit_scene([folder / "normal_00.mp4", folder / "normal_01.mp4"], lab_rules(), fps=FPS, max_side=160)
