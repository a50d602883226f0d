"""The tomogram run job: pick, classify and map the particles of one tomogram."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

from django.core.files import File

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.pipeline import DEFAULT_CHECKPOINT, DEFAULT_MIN_PROBABILITY, DEFAULT_SCORE_THRESHOLD, PICKERS
from biovlm_web.core.jobs import JobError, JobKind, register_job_kind

logger = logging.getLogger(__name__)

RUN_KIND = "tomogram_run"
CHECKPOINT_DIR = DEFAULT_CHECKPOINT.parent
MAX_SCORE_THRESHOLD = 1000.0
# Score thresholds when a run gives none: the pipeline's default for the DoG response of the local
# energy over its noise level, and the normalised cross-correlation (-1 to 1) of template matching.
DEFAULT_SCORE_THRESHOLDS = {"dog": DEFAULT_SCORE_THRESHOLD, "template": 0.3}


def checkpoint_names() -> list[str]:
    """Return the file names of the APT-ViT checkpoints shipped with the code."""
    return sorted(path.name for path in CHECKPOINT_DIR.glob("*.pt"))


def clean_run_params(project, params: dict) -> dict:
    """Check run parameters; raise JobError naming the parameter and the accepted values."""
    from biovlm_web.tomograms.models import Tomogram

    tomogram_uuid = str(params.get("tomogram", "")).strip()
    try:
        tomogram = Tomogram.objects.filter(project=project, uuid=tomogram_uuid).first() if tomogram_uuid else None
    except Exception:  # an invalid UUID string raises ValidationError from the UUID field
        tomogram = None
    if tomogram is None:
        raise JobError(f"tomogram: {tomogram_uuid!r} is not the UUID of a tomogram in project {project.name!r}.")
    if not tomogram.voxel_size:
        raise JobError(f"tomogram: {tomogram.name} has no voxel size. Set it on the tomogram page before a run.")

    picker = params.get("picker", "dog")
    if picker not in PICKERS:
        raise JobError(f"picker: {picker!r} is not a picker; use one of {', '.join(PICKERS)}.")

    classes = params.get("classes") or list(CLASS_NAMES)
    if isinstance(classes, str):
        classes = [classes]
    unknown = [name for name in classes if name not in CLASS_NAMES]
    if not isinstance(classes, list) or unknown:
        raise JobError(f"classes: unknown class {unknown[:1]}; use names from {', '.join(CLASS_NAMES)}.")
    classes = [name for name in CLASS_NAMES if name in classes]
    if picker == "template" and len(classes) != 1:
        raise JobError(f"classes: template matching searches one class at a time; got {len(classes)} classes.")

    threshold = params.get("score_threshold")
    if threshold is None or threshold == "":
        threshold = DEFAULT_SCORE_THRESHOLDS[picker]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | str):
        raise JobError(f"score_threshold: {threshold!r} is not a number.")
    try:
        threshold = float(threshold)
    except ValueError:
        raise JobError(f"score_threshold: {threshold!r} is not a number.") from None
    if not math.isfinite(threshold) or not 0 <= threshold <= MAX_SCORE_THRESHOLD:
        raise JobError(f"score_threshold: {threshold} is out of range; use 0 to {MAX_SCORE_THRESHOLD:g}.")
    if picker == "template" and threshold > 1:
        raise JobError(
            f"score_threshold: {threshold} is above 1, but template matching scores are normalised "
            f"cross-correlations from -1 to 1; try {DEFAULT_SCORE_THRESHOLDS['template']}."
        )

    checkpoint = params.get("checkpoint") or DEFAULT_CHECKPOINT.name
    if checkpoint not in checkpoint_names():
        raise JobError(f"checkpoint: {checkpoint!r} is not a shipped checkpoint; use one of {checkpoint_names()}.")

    return {
        "tomogram": str(tomogram.uuid),
        "picker": picker,
        "classes": classes,
        "score_threshold": threshold,
        "checkpoint": checkpoint,
    }


def run_model_versions(params: dict) -> dict:
    return {"aptvit": params.get("checkpoint", DEFAULT_CHECKPOINT.name)}


def _run_for_job(job):
    from biovlm_web.tomograms.models import Tomogram, TomogramRun

    run = TomogramRun.objects.filter(job=job).select_related("tomogram").first()
    if run is not None:
        return run
    # A retried job has a new row, so it gets a run of its own.
    tomogram = Tomogram.objects.filter(project=job.project, uuid=job.params["tomogram"]).first()
    if tomogram is None:
        raise JobError("The tomogram of this run was deleted.")
    return TomogramRun.objects.create(tomogram=tomogram, job=job, params=job.params, created_by=job.created_by)


def run_tomogram(job, reporter) -> dict:
    """Run the cryo-ET pipeline on the run's tomogram and store its map, summary and evaluation."""
    import numpy as np
    from django.urls import reverse

    from analysis.cryoet.pipeline import evaluate, run_pipeline, simulator_template
    from analysis.cryoet.spatial import SpatialMap
    from biovlm_web.tomograms.results import read_references
    from biovlm_web.tomograms.volumes import local_path

    run = _run_for_job(job)
    tomogram = run.tomogram
    params = job.params
    pick_options = {"classes": params["classes"]}
    if params["picker"] == "template":
        pick_options["template"] = simulator_template(params["classes"][0], tomogram.voxel_size)

    with local_path(tomogram.volume.file) as volume_path:
        try:
            result = run_pipeline(
                volume_path,
                picker=params["picker"],
                checkpoint=CHECKPOINT_DIR / params["checkpoint"],
                score_threshold=params["score_threshold"],
                reporter=reporter,
                voxel_size=tomogram.voxel_size,
                **pick_options,
            )
        except ValueError as error:
            # Reader errors name the file by its local path, which is the server's business.
            message = str(error).replace(str(volume_path), tomogram.name)
            if not message.startswith(tomogram.name):
                message = f"{tomogram.name}: {message}"
            raise JobError(message) from error

    # The classifier may call a pick any class, so classes the user left out are dropped here.
    names = result.picks.class_names.astype(str)
    keep = np.isin(names, params["classes"])
    picks = result.picks.select(keep)
    spatial_map = SpatialMap.from_particles(
        list(picks.class_names),
        picks.positions,
        result.spatial_map.bounds,
        scores=picks.scores,
        ids=np.arange(len(picks)),
    )
    summary = result.summary()
    summary["excluded_by_class_filter"] = int((~keep).sum())
    # Web runs keep the pipeline's default minimum class probability.
    summary["min_class_probability"] = DEFAULT_MIN_PROBABILITY
    names, counts = np.unique(picks.class_names.astype(str), return_counts=True)
    summary["counts"] = {str(name): int(count) for name, count in zip(names, counts, strict=True)}
    summary["kept"] = len(picks)

    evaluation = None
    references = list(tomogram.references.all())
    if references:
        reporter.log(f"Scoring {len(picks)} picks against {len(references)} reference file(s).")
        try:
            reference = read_references(tomogram, references)
        except ValueError as error:
            raise JobError(f"Reading the reference picks failed: {error}") from error
        known = np.isin(reference.class_names.astype(str), CLASS_NAMES)
        evaluation = evaluate(picks, reference.select(known)).to_dict()

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "map.npz"
        spatial_map.save(path)
        with path.open("rb") as handle:
            run.map_file.save("map.npz", File(handle), save=False)
    run.summary = summary
    run.evaluation = evaluation
    run.save(update_fields=["map_file", "summary", "evaluation"])
    reporter.log(f"Kept {len(picks)} particles: {summary['counts']}.")
    return {
        "run": str(run.uuid),
        "run_url": reverse("tomogram-run-detail", args=[run.uuid]),
        "kept": len(picks),
        "counts": summary["counts"],
        "weighted_fbeta": evaluation["weighted_fbeta"] if evaluation else None,
    }


register_job_kind(
    JobKind(
        name=RUN_KIND,
        title="Tomogram run",
        function=run_tomogram,
        queue="gpu",
        validate=clean_run_params,
        model_versions=run_model_versions,
    )
)
