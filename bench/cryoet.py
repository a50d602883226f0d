"""Benchmark cryo-ET picking on simulated tomograms: DoG + APT-ViT against template matching alone.

Simulates two tomograms at the simulator's default SNR (0.1), tilt range and defocus: one to tune
each method's thresholds (seed ``--seed + 1``) and one to evaluate on (seed ``--seed``), so no
threshold is tuned on the evaluation tomogram. Method (a) is ``run_pipeline``: candidates from the
local-energy DoG, APT-ViT class probabilities, picks kept above a class probability and merged
within the class radius; its candidate score threshold and class probability are tuned together. For each method it prints per-class precision,
recall and F-beta (beta 4, CZII matching within half the class radius), the weighted F-beta,
seconds per tomogram and peak RSS sampled every 20 ms while the method runs. Template matching
uses the simulator's own unrotated class densities (``simulator_template``), one pass per class on
the volume binned ``--template-bin`` times, and merges the classes by keeping the highest cross-correlation within a class radius. It then
times the four query tools on a 10,000-particle map next to a brute-force NumPy scan, with the
code of ``bench/cryoet_query.py``. Run it as ``.venv/bin/python bench/cryoet.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryoet_query import bench_size  # noqa: E402
from peak_rss import PeakRss  # noqa: E402

from analysis.backends.checkpoint import load_checkpoint  # noqa: E402
from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES, DEFAULT_VOXEL_SIZE  # noqa: E402
from analysis.cryoet.classify import Classification, classify  # noqa: E402
from analysis.cryoet.io import ParticleList  # noqa: E402
from analysis.cryoet.metrics import PickScore  # noqa: E402
from analysis.cryoet.pick import find_candidates, match_template, sample_rotations, suppress_non_maxima  # noqa: E402
from analysis.cryoet.pipeline import (  # noqa: E402
    DEFAULT_CHECKPOINT,
    assign_classes,
    evaluate,
    run_pipeline,
    simulator_template,
)
from analysis.cryoet.simulate import DEFAULT_SHAPE, simulate_tomogram  # noqa: E402

QUICK_SHAPE = (64, 200, 200)
# Thresholds tried on the tuning tomogram: DoG response in noise standard deviations, and NCC.
DOG_THRESHOLDS = (5.0, 10.0, 20.0, 40.0, 80.0)
PROBABILITY_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
NCC_THRESHOLDS = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)


# ---------------------------------------------------------------- DoG + APT-ViT


def tune_dog(volume: np.ndarray, reference: ParticleList, model, rotation_average: bool) -> tuple[float, float, float]:
    """Return the candidate score threshold and class probability with the best weighted F-beta, and that F-beta.

    Greedy non-maximum suppression never lets a lower score remove a higher one, so picking once at
    the lowest threshold and filtering by score gives the same candidates as picking at each threshold.
    """
    candidates = find_candidates(volume, DEFAULT_VOXEL_SIZE, min_score=min(DOG_THRESHOLDS))
    classification = classify(volume, DEFAULT_VOXEL_SIZE, candidates, model, rotation_average=rotation_average)
    best = (DOG_THRESHOLDS[0], PROBABILITY_THRESHOLDS[0], -1.0)
    for threshold in DOG_THRESHOLDS:
        strong = candidates.scores >= threshold
        subset = Classification(
            classification.positions[strong],
            classification.class_names,
            classification.class_indices[strong],
            classification.probabilities[strong],
            classification.embeddings[strong],
            classification.rotation_average,
            classification.model_source,
        )
        for probability in PROBABILITY_THRESHOLDS:
            labels, _, keep, positions, _ = assign_classes(subset, subset.positions, probability)
            kept = ParticleList.from_positions(positions[keep], class_name=labels[keep].astype(object))
            score = evaluate(kept, reference).weighted_fbeta
            if score > best[2]:
                best = (threshold, probability, score)
    return best


# ---------------------------------------------------------------- template matching alone


def match_all_classes(
    volume: np.ndarray, templates: dict, rotations: np.ndarray, min_score: float, bin_factor: int
) -> ParticleList:
    """Match each class template at ``min_score`` and return the picks of all classes, unmerged."""
    lists = []
    for name, template in templates.items():
        picks = match_template(
            volume, DEFAULT_VOXEL_SIZE, template, rotations, min_score=min_score, class_name=name, bin_factor=bin_factor
        )
        lists.append(ParticleList.from_positions(picks.positions, class_name=name, scores=picks.scores))
    return ParticleList.concatenate(lists)


def merge_classes(picks: ParticleList, threshold: float) -> ParticleList:
    """Keep picks at or above ``threshold``, then the highest NCC within each pick's class radius."""
    picks = picks.select(picks.scores >= threshold)
    radii = np.array([CLASS_BY_NAME[name].radius_angstrom for name in picks.class_names])
    kept = suppress_non_maxima(picks.positions, picks.scores, radii)
    return picks.select(np.sort(kept))


def tune_template(all_picks: ParticleList, reference: ParticleList) -> tuple[float, float]:
    best = (NCC_THRESHOLDS[0], -1.0)
    for threshold in NCC_THRESHOLDS:
        score = evaluate(merge_classes(all_picks, threshold), reference).weighted_fbeta
        if score > best[1]:
            best = (threshold, score)
    return best


# ---------------------------------------------------------------- report


def print_scores(title: str, score: PickScore, seconds: float, peak_bytes: int, note: str) -> None:
    print(f"\n{title}")
    print(f"  {note}")
    print(f"  {'class':<22}{'weight':>7}{'TP':>5}{'FP':>6}{'FN':>5}{'precision':>11}{'recall':>8}{'F-beta':>8}")
    for item in score.classes:
        print(
            f"  {item.name:<22}{item.weight:>7.1f}{item.true_positives:>5}{item.false_positives:>6}"
            f"{item.false_negatives:>5}{item.precision:>11.3f}{item.recall:>8.3f}{item.fbeta:>8.3f}"
        )
    print(f"  weighted F-beta {score.weighted_fbeta:.3f}   seconds per tomogram {seconds:.1f}   "
          f"peak RSS {peak_bytes / 2**30:.2f} GiB")  # fmt: skip


def run_template_baseline(args, evaluation_volume, evaluation_reference, tuning_volume, tuning_reference) -> None:
    """Tune and score (b): template matching alone with the simulator's class densities."""
    templates = {name: simulator_template(name, DEFAULT_VOXEL_SIZE) for name in CLASS_NAMES}
    rotations = sample_rotations(args.rotations)
    low = min(NCC_THRESHOLDS)
    ncc_threshold, ncc_tuning_score = tune_template(
        match_all_classes(tuning_volume, templates, rotations, low, args.template_bin), tuning_reference
    )
    with PeakRss() as rss:
        started = time.perf_counter()
        picks = merge_classes(
            match_all_classes(evaluation_volume, templates, rotations, ncc_threshold, args.template_bin), ncc_threshold
        )
        seconds = time.perf_counter() - started
    note = (
        f"simulator class densities, unfiltered, {args.rotations} rotations per class, "
        f"volume and templates binned {args.template_bin} times; "
        f"NCC threshold {ncc_threshold} (tuning F-beta {ncc_tuning_score:.3f}); {len(picks)} picks"
    )
    print_scores("(b) template matching alone", evaluate(picks, evaluation_reference), seconds, rss.peak_bytes, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=DEFAULT_SHAPE, metavar=("Z", "Y", "X"), help="voxels")
    parser.add_argument("--quick", action="store_true", help=f"use the smaller shape {QUICK_SHAPE} (z, y, x voxels)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the evaluation tomogram; tuning uses seed + 1")
    parser.add_argument("--rotations", type=int, default=12, help="template rotations per class, identity first")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="APT-ViT checkpoint")
    parser.add_argument("--ribosome-model", default=None, help='"auto" uses the fetched 6ZU5 atomic model')
    parser.add_argument("--template-bin", type=int, default=2, help="binning of volume and templates for (b)")
    parser.add_argument(
        "--rotation-average", action="store_true", help="(a) averages APT-ViT over the 24 cube rotations"
    )
    parser.add_argument("--skip-template", action="store_true", help="leave out (b) template matching")
    parser.add_argument("--query-runs", type=int, default=50, help="runs of each fast query tool")
    args = parser.parse_args()
    shape = QUICK_SHAPE if args.quick else tuple(args.shape)

    print(f"Tomograms {shape} (z, y, x) at {DEFAULT_VOXEL_SIZE} Å per voxel, simulator default SNR, tilt and defocus.")
    print(f"Evaluation seed {args.seed}, tuning seed {args.seed + 1}; {os.cpu_count()} CPUs visible.")
    evaluation_volume, evaluation_reference = simulate_tomogram(
        shape, seed=args.seed, ribosome_model=args.ribosome_model
    )
    tuning_volume, tuning_reference = simulate_tomogram(shape, seed=args.seed + 1, ribosome_model=args.ribosome_model)
    print(f"Particles: evaluation {len(evaluation_reference)}, tuning {len(tuning_reference)}.")

    model = load_checkpoint(args.checkpoint)
    dog_threshold, probability, dog_tuning_score = tune_dog(
        tuning_volume, tuning_reference, model, args.rotation_average
    )
    with PeakRss() as rss:
        started = time.perf_counter()
        result = run_pipeline(
            evaluation_volume,
            voxel_size=DEFAULT_VOXEL_SIZE,
            score_threshold=dog_threshold,
            min_probability=probability,
            checkpoint=args.checkpoint,
            rotation_average=args.rotation_average,
        )
        seconds = time.perf_counter() - started
    note = (
        f"{result.produced_by}; DoG threshold {dog_threshold}, class probability {probability} "
        f"(tuning F-beta {dog_tuning_score:.3f}); {result.picked_count} candidates, "
        f"{result.rejected_count} background, {result.merged_count} merged; stage seconds "
        + ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in result.timings.items())
    )
    print_scores("(a) DoG picking + APT-ViT", evaluate(result, evaluation_reference), seconds, rss.peak_bytes, note)

    if not args.skip_template:
        run_template_baseline(args, evaluation_volume, evaluation_reference, tuning_volume, tuning_reference)
    print("\nQuery tools at 10,000 particles (bench/cryoet_query.py), times in milliseconds:")
    bench_size(10_000, args.query_runs, 5, args.seed)


if __name__ == "__main__":
    main()
