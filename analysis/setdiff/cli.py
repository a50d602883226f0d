"""The ``python -m analysis setdiff`` commands.

``run A B`` compares two image groups (folders, archives, text files of paths or single images;
or ``--csv FILE --group-a NAME --group-b NAME`` for a VisDiff CSV), prints the ranked table and
writes JSON. ``synthetic OUT`` writes a synthetic pair of groups that differ in one known way.
Errors a user can cause print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from analysis.setdiff.ingest import IngestError, IngestOptions, load_groups, load_visdiff_groups
from analysis.setdiff.pipeline import PROPOSERS, Settings, run_setdiff
from analysis.setdiff.synthetic import ATTRIBUTES, DIFFICULTIES, make_pair

BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def _background(text: str) -> tuple[int, int, int]:
    if text in BACKGROUNDS:
        return BACKGROUNDS[text]
    value = text.lstrip("#")
    if len(value) == 6:
        try:
            return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"invalid background {text!r}; use white, black or a colour such as #808080")


def _proposers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PROPOSERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"invalid proposer list {text!r}; choose from {', '.join(PROPOSERS)}")
    return names


def add_setdiff_parser(commands) -> None:
    setdiff = commands.add_parser("setdiff", help="Describe what is more true of one image group than of another.")
    actions = setdiff.add_subparsers(dest="setdiff_command", required=True)

    run = actions.add_parser("run", help="Compare image groups A and B and rank descriptions of their difference.")
    run.add_argument("a", nargs="?", help="Group A: a folder, archive, text file of paths, or image.")
    run.add_argument("b", nargs="?", help="Group B, as for A.")
    run.add_argument("--csv", type=Path, help="A VisDiff CSV with path and group_name columns, in place of A and B.")
    run.add_argument("--group-a", help="The group_name of group A in --csv.")
    run.add_argument("--group-b", help="The group_name of group B in --csv.")
    run.add_argument(
        "--output", "-o", type=Path, default=Path("setdiff.json"), help="JSON result file (default setdiff.json)."
    )
    run.add_argument("--top", type=int, default=10, help="Rows to print (default 10); the JSON keeps every row.")
    run.add_argument(
        "--proposers",
        type=_proposers,
        default=PROPOSERS,
        help=f"Comma-separated proposers (default {','.join(PROPOSERS)}).",
    )
    run.add_argument("--describe", action="append", default=[], help="A description of your own to rank; repeatable.")
    run.add_argument("--segmentation", choices=("watershed", "otsu"), default="watershed", help="Object segmentation.")
    run.add_argument(
        "--max-pixels", type=int, default=IngestOptions.max_pixels, help="Leave out images with more pixels."
    )
    run.add_argument("--background", type=_background, default="white", help="Colour that alpha is flattened onto.")
    run.add_argument("--cache-dir", type=Path, help="Folder for cached captions, embeddings and features.")
    run.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples for the AUROC interval.")
    run.add_argument("--permutations", type=int, default=2000, help="Permutations for the p-value.")
    run.set_defaults(setdiff_handler=command_run)

    synthetic = actions.add_parser("synthetic", help="Write synthetic groups A and B that differ in one known way.")
    synthetic.add_argument("output", type=Path, help="Folder to write A/ and B/ into.")
    synthetic.add_argument("--attribute", choices=ATTRIBUTES, default="count")
    synthetic.add_argument("--difficulty", choices=DIFFICULTIES, default="easy")
    synthetic.add_argument("--images", type=int, default=20, help="Images per group (default 20).")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(setdiff_handler=command_synthetic)


def _load(args):
    options = IngestOptions(max_pixels=args.max_pixels, background=args.background)
    if args.csv:
        if not (args.group_a and args.group_b) or args.a or args.b:
            raise IngestError("With --csv, give --group-a and --group-b and no A and B paths.")
        return load_visdiff_groups(args.csv, args.group_a, args.group_b, options)
    if not (args.a and args.b):
        raise IngestError("Give groups A and B as paths, or --csv with --group-a and --group-b.")
    return load_groups(args.a, args.b, options, Path(args.a).name or "A", Path(args.b).name or "B")


def format_table(result, top: int) -> str:
    lines = [f"{'#':>3}  {'AUROC':>5}  {'95% interval':>13}  {'p':>8}  {'q':>8}  {'proposer/ranker':<30}  description"]
    for number, item in enumerate(result.hypotheses[:top], start=1):
        stats = item.result
        lines.append(
            f"{number:>3}  {stats.auroc:5.3f}  [{stats.auroc_low:.3f}, {stats.auroc_high:.3f}]  {stats.permutation_p:8.2g}  "
            f"{stats.q:8.2g}  {item.proposer + '/' + item.ranker:<30}  {item.description}"
        )
    return "\n".join(lines)


def command_run(args) -> int:
    from analysis.backends import ModelRegistry
    from analysis.backends.registry import sources_from_environment

    groups = _load(args)
    for name, reason in groups.skipped:
        print(f"Left out {name}: {reason}", file=sys.stderr)
    registry = ModelRegistry(sources_from_environment(), cache_dir=args.cache_dir)
    settings = Settings(
        proposers=args.proposers,
        segmentation=args.segmentation,
        resamples=args.resamples,
        permutations=args.permutations,
        user_descriptions=tuple(args.describe),
    )
    result = run_setdiff(groups, registry, settings)
    print(
        f"A = {groups.name_a} ({len(groups.a)} images), B = {groups.name_b} ({len(groups.b)} images); descriptions more true of A:"
    )
    print(format_table(result, args.top))
    for role, reason in result.unavailable.items():
        print(f"Not used: {role}: {reason}", file=sys.stderr)
    args.output.write_text(json.dumps(result.as_dict(), indent=2))
    print(f"Wrote {args.output}")
    return 0


def command_synthetic(args) -> int:
    pair = make_pair(args.attribute, args.difficulty, args.images, seed=args.seed)
    for group, images in (("A", pair.a), ("B", pair.b)):
        folder = args.output / group
        folder.mkdir(parents=True, exist_ok=True)
        for index, pixels in enumerate(images):
            Image.fromarray(pixels).save(folder / f"{group.lower()}{index:03d}.png")
    print(f"Wrote {args.output}/A and {args.output}/B: A has {pair.true_description} ({args.difficulty}).")
    return 0


def run_command(args) -> int:
    try:
        return args.setdiff_handler(args)
    except (IngestError, OSError, ValueError) as error:
        print(f"setdiff: {error}", file=sys.stderr)
        return 2
