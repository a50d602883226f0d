"""Pages of the tomograms app: upload tomograms, correct the voxel size, start runs, explore results."""

import json
import logging

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.pipeline import DEFAULT_CHECKPOINT, PICKERS
from analysis.cryoet.query import TOOLS, params_schema
from analysis.cryoet.questions import EXAMPLES
from biovlm_web.core.access import can_change, is_member, request_can_view
from biovlm_web.core.jobs import JobError
from biovlm_web.core.models import Project, ShareLink
from biovlm_web.core.views import ShareLinkForm
from biovlm_web.tomograms.display import candidate_counts, format_angstrom, voxel_facts
from biovlm_web.tomograms.ingest import (
    TomogramInputError,
    attach_references,
    create_tomogram,
    set_voxel_size,
    start_run,
    tomogram_dataset,
)
from biovlm_web.tomograms.jobs import DEFAULT_SCORE_THRESHOLDS, checkpoint_names
from biovlm_web.tomograms.models import Tomogram, TomogramRun
from biovlm_web.tomograms.results import EXPORT_FORMATS, class_radius
from biovlm_web.uploads.handlers import disk_upload_handlers
from biovlm_web.uploads.ingest import (
    receive_uploaded_file,
    store_files,
    too_large,
)
from biovlm_web.uploads.models import DataFile
from biovlm_web.uploads.storage import UploadError

logger = logging.getLogger(__name__)

UNIT_CHOICES = [("", "from the file"), ("angstrom", "angstroms"), ("nm", "nanometres"), ("pixel", "pixels (voxels)")]


class VoxelSizeForm(forms.Form):
    voxel_size = forms.FloatField(min_value=0.01, max_value=1000, label="Voxel size (Å)")


class RunForm(forms.Form):
    picker = forms.ChoiceField(choices=[("dog", "Difference of Gaussians"), ("template", "Template matching")])
    classes = forms.MultipleChoiceField(
        choices=[(name, name) for name in CLASS_NAMES],
        initial=list(CLASS_NAMES),
        widget=forms.CheckboxSelectMultiple,
        help_text="Template matching searches exactly one class.",
    )
    score_threshold = forms.FloatField(
        min_value=0,
        max_value=1000,
        required=False,
        label="Score threshold",
        help_text=(
            f"Empty for the picker's default: {DEFAULT_SCORE_THRESHOLDS['dog']:g} (DoG response over noise) "
            f"or {DEFAULT_SCORE_THRESHOLDS['template']:g} (template correlation)."
        ),
    )
    checkpoint = forms.ChoiceField(label="APT-ViT checkpoint")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].choices = [(name, name) for name in checkpoint_names()]
        self.fields["checkpoint"].initial = DEFAULT_CHECKPOINT.name


def _member_project_or_404(request, uuid) -> Project:
    project = get_object_or_404(Project, uuid=uuid)
    if not is_member(request.user, project):
        raise Http404("No project with this UUID is visible to you.")
    return project


def _member_tomogram_or_404(request, uuid) -> Tomogram:
    tomogram = get_object_or_404(Tomogram.objects.select_related("project", "volume"), uuid=uuid)
    if not is_member(request.user, tomogram.project):
        raise Http404("No tomogram with this UUID is visible to you.")
    return tomogram


@login_required
@require_GET
def tomogram_list(request, uuid):
    project = _member_project_or_404(request, uuid)
    tomograms = project.tomograms.select_related("volume").prefetch_related("runs__job")
    context = {
        "project": project,
        "tomograms": tomograms,
        "unit_choices": UNIT_CHOICES,
        "project_volumes": _unused_project_volumes(project),
    }
    return render(request, "tomograms/tomogram_list.html", context)


def _unused_project_volumes(project: Project):
    """Return the project's stored MRC volumes that no tomogram uses yet, newest first."""
    return (
        DataFile.objects.filter(dataset__project=project, kind=DataFile.Kind.VOLUME, tomograms__isnull=True)
        .select_related("dataset")
        .order_by("-id")
    )


@login_required
@require_POST
def tomogram_register(request, uuid):
    """Create a tomogram from an MRC file already stored in the project, such as the demo's sample."""
    project = _member_project_or_404(request, uuid)
    back = redirect("tomogram-list", uuid=project.uuid)
    volume = _unused_project_volumes(project).filter(uuid=request.POST.get("volume_file") or None).first()
    if volume is None:
        messages.error(request, "Choose an MRC file of this project in the field 'Project file'.")
        return back
    try:
        with transaction.atomic():
            tomogram = create_tomogram(project, volume, request.user)
    except TomogramInputError as error:
        logger.info("Tomogram from file %s in project %s rejected: %s", volume.uuid, project.uuid, error)
        messages.error(request, f"Nothing was created: {error}")
        return back
    messages.success(request, f"Created the tomogram {tomogram.name}.")
    return redirect("tomogram-detail", uuid=tomogram.uuid)


@csrf_exempt
@login_required
@require_POST
def tomogram_upload(request, uuid):
    # Upload handlers must be set before anything reads the body, the CSRF check included.
    request.upload_handlers = disk_upload_handlers(request)
    return _tomogram_upload(request, uuid)


@csrf_protect
def _tomogram_upload(request, uuid):
    project = _member_project_or_404(request, uuid)
    back = redirect("tomogram-list", uuid=project.uuid)
    volumes = request.FILES.getlist("volumes")
    references = request.FILES.getlist("references")
    rejected = request.upload_handlers[0].rejected_name
    if rejected is not None:
        messages.error(request, too_large(rejected).detail)
        return back
    if not volumes:
        messages.error(request, "Choose one or more MRC tomograms in the field 'Tomograms'.")
        return back
    if references and len(volumes) > 1:
        messages.error(
            request,
            "Reference picks can be uploaded with one tomogram at a time. Upload the tomograms, then add "
            "references on each tomogram's page.",
        )
        return back
    try:
        voxel_size = float(request.POST["voxel_size"]) if request.POST.get("voxel_size") else None
    except ValueError:
        voxel_size = -1.0
    if voxel_size is not None and not 0.01 <= voxel_size <= 1000:
        messages.error(
            request, f"Voxel size {request.POST['voxel_size']!r} is invalid; enter 0.01 to 1000 Å or leave it empty."
        )
        return back
    unit = request.POST.get("reference_unit") or None

    try:
        received_volumes = [receive_uploaded_file(item) for item in volumes]
        received_references = [receive_uploaded_file(item) for item in references]
    except UploadError as error:
        logger.info("Tomogram upload to project %s by %s rejected: %s", project.uuid, request.user, error.detail)
        messages.error(request, f"Nothing was stored: {error.detail}")
        return back

    created = []

    def create_rows(stored):
        stored_volumes, stored_references = stored[: len(volumes)], stored[len(volumes) :]
        for data_file in stored_volumes:
            created.append(create_tomogram(project, data_file, request.user, stored_references, voxel_size, unit))

    dataset = tomogram_dataset(project, request.user)
    try:
        store_files(dataset, received_volumes + received_references, request.user, in_transaction=create_rows)
    except TomogramInputError as error:
        logger.info("Tomogram upload to project %s by %s rejected: %s", project.uuid, request.user, error)
        messages.error(request, f"Nothing was stored: {error}")
        return back
    messages.success(request, f"Uploaded {len(created)} tomogram{'s' if len(created) != 1 else ''}.")
    if len(created) == 1:
        return redirect("tomogram-detail", uuid=created[0].uuid)
    return back


@login_required
@require_GET
def tomogram_detail(request, uuid):
    tomogram = _member_tomogram_or_404(request, uuid)
    header = tomogram.header
    context = {
        "tomogram": tomogram,
        "project": tomogram.project,
        "header": header,
        "voxel": voxel_facts(header.get("voxel_size_angstrom"), tomogram.voxel_size),
        "voxel_form": VoxelSizeForm(initial={"voxel_size": tomogram.voxel_size}),
        "run_form": RunForm(),
        "runs": tomogram.runs.select_related("job", "created_by"),
        "references": tomogram.references.all(),
        "unit_choices": UNIT_CHOICES,
    }
    return render(request, "tomograms/tomogram_detail.html", context)


@login_required
@require_POST
def tomogram_voxel_size(request, uuid):
    tomogram = _member_tomogram_or_404(request, uuid)
    form = VoxelSizeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The voxel size must be a number of angstroms from 0.01 to 1000.")
    else:
        set_voxel_size(tomogram, form.cleaned_data["voxel_size"])
        messages.success(request, f"Voxel size set to {format_angstrom(tomogram.voxel_size)} Å.")
    return redirect("tomogram-detail", uuid=tomogram.uuid)


@csrf_exempt
@login_required
@require_POST
def tomogram_references(request, uuid):
    request.upload_handlers = disk_upload_handlers(request)
    return _tomogram_references(request, uuid)


@csrf_protect
def _tomogram_references(request, uuid):
    tomogram = _member_tomogram_or_404(request, uuid)
    back = redirect("tomogram-detail", uuid=tomogram.uuid)
    references = request.FILES.getlist("references")
    if not references:
        messages.error(request, "Choose one or more reference pick files.")
        return back
    try:
        received = [receive_uploaded_file(item) for item in references]
    except UploadError as error:
        logger.info("References for tomogram %s by %s rejected: %s", tomogram.uuid, request.user, error.detail)
        messages.error(request, f"Nothing was stored: {error.detail}")
        return back
    unit = request.POST.get("reference_unit") or None
    try:
        store_files(
            tomogram_dataset(tomogram.project, request.user),
            received,
            request.user,
            in_transaction=lambda stored: attach_references(tomogram, stored, unit),
        )
    except TomogramInputError as error:
        logger.info("References for tomogram %s by %s rejected: %s", tomogram.uuid, request.user, error)
        messages.error(request, f"Nothing was stored: {error}")
        return back
    messages.success(request, f"Attached {tomogram.reference_summary.get('count', 0)} reference picks.")
    return back


@login_required
@require_POST
def run_create(request, uuid):
    tomogram = _member_tomogram_or_404(request, uuid)
    form = RunForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
        messages.error(request, f"The run was not started: {problems}")
        return redirect("tomogram-detail", uuid=tomogram.uuid)
    try:
        run = start_run(tomogram, form.cleaned_data, request.user)
    except JobError as error:
        messages.error(request, f"The run was not started: {error}")
        return redirect("tomogram-detail", uuid=tomogram.uuid)
    return redirect("tomogram-run-detail", uuid=run.uuid)


def run_detail(request, uuid):
    run = get_object_or_404(
        TomogramRun.objects.select_related("job", "tomogram__project", "tomogram__volume"), uuid=uuid
    )
    if not request_can_view(request, run):
        if not request.user.is_authenticated:
            return redirect(f"{reverse('login')}?next={request.path}")
        raise Http404("No tomogram run with this UUID is visible to you.")
    member = can_change(request.user, run)
    tomogram = run.tomogram
    config = {
        "run": str(run.uuid),
        "api": reverse("api-tomogram-run-detail", args=[run.uuid]),
        "shape_zyx": list(tomogram.shape or []),
        "voxel_size": run.summary.get("voxel_size_angstrom") or tomogram.voxel_size,
        "classes": [{"name": name, "radius_angstrom": class_radius(name)} for name in CLASS_NAMES],
        "tools": {
            name: {"description": tool.description, "schema": params_schema(tool.params_class)}
            for name, tool in TOOLS.items()
        },
        "question_examples": EXAMPLES,
    }
    context = {
        "run": run,
        "tomogram": tomogram,
        "job": run.job,
        "member": member,
        "read_only": not member,
        "config": config,
        "params_json": json.dumps(run.params, indent=2, sort_keys=True),
        "candidate_counts": candidate_counts(run.summary),
        "voxel_size_text": format_angstrom(config["voxel_size"]) if config["voxel_size"] else "",
        "exports": [
            (name, label, reverse("api-tomogram-run-export", args=[run.uuid, name]))
            for name, (label, _, _) in EXPORT_FORMATS.items()
        ],
        "pickers": PICKERS,
    }
    if member:
        context["share_links"] = ShareLink.objects.for_object(run).select_related("created_by")
        context["share_form"] = ShareLinkForm()
    return render(request, "tomograms/run_detail.html", context)
