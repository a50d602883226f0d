"""Create tomograms from stored files, and start runs: shared by the pages and the API."""

from __future__ import annotations

import logging

from django.db import transaction

from biovlm_web.core.jobs import submit_job
from biovlm_web.tomograms.jobs import RUN_KIND
from biovlm_web.tomograms.models import Tomogram, TomogramRun
from biovlm_web.tomograms.results import read_references, summarise_references
from biovlm_web.uploads.models import DataFile, Dataset

logger = logging.getLogger(__name__)

TOMOGRAM_DATASET_NAME = "Tomograms"


class TomogramInputError(ValueError):
    """A tomogram or reference file that cannot be used; the message names it and the fix."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def tomogram_dataset(project, user) -> Dataset:
    """Return the project's dataset that keeps files uploaded on the tomograms page."""
    dataset = Dataset.objects.filter(project=project, name=TOMOGRAM_DATASET_NAME).order_by("id").first()
    if dataset is None:
        dataset = Dataset.objects.create(
            project=project,
            name=TOMOGRAM_DATASET_NAME,
            description="MRC tomograms and reference picks uploaded on the tomograms page.",
            created_by=user,
        )
    return dataset


def check_volume_file(data_file: DataFile) -> None:
    if data_file.kind != DataFile.Kind.VOLUME or not data_file.metadata.get("shape"):
        raise TomogramInputError(
            f"{data_file.original_name} is not an MRC volume (detected kind: {data_file.kind}). Upload an .mrc tomogram.",
            "volume_file",
        )
    if len(data_file.metadata["shape"]) != 3 or min(data_file.metadata["shape"]) < 2:
        raise TomogramInputError(
            f"{data_file.original_name} has shape {data_file.metadata['shape']}, which is not a 3D tomogram.",
            "volume_file",
        )


def attach_references(tomogram: Tomogram, reference_files: list[DataFile], unit: str | None = None) -> None:
    """Read reference picks against the tomogram and attach them, replacing earlier references.

    Raises TomogramInputError naming the file when a reader rejects it.
    """
    for data_file in reference_files:
        if data_file.kind != DataFile.Kind.TABLE:
            raise TomogramInputError(
                f"{data_file.original_name} is not a particle list (detected kind: {data_file.kind}). "
                "Use a RELION .star, copick .json, CryoET Data Portal .ndjson, .csv or IMOD .txt file.",
                "reference_files",
            )
    options = {"unit": unit} if unit else {}
    try:
        particles = read_references(tomogram, reference_files, options)
    except ValueError as error:
        raise TomogramInputError(f"Reference picks rejected: {error}", "reference_files") from error
    tomogram.references.set(reference_files)
    tomogram.reference_summary = {**summarise_references(particles), "unit": unit}
    tomogram.save(update_fields=["reference_summary"])


def create_tomogram(
    project, volume_file: DataFile, user, reference_files=(), voxel_size=None, unit=None, name=None
) -> Tomogram:
    """Create a tomogram from a stored MRC file; the caller runs this inside a transaction."""
    check_volume_file(volume_file)
    tomogram = Tomogram(project=project, volume=volume_file, name=name or volume_file.original_name, created_by=user)
    tomogram.voxel_size = voxel_size or tomogram.header_voxel_size
    tomogram.save()
    if reference_files:
        attach_references(tomogram, list(reference_files), unit)
    logger.info("Tomogram %s created from file %s by %s", tomogram.uuid, volume_file.uuid, user)
    return tomogram


def set_voxel_size(tomogram: Tomogram, voxel_size: float) -> None:
    """Correct the voxel size and re-read the references, whose conversion may depend on it."""
    tomogram.voxel_size = voxel_size
    tomogram.save(update_fields=["voxel_size"])
    references = list(tomogram.references.all())
    if references:
        try:
            attach_references(tomogram, references, tomogram.reference_summary.get("unit"))
        except TomogramInputError as error:
            tomogram.reference_summary = {**tomogram.reference_summary, "warnings": [str(error)]}
            tomogram.save(update_fields=["reference_summary"])


def start_run(tomogram: Tomogram, params: dict, user) -> TomogramRun:
    """Submit the run's job and create its row; raises JobError for invalid parameters."""
    with transaction.atomic():
        job = submit_job(tomogram.project, RUN_KIND, {**params, "tomogram": str(tomogram.uuid)}, user=user)
        run = TomogramRun.objects.create(tomogram=tomogram, job=job, params=job.params, created_by=user)
    return run
