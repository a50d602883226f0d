"""Lab video anomaly detection: decode, detect, track, score against a fitted scene, explain, measure.

The weight-free path needs no model files: background subtraction finds objects, ByteTrack
follows them, a scene model fitted on normal videos and user rules score each frame, and
explanations are built from the measured facts. A YOLO detector and a vision-language model
from ``analysis.backends`` are used when configured.
"""

from analysis.anomaly.pipeline import AnalysisResult, Segment, analyse, fit_scene, observe
from analysis.anomaly.rules import Rules, Step, Zone
from analysis.anomaly.scene import SceneModel
from analysis.anomaly.video import VideoError, read_frames

__all__ = [
    "AnalysisResult",
    "Rules",
    "SceneModel",
    "Segment",
    "Step",
    "VideoError",
    "Zone",
    "analyse",
    "fit_scene",
    "observe",
    "read_frames",
]
