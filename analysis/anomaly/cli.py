"""``python -m analysis anomaly simulate|fit-scene|run|evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from analysis.progress import ConsoleReporter

logger = logging.getLogger(__name__)


def add_anomaly_parser(commands) -> None:
    from analysis.anomaly.simulate import ANOMALY_KINDS

    parser = commands.add_parser(
        "anomaly", help="Find anomalies in lab videos against a scene fitted on normal videos."
    )
    sub = parser.add_subparsers(dest="anomaly_command", required=True)

    simulate = sub.add_parser(
        "simulate", help="Write synthetic lab videos with known anomalies and their ground truth."
    )
    simulate.add_argument("folder", type=Path, help="Folder for the MP4 and JSON files.")
    simulate.add_argument("--normal", type=int, default=3, help="Number of normal videos (default 3).")
    simulate.add_argument("--per-kind", type=int, default=1, help="Videos per anomaly kind (default 1).")
    simulate.add_argument(
        "--kinds", nargs="+", choices=ANOMALY_KINDS, default=list(ANOMALY_KINDS), help="Anomaly kinds to write."
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--size", default="320x240", help="Frame size WIDTHxHEIGHT in pixels (default 320x240).")
    simulate.add_argument("--fps", type=float, default=15.0, help="Frames per second (default 15).")
    simulate.add_argument("--duration", type=float, default=16.0, help="Seconds per video (default 16).")
    simulate.add_argument(
        "--codec",
        choices=("mpeg4", "libx264"),
        default="mpeg4",
        help="Video codec (default mpeg4, reproducible per seed).",
    )

    fit = sub.add_parser("fit-scene", help="Fit a scene model on normal videos of one camera view.")
    fit.add_argument("videos", nargs="+", type=Path, help="Normal videos of the scene.")
    fit.add_argument("--rules", type=Path, help="JSON file of zones, limits and protocol (see analysis.anomaly.rules).")
    fit.add_argument("--lab-rules", action="store_true", help="Use the zones and protocol of the simulated bench.")
    fit.add_argument(
        "-o", "--output", type=Path, default=Path("scene.json"), help="Scene model file to write (default scene.json)."
    )
    fit.add_argument("--fps", type=float, default=10.0, help="Frames per second analysed (default 10).")
    fit.add_argument(
        "--detector",
        help="YOLO detection model source, such as local:/models/yolo.pt; default: BIOVLM_MODEL_DETECTOR, "
        "else background subtraction.",
    )
    fit.add_argument(
        "--segmenter",
        help="YOLO segmentation model source, used in place of the detector; default: BIOVLM_MODEL_SEGMENTER.",
    )
    fit.add_argument("--max-side", type=int, default=320, help="Longer frame side analysed, in pixels (default 320).")

    run = sub.add_parser("run", help="Score a video against a scene model and print its anomalous segments.")
    run.add_argument("video", type=Path)
    run.add_argument("--scene", type=Path, required=True, help="Scene model from fit-scene.")
    run.add_argument(
        "--json", type=Path, help="Write the full result, with frame scores and track facts, to this file."
    )
    run.add_argument(
        "--threshold", type=float, help="Frame score from 0 to 1 that flags a frame (default: the scene's, 0.5)."
    )
    run.add_argument(
        "--detector",
        help="YOLO detection model source, such as local:/models/yolo.pt; default: BIOVLM_MODEL_DETECTOR, "
        "else background subtraction.",
    )
    run.add_argument(
        "--segmenter",
        help="YOLO segmentation model source, used in place of the detector; default: BIOVLM_MODEL_SEGMENTER.",
    )
    run.add_argument(
        "--vlm",
        help="VLM source for explanations, such as openai:http://127.0.0.1:8000/v1; default: BIOVLM_MODEL_VLM or none.",
    )

    evaluate = sub.add_parser("evaluate", help="Compare results of run --json with true anomalous segments.")
    evaluate.add_argument("results", nargs="+", type=Path, help="Result files written by run --json.")
    truth = evaluate.add_mutually_exclusive_group(required=True)
    truth.add_argument("--truth", type=Path, nargs="+", help="Ground-truth JSON files of the simulator, one per video.")
    truth.add_argument("--annotations", type=Path, help="A JSON annotation file with every video's segments.")
    truth.add_argument("--ucf-crime", type=Path, help="A UCF-Crime temporal annotation file (frame numbers).")
    evaluate.add_argument(
        "--ucf-fps", type=float, help="Frame rate of the UCF-Crime frame numbers (required with --ucf-crime)."
    )
    evaluate.add_argument("--export", type=Path, help="Also write the predicted segments to this JSON annotation file.")
    evaluate.add_argument("--export-ucf", type=Path, help="Also write the predicted segments in the UCF-Crime format.")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise SystemExit(f"--size must look like 320x240, got {text!r}.") from error
    return width, height


def _simulate(args) -> int:
    from analysis.anomaly.simulate import simulate_set

    truths = simulate_set(
        args.folder,
        tuple(args.kinds),
        args.normal,
        args.per_kind,
        args.seed,
        duration_s=args.duration,
        codec=args.codec,
        fps=args.fps,
        size=_parse_size(args.size),
    )
    count = sum(len(items) for items in truths.values())
    print(f"Wrote {count} videos with ground truth to {args.folder}")
    return 0


def _fit(args) -> int:
    from analysis.anomaly.pipeline import fit_scene
    from analysis.anomaly.rules import Rules
    from analysis.anomaly.simulate import lab_rules

    if args.rules and args.lab_rules:
        raise SystemExit("Pass either --rules or --lab-rules, not both.")
    rules = Rules()
    if args.lab_rules:
        rules = lab_rules()
    elif args.rules:
        try:
            rules = Rules.from_dict(json.loads(args.rules.read_text()))
        except (OSError, json.JSONDecodeError, ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{args.rules}: invalid rules file: {error}") from error
    detector, detector_name = _model_detector(args)
    scene = fit_scene(
        args.videos,
        rules,
        fps=args.fps,
        max_side=args.max_side,
        reporter=ConsoleReporter(),
        detector=detector,
        detector_name=detector_name,
    )
    scene.save(args.output)
    print(f"Fitted the scene on {scene.frame_count} frames of {len(args.videos)} video(s); wrote {args.output}")
    return 0


def _model_detector(args):
    """Return (detector, name): the YOLO segmenter or detector the options or environment set, else background subtraction.

    A configured model that fails to load is an error rather than a silent fallback, because
    the user asked for it.
    """
    from analysis.anomaly.detect import ModelDetector
    from analysis.anomaly.pipeline import BACKGROUND_DETECTOR
    from analysis.backends import ModelRegistry
    from analysis.backends.registry import sources_from_environment

    environment = sources_from_environment()
    for role in ("segmenter", "detector"):
        source = getattr(args, role) or environment.get(role)
        if source and source.strip().lower() != "none":
            backend = ModelRegistry({role: source}).get(role)
            return ModelDetector(backend), f"YOLO {backend.info.version}"
    return None, BACKGROUND_DETECTOR


def _registry(args):
    from analysis.backends import ModelRegistry
    from analysis.backends.registry import sources_from_environment

    sources = sources_from_environment()
    if args.vlm:
        sources["vlm"] = args.vlm
    return ModelRegistry(sources)


def _run(args) -> int:
    from analysis.anomaly.pipeline import analyse
    from analysis.anomaly.reason import explain_segments
    from analysis.anomaly.scene import SceneModel
    from analysis.backends import ModelUnavailable

    scene = SceneModel.load(args.scene)
    registry = _registry(args)
    detector, detector_name = _model_detector(args)
    reporter = ConsoleReporter()
    result = analyse(args.video, scene, detector, detector_name, threshold=args.threshold, reporter=reporter)
    vlm = None
    if result.segments and registry.sources_text["vlm"] != "none":
        try:
            vlm = registry.get("vlm")
        except ModelUnavailable as error:
            print(f"Explaining from measured facts: {error}", file=sys.stderr)
    explain_segments(result, scene, vlm, args.video, reporter)

    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=2))
    print(f"{args.video.name}: {len(result.segments)} anomalous segment(s) in {result.duration_s:.1f} s")
    for segment in result.segments:
        explanation = segment.explanation or {}
        print(
            f"  {segment.start_s:6.1f} - {segment.end_s:6.1f} s  score {segment.peak_score:.2f}  {explanation.get('category_label', '')} ({explanation.get('source', '')})"
        )
        for line in str(explanation.get("explanation", "")).splitlines():
            print(f"      {line}")
    return 1 if result.segments else 0


def _read_truth(args) -> list:
    from analysis.anomaly.metrics import VideoAnnotation, read_json_annotations, read_ucf_crime
    from analysis.anomaly.simulate import GroundTruth

    if args.ucf_crime:
        if not args.ucf_fps:
            raise SystemExit("--ucf-crime needs --ucf-fps, the frame rate its frame numbers count in.")
        return read_ucf_crime(args.ucf_crime, args.ucf_fps)
    if args.annotations:
        return read_json_annotations(args.annotations)
    videos = []
    for path in args.truth:
        truth = GroundTruth.from_dict(json.loads(path.read_text()))
        spans = [(item.start_s, item.end_s) for item in truth.anomalies]
        videos.append(
            VideoAnnotation(truth.video, spans, [item.category for item in truth.anomalies], truth.duration_s)
        )
    return videos


def _evaluate(args) -> int:
    import numpy as np

    from analysis.anomaly.metrics import (
        VideoAnnotation,
        average_precision,
        frame_labels,
        roc_auc,
        segment_metrics,
        video_metrics,
        write_json_annotations,
        write_ucf_crime,
    )

    truth = {Path(item.video).name: item for item in _read_truth(args)}
    predicted, labels, scores = [], [], []
    for path in args.results:
        try:
            result = json.loads(path.read_text())
            name = Path(result["video"]).name
            frames = result["frames"]
        except (OSError, json.JSONDecodeError, KeyError) as error:
            raise SystemExit(f"{path}: not a result file of run --json ({error}).") from error
        if name not in truth:
            raise SystemExit(f"{path}: no true segments are given for {name}.")
        spans = [(segment["start_s"], segment["end_s"]) for segment in result["segments"]]
        categories = [(segment.get("explanation") or {}).get("category", "other") for segment in result["segments"]]
        predicted.append(VideoAnnotation(name, spans, categories, result["duration_s"]))
        times = np.array([frame["time_s"] for frame in frames])
        labels.append(frame_labels(times, truth[name].segments))
        scores.append(np.array([frame["score"] for frame in frames]))

    used = [truth[item.video] for item in predicted]
    labels_all, scores_all = np.concatenate(labels), np.concatenate(scores)
    print(f"Videos: {len(predicted)}, frames: {len(labels_all)}, anomalous frames: {int(labels_all.sum())}")
    if labels_all.any() and not labels_all.all():
        print(
            f"Frame ROC-AUC {roc_auc(labels_all, scores_all):.3f}  AP {average_precision(labels_all, scores_all):.3f}"
        )
    per_video = video_metrics(used, predicted)
    print(
        f"Video accuracy {per_video['accuracy']:.3f}  precision {per_video['precision']:.3f}  recall {per_video['recall']:.3f}  F1 {per_video['f1']:.3f}"
    )
    segments = segment_metrics(used, predicted)
    print(
        f"Segments: {segments['true_segments']} true, mIoU {segments['miou']:.3f}  R@0.3 {segments['recall@0.3']:.3f}  R@0.5 {segments['recall@0.5']:.3f}"
    )
    if args.export:
        write_json_annotations(args.export, predicted)
    if args.export_ucf:
        write_ucf_crime(args.export_ucf, predicted, args.ucf_fps or 30.0)
    return 0


def run_anomaly_command(args: argparse.Namespace) -> int:
    from analysis.anomaly.video import VideoError
    from analysis.backends import ModelUnavailable

    handlers = {"simulate": _simulate, "fit-scene": _fit, "run": _run, "evaluate": _evaluate}
    try:
        return handlers[args.anomaly_command](args)
    except (VideoError, ValueError, ModelUnavailable) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
