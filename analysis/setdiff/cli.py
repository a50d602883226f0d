"""The ``python -m analysis setdiff`` commands.

- ``run A B`` compares two image groups, each a folder, archive, text file of paths or single
  image (or ``--csv FILE --group-a NAME --group-b NAME`` for a VisDiff CSV). It prints the
  ranked table, writes JSON, and stores the image-side embeddings next to the JSON.
- ``rank EMBEDDINGS TEXT...`` ranks typed descriptions from those stored embeddings.
- ``visdiff CSV PAIRS`` runs a VisDiff-format benchmark and prints Acc@1 and Acc@5.
- ``synthetic OUT`` writes a synthetic pair of groups that differ in one known way.

Errors a user can cause print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image

from analysis.setdiff.hypotheses import Hypothesis, rank
from analysis.setdiff.ingest import IngestError, IngestOptions, load_groups, load_visdiff_groups
from analysis.setdiff.pipeline import PROPOSERS, TEXT_RANKERS, Settings, run_setdiff
from analysis.setdiff.rankers import EmbeddingIndex
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
    run.add_argument(
        "--text-ranker", choices=TEXT_RANKERS, default="auto", help="How text descriptions are ranked (default auto)."
    )
    run.set_defaults(setdiff_handler=command_run)

    rank_parser = actions.add_parser("rank", help="Rank typed descriptions from the embeddings a run stored.")
    rank_parser.add_argument("embeddings", type=Path, help="The .embeddings.npz file written next to a run's JSON.")
    rank_parser.add_argument("descriptions", nargs="+", help="Descriptions to rank, as more true of A than of B.")
    rank_parser.add_argument("--cache-dir", type=Path, help="Folder for cached text embeddings.")
    rank_parser.set_defaults(setdiff_handler=command_rank)

    visdiff = actions.add_parser("visdiff", help="Run a VisDiff-format benchmark: Acc@1 and Acc@5.")
    visdiff.add_argument("csv", type=Path, help="CSV of images with path and group_name columns.")
    visdiff.add_argument("pairs", type=Path, help="JSONL with set1, set2 and difference on each line.")
    visdiff.add_argument(
        "--proposers",
        type=_proposers,
        default=PROPOSERS,
        help=f"Comma-separated proposers (default {','.join(PROPOSERS)}).",
    )
    visdiff.add_argument(
        "--judge", choices=("auto", "llm", "embedding"), default="auto", help="Judge (default: LLM when configured)."
    )
    visdiff.add_argument("--cache-dir", type=Path, help="Folder for cached captions, embeddings and features.")
    visdiff.add_argument("--output", "-o", type=Path, help="Write each pair's top 5 and verdicts as JSON here.")
    visdiff.set_defaults(setdiff_handler=command_visdiff)

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


def format_table(hypotheses: list, top: int) -> str:
    lines = [f"{'#':>3}  {'AUROC':>5}  {'95% interval':>13}  {'p':>8}  {'q':>8}  {'proposer/ranker':<30}  description"]
    for number, item in enumerate(hypotheses[:top], start=1):
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
        text_ranker=args.text_ranker,
    )
    result = run_setdiff(groups, registry, settings)
    print(
        f"A = {groups.name_a} ({len(groups.a)} images), B = {groups.name_b} ({len(groups.b)} images); descriptions more true of A:"
    )
    print(format_table(result.hypotheses, args.top))
    for role, reason in result.unavailable.items():
        print(f"Not used: {role}: {reason}", file=sys.stderr)
    args.output.write_text(json.dumps(result.as_dict(), indent=2))
    print(f"Wrote {args.output}")
    if result.index is not None:
        embeddings = embeddings_path(args.output)
        result.index.save(embeddings)
        print(f"Wrote {embeddings}; rank more descriptions with: python -m analysis setdiff rank {embeddings} TEXT")
    return 0


def embeddings_path(output: Path) -> Path:
    return output.with_name(output.stem + ".embeddings.npz")


def command_rank(args) -> int:
    from analysis.backends import ModelRegistry
    from analysis.backends.registry import sources_from_environment

    if not args.embeddings.is_file():
        raise IngestError(
            f"{args.embeddings}: no such file; run 'setdiff run' first, which writes it next to its JSON."
        )
    index = EmbeddingIndex.load(args.embeddings)
    backend = ModelRegistry(sources_from_environment(), cache_dir=args.cache_dir).get(index.ranker)
    if backend.info.version != index.model:
        raise IngestError(
            f"{args.embeddings} was made with {index.ranker} model {index.model}, but the configured one is "
            f"{backend.info.version}; configure the same model."
        )
    hypotheses = rank(index.rank([Hypothesis(text, "user") for text in args.descriptions], backend))
    print(format_table(hypotheses, len(hypotheses)))
    return 0


def command_visdiff(args) -> int:
    from analysis.backends import ModelRegistry, ModelUnavailable
    from analysis.backends.registry import sources_from_environment
    from analysis.setdiff.evaluate import EmbeddingJudge, LLMJudge, run_visdiff_benchmark

    registry = ModelRegistry(sources_from_environment(), cache_dir=args.cache_dir)
    judge = None
    if args.judge in ("auto", "llm"):
        try:
            judge = LLMJudge(registry.get("llm"))
        except ModelUnavailable as error:
            if args.judge == "llm":
                raise IngestError(f"The LLM judge is unavailable: {error.reason}") from error
    if judge is None:
        judge = EmbeddingJudge.calibrated(registry.get("sentence_embedder"))
    board, rows = run_visdiff_benchmark(args.csv, args.pairs, judge, registry, Settings(proposers=args.proposers))
    print(f"Judge: {judge.describe()}")
    print(
        f"{board.comparisons['all']} pairs: Acc@1 {board.accuracy('all', 1):.3f}, Acc@5 {board.accuracy('all', 5):.3f}, "
        f"{board.images / max(board.seconds, 1e-9):.1f} images/s, {board.seconds / board.comparisons['all']:.2f} s per comparison"
    )
    if args.output:
        args.output.write_text(json.dumps({"judge": judge.describe(), "pairs": rows}, indent=2))
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
    from analysis.backends import ModelUnavailable

    try:
        return args.setdiff_handler(args)
    except (IngestError, OSError, ValueError, ModelUnavailable) as error:
        print(f"setdiff: {error}", file=sys.stderr)
        return 2
