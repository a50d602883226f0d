"""The ``python -m analysis cryoet`` commands: simulate, pick, classify, run, query, evaluate, train.

Positions are x, y, z in angstroms (Å) throughout. Particle files are read with
``read_particles`` and written by suffix: ``.json`` copick, ``.star`` RELION 4 (pixels),
``.csv`` (angstroms). STAR files store class numbers 1 to 6 in ``CLASS_NAMES`` order and 0 for
any other label, background included, so use ``.csv`` or ``.json`` to keep that label. Spatial maps are ``.npz`` files. Errors a user can cause print one line
on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from analysis.cryoet.classes import CLASS_NAMES, DEFAULT_VOXEL_SIZE
from analysis.cryoet.io import (
    MrcError,
    ParticleFormatError,
    ParticleList,
    read_particles,
    read_volume,
    write_copick,
    write_csv,
    write_relion_star,
)
from analysis.cryoet.pick import pick
from analysis.cryoet.pipeline import (
    DEFAULT_CHECKPOINT,
    DEFAULT_MIN_PROBABILITY,
    DEFAULT_SCORE_THRESHOLD,
    PICKERS,
    evaluate,
    run_pipeline,
    simulator_template,
)
from analysis.cryoet.query import TOOLS, QueryError, run_tool
from analysis.cryoet.questions import plan_question
from analysis.cryoet.simulate import DEFAULT_SHAPE, simulate_tomogram, write_simulation
from analysis.cryoet.spatial import SpatialMap
from analysis.progress import ConsoleReporter

PARTICLE_SUFFIXES = (".json", ".star", ".csv")
# Errors that bad input causes, each printed as one line on stderr with exit status 2.
USER_ERRORS = (OSError, ValueError, KeyError, MrcError, ParticleFormatError, QueryError)


class UsageError(Exception):
    """A bad value on the command line, reported as one line with exit status 2."""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected a positive number")
    return value


def _particle_output(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() not in PARTICLE_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"unsupported particle file suffix {path.suffix!r} in {text}; use .json (copick), .star or .csv"
        )
    return path


def _map_output(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".npz":
        raise argparse.ArgumentTypeError(f"invalid map file {text}; spatial maps are written as .npz")
    return path


def _read_volume(path: Path, voxel_size: float | None) -> tuple[np.ndarray, float]:
    if not path.is_file():
        raise UsageError(f"Tomogram not found: {path}. Pass the path of an .mrc file.")
    volume = read_volume(path)
    for warning in volume.warnings:
        print(f"warning: {path}: {warning}", file=sys.stderr)
    if voxel_size is None:
        if volume.voxel_size is None:
            raise UsageError(f"{path} gives no voxel size in its header; pass --voxel-size in Å.")
        voxel_size = float(volume.voxel_size[0])
    return volume.data, voxel_size


def _read_particle_file(path: Path, voxel_size: float | None = None) -> ParticleList:
    if not path.exists():
        raise UsageError(f"Particle file not found: {path}.")
    return read_particles(path, voxel_size=voxel_size)


def _write_particles(path: Path, particles: ParticleList, voxel_size: float) -> Path:
    """Write the particles to ``path``; copick files contain one class each.

    For a .json path with several classes, each class goes to ``<stem>_<class>.json`` beside it,
    and the returned path names the pattern.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        names = sorted(set(particles.class_names.astype(str)))
        if len(names) <= 1:
            return write_copick(path, particles)
        for name in names:
            write_copick(path.with_name(f"{path.stem}_{name}.json"), particles.select(particles.class_names == name))
        return path.with_name(f"{path.stem}_<class>.json")
    if suffix == ".star":
        return write_relion_star(path, particles, voxel_size)
    return write_csv(path, particles)


def _print_json(document) -> None:
    json.dump(document, sys.stdout, indent=2)
    print()


# ---------------------------------------------------------------- commands


def command_simulate(args: argparse.Namespace) -> int:
    reporter = ConsoleReporter()
    reporter.report("simulate", 0.0, f"shape {tuple(args.shape)} at {args.voxel_size} Å per voxel")
    volume, particles = simulate_tomogram(tuple(args.shape), args.voxel_size, snr=args.snr, seed=args.seed)
    volume_path, pick_paths = write_simulation(args.output, volume, particles, args.voxel_size)
    reporter.report("simulate", 1.0, f"{len(particles)} particles")
    _print_json(
        {"tomogram": str(volume_path), "picks": [str(path) for path in pick_paths], "particles": len(particles)}
    )
    return 0


def _template_options(args: argparse.Namespace, voxel_size: float) -> dict:
    if args.method != "template":
        return {}
    if args.template_class is None:
        raise UsageError("--method template needs --template-class, one of: " + ", ".join(CLASS_NAMES))
    return {"template": simulator_template(args.template_class, voxel_size)}


def command_pick(args: argparse.Namespace) -> int:
    data, voxel_size = _read_volume(args.tomogram, args.voxel_size)
    classes = [args.template_class] if args.method == "template" else None
    picks = pick(
        data,
        voxel_size,
        classes,
        method=args.method,
        reporter=ConsoleReporter(),
        min_score=args.min_score,
        **_template_options(args, voxel_size),
    )
    names = picks.class_names or [""] * len(picks)
    particles = ParticleList(picks.positions, names, picks.scores, np.arange(len(picks)), args.tomogram.stem)
    path = _write_particles(args.output, particles, voxel_size)
    print(f"{path}: {len(particles)} picks")
    return 0


def command_classify(args: argparse.Namespace) -> int:
    if not args.checkpoint.is_file():
        raise UsageError(f"Checkpoint not found: {args.checkpoint}.")
    data, voxel_size = _read_volume(args.tomogram, args.voxel_size)
    particles = _read_particle_file(args.picks, voxel_size)

    from analysis.cryoet.classify import classify

    result = classify(
        data, voxel_size, particles, str(args.checkpoint), ConsoleReporter(), rotation_average=args.rotation_average
    )
    labelled = ParticleList(
        result.positions, result.labels, result.confidences, particles.ids, particles.tomogram or args.tomogram.stem
    )
    path = _write_particles(args.output, labelled, voxel_size)
    names, counts = np.unique(np.array(result.labels, dtype=str), return_counts=True)
    print(f"{path}: {len(labelled)} particles; " + ", ".join(f"{n} {c}" for n, c in zip(names, counts, strict=True)))
    return 0


def command_run(args: argparse.Namespace) -> int:
    if not args.tomogram.is_file():
        raise UsageError(f"Tomogram not found: {args.tomogram}. Pass the path of an .mrc file.")
    if not args.checkpoint.is_file():
        raise UsageError(f"Checkpoint not found: {args.checkpoint}.")
    volume = read_volume(args.tomogram)
    voxel_size = args.voxel_size or (volume.voxel_size[0] if volume.voxel_size else None)
    options = _template_options(args, voxel_size or DEFAULT_VOXEL_SIZE)
    if args.method == "template":
        options["classes"] = [args.template_class]
    result = run_pipeline(
        volume,
        picker=args.method,
        checkpoint=args.checkpoint,
        score_threshold=args.min_score,
        reporter=ConsoleReporter(),
        voxel_size=args.voxel_size,
        rotation_average=args.rotation_average,
        min_probability=args.min_probability,
        **options,
    )
    picks_path = _write_particles(args.output, result.picks, result.voxel_size)
    result.spatial_map.save(args.map)
    summary = result.summary()
    summary["picks_file"] = str(picks_path)
    summary["map_file"] = str(args.map)
    _print_json(summary)
    return 0


def _parse_param(item: str) -> tuple[str, object]:
    key, separator, text = item.partition("=")
    if not separator or not key:
        raise UsageError(f"Invalid --param {item!r}; write KEY=VALUE, e.g. radius=300 or point=[100,200,50].")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    return key, value


def command_query(args: argparse.Namespace) -> int:
    if not args.map.is_file():
        raise UsageError(f"Spatial map not found: {args.map}. Write one with 'cryoet run --map FILE.npz'.")
    if (args.tool is None) == (args.question is None):
        raise UsageError("Pass either --tool NAME (with --param KEY=VALUE ...) or --question TEXT, not both.")
    spatial_map = SpatialMap.load(args.map)
    if args.question is not None:
        plan = plan_question(args.question)
        if plan.tool is None:
            _print_json({"call": None, "reply": plan.reply, "examples": plan.examples})
            return 1
        tool, params, planner = plan.tool, plan.params, plan.planner
    else:
        tool, params, planner = args.tool, dict(_parse_param(item) for item in args.param), "command line"
    result = run_tool(spatial_map, tool, params)
    _print_json({"call": {"tool": tool, "params": params, "planner": planner}, "result": result})
    return 0


def command_convert(args: argparse.Namespace) -> int:
    """Read a pick file against its tomogram, print any convention warnings and write it in Å."""
    if not args.picks.exists():
        raise UsageError(f"Particle file not found: {args.picks}.")
    data, voxel_size = _read_volume(args.tomogram, args.voxel_size)
    options = {key: value for key, value in (("unit", args.unit), ("pixel_size", args.pixel_size)) if value}
    particles = read_particles(args.picks, data.shape, voxel_size, **options)
    for warning in particles.warnings:
        print(f"warning: {args.picks}: {warning}", file=sys.stderr)
    written = _write_particles(args.output, particles, voxel_size)
    print(
        f"Wrote {len(particles)} particles from {args.picks} to {written} (x, y, z in Å, voxel size {voxel_size:g} Å)"
    )
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    picks = _read_particle_file(args.picks, args.voxel_size)
    reference = _read_particle_file(args.reference, args.voxel_size)
    score = evaluate(picks, reference)
    if args.json:
        _print_json(score.to_dict())
        return 0
    print(f"{'class':<22}{'weight':>7}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>8}{'F-beta':>8}")
    for item in score.classes:
        print(
            f"{item.name:<22}{item.weight:>7.1f}{item.true_positives:>6}{item.false_positives:>6}"
            f"{item.false_negatives:>6}{item.precision:>11.3f}{item.recall:>8.3f}{item.fbeta:>8.3f}"
        )
    print(f"weighted F-beta (beta = {score.beta:g}): {score.weighted_fbeta:.3f}")
    return 0


def command_train(args: argparse.Namespace) -> int:
    from analysis.cryoet.aptvit.train import main as train_main

    train_main(args.train_arguments)
    return 0


# ---------------------------------------------------------------- parser


def _add_volume_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tomogram", type=Path, help="tomogram, an .mrc file")
    parser.add_argument(
        "--voxel-size", type=_positive, default=None, help="Å per voxel; overrides the MRC header's voxel size"
    )


def _add_picker_arguments(parser: argparse.ArgumentParser, default_score: float) -> None:
    parser.add_argument("--method", choices=PICKERS, default="dog", help="picker: difference of Gaussians or template")
    parser.add_argument(
        "--min-score",
        type=float,
        default=default_score,
        help="minimum pick score: DoG response in noise standard deviations, or template cross-correlation (-1 to 1)",
    )
    parser.add_argument(
        "--template-class",
        choices=CLASS_NAMES,
        help="with --method template: the class whose simulator density is the template",
    )


def add_cryoet_parser(commands) -> None:
    """Add the ``cryoet`` command group to the subparsers of ``python -m analysis``."""
    cryoet = commands.add_parser("cryoet", help="Cryo-ET: simulate, pick, classify, map and query particles.")
    cryoet_commands = cryoet.add_subparsers(dest="cryoet_command", required=True)

    simulate = cryoet_commands.add_parser(
        "simulate", help="Simulate a tomogram; writes OUTPUT/<run>.mrc and copick picks under OUTPUT/Picks/."
    )
    simulate.add_argument("output", type=Path, help="output directory")
    simulate.add_argument("--shape", type=int, nargs=3, default=DEFAULT_SHAPE, metavar=("Z", "Y", "X"), help="voxels")
    simulate.add_argument("--voxel-size", type=_positive, default=DEFAULT_VOXEL_SIZE, help="Å per voxel")
    simulate.add_argument("--snr", type=_positive, default=0.1, help="signal variance over noise variance")
    simulate.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same tomogram")
    simulate.set_defaults(handler=command_simulate)

    pick_parser = cryoet_commands.add_parser("pick", help="Pick particles; positions are written in Å.")
    _add_volume_arguments(pick_parser)
    _add_picker_arguments(pick_parser, 5.0)
    pick_parser.add_argument(
        "--output", type=_particle_output, required=True, help="picks file: .json (copick), .star or .csv"
    )
    pick_parser.set_defaults(handler=command_pick)

    classify_parser = cryoet_commands.add_parser("classify", help="Classify picks with an APT-ViT checkpoint.")
    _add_volume_arguments(classify_parser)
    classify_parser.add_argument("picks", type=Path, help="picks file: .json, .star, .csv, .ndjson or copick folder")
    classify_parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="APT-ViT checkpoint")
    classify_parser.add_argument(
        "--rotation-average", action="store_true", help="average over the 24 cube rotations (24 times slower)"
    )
    classify_parser.add_argument(
        "--output", type=_particle_output, required=True, help="labelled picks: .json (copick), .star or .csv"
    )
    classify_parser.set_defaults(handler=command_classify)

    run = cryoet_commands.add_parser(
        "run",
        help="Pick, classify and map one tomogram; picks whose best particle class is improbable are dropped.",
    )
    _add_volume_arguments(run)
    _add_picker_arguments(run, DEFAULT_SCORE_THRESHOLD)
    run.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="APT-ViT checkpoint")
    run.add_argument(
        "--min-probability",
        type=float,
        default=DEFAULT_MIN_PROBABILITY,
        help="keep a pick when its most probable particle class has at least this probability (0 to 1)",
    )
    run.add_argument(
        "--rotation-average",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="average APT-ViT over the 24 cube rotations (on by default; classification is 24 times slower)",
    )
    run.add_argument("--output", type=_particle_output, required=True, help="kept picks: .json, .star or .csv")
    run.add_argument("--map", type=_map_output, required=True, help="spatial map to write, an .npz file")
    run.set_defaults(handler=command_run)

    query = cryoet_commands.add_parser(
        "query", help="Run one query tool on a spatial map; distances and positions are in Å."
    )
    query.add_argument("map", type=Path, help="spatial map, an .npz file from 'cryoet run'")
    query.add_argument("--tool", choices=tuple(TOOLS), help="tool to run")
    query.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="tool parameter; VALUE is JSON where it parses, e.g. radius=300 or point=[100,200,50] (Å)",
    )
    query.add_argument("--question", help="a plain-language question, e.g. 'how many ribosomes are there?'")
    query.set_defaults(handler=command_query)

    convert = cryoet_commands.add_parser(
        "convert", help="Read a pick file against its tomogram, report suspect coordinates, and write it in Å."
    )
    convert.add_argument("picks", type=Path, help="picks file: .star, .json, .ndjson, .csv, IMOD .txt or copick folder")
    _add_volume_arguments(convert)
    convert.add_argument(
        "--unit", choices=("angstrom", "nm", "pixel"), help="unit of a CSV file that has no '# unit:' first line"
    )
    convert.add_argument(
        "--pixel-size", type=_positive, help="Å per pixel of RELION 4 coordinates, when the file has no optics block"
    )
    convert.add_argument("--output", type=_particle_output, required=True, help="output: .json, .star or .csv")
    convert.set_defaults(handler=command_convert)

    evaluate_parser = cryoet_commands.add_parser(
        "evaluate", help="Score picks against reference particles (CZII rule: match within half the class radius)."
    )
    evaluate_parser.add_argument("picks", type=Path, help="picks file with class names")
    evaluate_parser.add_argument("reference", type=Path, help="reference particles, e.g. a copick Picks folder")
    evaluate_parser.add_argument(
        "--voxel-size", type=_positive, default=None, help="Å per voxel, for files that store voxel coordinates"
    )
    evaluate_parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate_parser.set_defaults(handler=command_evaluate)

    train = cryoet_commands.add_parser(
        "train",
        help="Train APT-ViT on simulated subtomograms; arguments go to analysis.cryoet.aptvit.train.",
        add_help=False,
    )
    train.add_argument("train_arguments", nargs=argparse.REMAINDER, help="e.g. --output model.pt --help")
    train.set_defaults(handler=command_train)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed ``cryoet`` command, turning errors a user can cause into one line and status 2."""
    try:
        return args.handler(args)
    except (UsageError, *USER_ERRORS) as error:
        print(f"error: {error}", file=sys.stderr)
    return 2
