"""Pages of the uploads app: create a dataset, show its files, start a verification job."""

import logging

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from biovlm_web.core.access import is_member
from biovlm_web.core.jobs import JobError, submit_job
from biovlm_web.core.models import Project
from biovlm_web.uploads.models import DataFile, Dataset, UploadSession

logger = logging.getLogger(__name__)


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description"]


def _member_dataset_or_404(request, uuid) -> Dataset:
    dataset = get_object_or_404(Dataset.objects.select_related("project", "created_by"), uuid=uuid)
    if not is_member(request.user, dataset.project):
        raise Http404("No dataset with this UUID is visible to you.")
    return dataset


@login_required
@require_POST
def dataset_create(request, uuid):
    project = get_object_or_404(Project, uuid=uuid)
    if not is_member(request.user, project):
        raise Http404("No project with this UUID is visible to you.")
    form = DatasetForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The dataset needs a name of at most 200 characters.")
        return redirect("project-detail", uuid=project.uuid)
    dataset = form.save(commit=False)
    dataset.project = project
    dataset.created_by = request.user
    dataset.save()
    logger.info("Dataset %s created in project %s by %s", dataset.uuid, project.uuid, request.user)
    return redirect("dataset-detail", uuid=dataset.uuid)


@login_required
@require_GET
def dataset_detail(request, uuid):
    dataset = _member_dataset_or_404(request, uuid)
    files = [(data_file, describe_metadata(data_file)) for data_file in dataset.files.select_related("created_by")]
    unfinished = dataset.upload_sessions.filter(status=UploadSession.Status.ACTIVE).order_by("-updated_at")
    context = {"dataset": dataset, "project": dataset.project, "files": files, "unfinished_uploads": unfinished}
    return render(request, "uploads/dataset_detail.html", context)


@login_required
@require_POST
def dataset_verify(request, uuid):
    dataset = _member_dataset_or_404(request, uuid)
    try:
        with transaction.atomic():
            job = submit_job(dataset.project, "verify_dataset", {"dataset": str(dataset.uuid)}, user=request.user)
    except JobError as error:
        messages.error(request, str(error))
        return redirect("dataset-detail", uuid=dataset.uuid)
    return redirect("job-detail", uuid=job.uuid)


def describe_metadata(data_file: DataFile) -> str:
    """Summarise a file's main metadata in one line of plain text for the dataset page."""
    metadata = data_file.metadata or {}
    describe = _DESCRIBERS.get(data_file.kind)
    return describe(metadata) if describe else _describe_other(metadata)


def _describe_image(metadata: dict) -> str:
    parts = [_dimensions(metadata)]
    parts.append(metadata.get("mode") or metadata.get("dtype") or "")
    frames = metadata.get("frames") or 1
    if frames > 1:
        parts.append(f"{frames} frames")
    return ", ".join(part for part in parts if part)


def _describe_video(metadata: dict) -> str:
    parts = [_dimensions(metadata)]
    if metadata.get("frame_rate"):
        parts.append(f"{metadata['frame_rate']:g} fps")
    if metadata.get("frame_count") is not None:
        parts.append(f"{metadata['frame_count']} frames")
    if metadata.get("duration_seconds") is not None:
        parts.append(f"{metadata['duration_seconds']:.1f} s")
    if metadata.get("codec"):
        parts.append(metadata["codec"])
    if metadata.get("rotation_degrees"):
        parts.append(f"rotated {metadata['rotation_degrees']}°")
    return ", ".join(part for part in parts if part)


def _describe_volume(metadata: dict) -> str:
    shape = metadata.get("shape")
    parts = []
    if shape and len(shape) == 3:
        nz, ny, nx = shape
        parts.append(f"{nx} × {ny} × {nz} voxels (x × y × z)")
    if metadata.get("mode") is not None:
        parts.append(f"mode {metadata['mode']}")
    voxel = metadata.get("voxel_size_angstrom")
    if voxel:
        sizes = {voxel["x"], voxel["y"], voxel["z"]}
        parts.append(
            f"{voxel['x']:g} Å voxels" if len(sizes) == 1 else f"{voxel['x']:g}/{voxel['y']:g}/{voxel['z']:g} Å"
        )
    else:
        parts.append("voxel size unknown")
    return ", ".join(parts)


def _describe_table(metadata: dict) -> str:
    if "blocks" in metadata:
        looped = [block for block in metadata["blocks"] if block.get("loop")]
        rows = sum(block.get("rows", 0) for block in looped)
        return f"{metadata.get('block_count', len(metadata['blocks']))} data blocks, {rows} loop rows"
    if "rows" in metadata:
        return f"{metadata['rows']} rows, {metadata.get('column_count', 0)} columns"
    if "length" in metadata:
        return f"JSON {metadata.get('top_level', '')} of {metadata['length']} items"
    return ""


def _describe_archive(metadata: dict) -> str:
    if "entries" in metadata:
        return f"{metadata['entries']} entries"
    return ""


def _describe_other(metadata: dict) -> str:
    if "shape" in metadata and "dtype" in metadata:
        return f"array {' × '.join(str(n) for n in metadata['shape'])} of {metadata['dtype']}"
    if "arrays" in metadata:
        return f"{len(metadata['arrays'])} arrays"
    if "lines" in metadata:
        lines = metadata["lines"]
        return f"{lines} line{'' if lines == 1 else 's'} of text"
    return ""


def _dimensions(metadata: dict) -> str:
    if metadata.get("width") and metadata.get("height"):
        return f"{metadata['width']} × {metadata['height']}"
    return ""


_DESCRIBERS = {
    DataFile.Kind.IMAGE: _describe_image,
    DataFile.Kind.VIDEO: _describe_video,
    DataFile.Kind.VOLUME: _describe_volume,
    DataFile.Kind.TABLE: _describe_table,
    DataFile.Kind.ARCHIVE: _describe_archive,
}
