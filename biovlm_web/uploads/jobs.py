"""Job kinds of the uploads app."""

from django.urls import reverse

from analysis.integrity import FileToVerify, verify_files
from biovlm_web.core.jobs import JobError, JobKind, register_job_kind


def _validate_verify_params(project, params: dict) -> dict:
    from biovlm_web.uploads.models import Dataset

    dataset_uuid = str(params.get("dataset", "")).strip()
    dataset = Dataset.objects.filter(project=project, uuid=dataset_uuid).first() if dataset_uuid else None
    if dataset is None:
        raise JobError(f"params.dataset must be the UUID of a dataset in project {project.name!r}; got {dataset_uuid!r}.")
    return {"dataset": str(dataset.uuid)}


def run_verify_dataset(job, reporter) -> dict:
    """Re-read every file of a dataset from storage and check its size and sha256."""
    from biovlm_web.uploads.models import Dataset

    dataset = Dataset.objects.filter(uuid=job.params["dataset"], project=job.project).first()
    if dataset is None:
        raise JobError("The dataset of this job was deleted.")
    files = [
        FileToVerify(data_file.original_name, data_file.size, data_file.sha256, lambda f=data_file: f.file.open("rb"))
        for data_file in dataset.files.all()
    ]
    if not files:
        raise JobError(f"Dataset {dataset.name!r} has no files to verify; upload some first.")
    result = verify_files(files, reporter)
    result["dataset"] = str(dataset.uuid)
    result["dataset_url"] = reverse("dataset-detail", args=[dataset.uuid])
    return result


register_job_kind(
    JobKind(
        name="verify_dataset",
        title="Verify dataset integrity",
        function=run_verify_dataset,
        validate=_validate_verify_params,
    )
)
