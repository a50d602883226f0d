"""The comparison job: read both groups, measure every image, propose and rank hypotheses, store them."""

from __future__ import annotations

import time

import numpy as np
from django.db import transaction
from django.urls import reverse

from analysis.setdiff.features import FEATURE_NAMES
from analysis.setdiff.ingest import Groups
from analysis.setdiff.measured import FeatureTable
from analysis.setdiff.pipeline import PROPOSERS, TEXT_RANKERS, Settings, clip_image_index, run_setdiff
from biovlm_web.core.jobs import JobError, JobKind, register_job_kind

KIND = "setdiff_comparison"
MODELS_KIND = "setdiff_comparison_models"
DEFAULT_OPTIONS = {
    "proposers": ["measured"],
    "text_ranker": "auto",
    "hypotheses": 20,
    "resamples": 1000,
    "permutations": 2000,
    "segmentation": "watershed",
}
MAX_HYPOTHESES = 200
MIN_IMAGES = 2


def clean_options(options: dict) -> dict:
    """Check comparison options; raise JobError naming the field and the allowed values."""
    cleaned = dict(DEFAULT_OPTIONS)
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise JobError(f"Unknown option(s) {', '.join(unknown)}; the options are {', '.join(DEFAULT_OPTIONS)}.")
    cleaned.update(options)
    proposers = cleaned["proposers"]
    if isinstance(proposers, str):
        proposers = [name.strip() for name in proposers.split(",") if name.strip()]
    if not isinstance(proposers, list) or not proposers or any(name not in PROPOSERS for name in proposers):
        raise JobError(f"proposers must be a non-empty list drawn from {', '.join(PROPOSERS)}; got {proposers!r}.")
    cleaned["proposers"] = list(dict.fromkeys(proposers))
    if cleaned["text_ranker"] not in TEXT_RANKERS:
        raise JobError(f"text_ranker must be one of {', '.join(TEXT_RANKERS)}; got {cleaned['text_ranker']!r}.")
    if cleaned["segmentation"] not in ("watershed", "otsu"):
        raise JobError(f"segmentation must be watershed or otsu; got {cleaned['segmentation']!r}.")
    for name, low, high in (
        ("hypotheses", 1, MAX_HYPOTHESES),
        ("resamples", 100, 10_000),
        ("permutations", 100, 20_000),
    ):
        value = cleaned[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise JobError(f"{name} must be a whole number from {low} to {high}; got {value!r}.")
    return cleaned


def needs_models(options: dict) -> bool:
    """Return whether a run loads models: text proposers, or CLIP chosen as the text ranker."""
    return options["text_ranker"] == "clip" or any(name != "measured" for name in options["proposers"])


def _validate(project, params: dict) -> dict:
    from biovlm_web.comparisons.models import Comparison

    comparison = Comparison.objects.filter(project=project, uuid=str(params.get("comparison", ""))).first()
    if comparison is None:
        raise JobError(f"params.comparison must be the UUID of a comparison in project {project.name!r}.")
    for group in ("a", "b"):
        count = comparison.images.filter(group=group).count()
        if count < MIN_IMAGES:
            raise JobError(
                f"Group {comparison.group_name(group)} has {count} image(s); add at least {MIN_IMAGES} before running."
            )
    return {"comparison": str(comparison.uuid), "options": clean_options(params.get("options") or {})}


def run_comparison(job, reporter) -> dict:
    """Run the set-difference pipeline on the comparison's stored images and replace its hypotheses.

    Renames, dismissals and typed hypotheses of the previous run are kept (see ``carry_over``).
    A run that loads models also stores the CLIP embeddings of every image, when CLIP loads and
    the text ranker is auto or clip, so that typed descriptions are ranked on them.
    """
    from biovlm_web.comparisons.embeddings import SUMMARY_KEY, delete_file, load_index, save_index, stored_entry
    from biovlm_web.comparisons.images import load_record
    from biovlm_web.comparisons.models import Comparison, Hypothesis
    from biovlm_web.comparisons.ranking import _finite, carry_over, rerank, row_values

    comparison = Comparison.objects.filter(uuid=job.params["comparison"], project=job.project).first()
    if comparison is None:
        raise JobError("The comparison of this job was deleted.")
    options = job.params["options"]
    images = list(comparison.images.order_by("group", "name", "id"))
    total = len(images)

    records = []
    for index, image in enumerate(images):
        reporter.report("reading images", index / total, None)
        records.append(load_record(image))
    groups = Groups(
        [record for record in records if record.group == "a"],
        [record for record in records if record.group == "b"],
        comparison.name_a,
        comparison.name_b,
    )
    reporter.report("reading images", 1.0, f"Read {len(groups.a)} images of A and {len(groups.b)} of B")

    table = FeatureTable(options["segmentation"])
    started = time.perf_counter()
    for index, record in enumerate(groups.images):
        reporter.report("measuring images", index / total, None)
        table.features(record.pixels, record.sha256)
    reporter.report("measuring images", 1.0, f"Measured {total} images in {time.perf_counter() - started:.1f} s")

    registry = None
    if needs_models(options):
        from biovlm_web.core.model_registry import get_registry

        registry = get_registry()
    settings = Settings(
        proposers=tuple(options["proposers"]),
        segmentation=options["segmentation"],
        resamples=options["resamples"],
        permutations=options["permutations"],
        text_ranker=options["text_ranker"],
    )
    reporter.report("proposing and ranking", 0.0, f"Proposers: {', '.join(options['proposers'])}")
    try:
        result = run_setdiff(groups, registry, settings, feature_table=table)
    except ValueError as error:
        raise JobError(f"The comparison failed: {error}") from error
    kept = result.hypotheses[: options["hypotheses"]]
    reporter.report("proposing and ranking", 1.0, ranked_message(len(result.hypotheses), len(kept)))

    previous_embeddings = stored_entry(comparison)
    embeddings = None
    if registry is not None and options["text_ranker"] in ("auto", "clip"):
        reporter.report("embedding images", 0.0, "Embedding the images with CLIP for typed hypotheses")
        index = clip_image_index(result, registry, load_index(comparison))
        if index is not None:
            embeddings = save_index(comparison, index)
            reporter.report("embedding images", 1.0, f"Stored CLIP embeddings of {len(index.embeddings)} images")
    for role, reason in result.unavailable.items():
        reporter.log(f"{role} unavailable: {reason}")

    names = [record.name for record in groups.images]
    rows = table.table(groups.images)
    with transaction.atomic():
        previous = list(comparison.hypotheses.select_related("typed_by"))
        comparison.hypotheses.all().delete()
        Hypothesis.objects.bulk_create([Hypothesis(comparison=comparison, **row_values(item, names)) for item in kept])
        comparison.features = {
            "names": list(FEATURE_NAMES),
            "segmentation": options["segmentation"],
            "images_a": [record.name for record in groups.a],
            "images_b": [record.name for record in groups.b],
            "rows": _finite(np.asarray(rows, np.float64).tolist()),
        }
        comparison.summary = _finite(
            {
                "models": result.models,
                "unavailable": result.unavailable,
                "seconds": result.seconds,
                "proposed": len(result.hypotheses),
                "kept": len(kept),
                **({SUMMARY_KEY: embeddings} if embeddings else {}),
            }
        )
        comparison.save(update_fields=["features", "summary"])
        carry_over(comparison, previous, registry)
        rerank(comparison)
    if previous_embeddings and (embeddings is None or embeddings["file"] != previous_embeddings["file"]):
        delete_file(previous_embeddings)
    return {
        "comparison": str(comparison.uuid),
        "comparison_url": reverse("comparison-detail", args=[comparison.uuid]),
        "hypotheses": len(kept),
        "unavailable": result.unavailable,
    }


def ranked_message(proposed: int, kept: int) -> str:
    """Return the log line for the ranking, naming how many rows the "Number of hypotheses" option kept."""
    if kept == proposed:
        return f"Ranked {proposed} hypotheses and kept all of them"
    return f"Ranked {proposed} hypotheses and kept the top {kept} (the Number of hypotheses option)"


def kind_for(options: dict) -> str:
    """Return the job kind for ``options``: runs that load models go to the GPU queue."""
    return MODELS_KIND if needs_models(options) else KIND


register_job_kind(JobKind(name=KIND, title="Set-difference comparison", function=run_comparison, validate=_validate))
register_job_kind(
    JobKind(
        name=MODELS_KIND,
        title="Set-difference comparison with models",
        function=run_comparison,
        validate=_validate,
        queue="gpu",
    )
)
