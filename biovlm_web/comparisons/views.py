"""Pages of comparisons: create, fill the groups and run, the result, images and exports."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from analysis.setdiff.pipeline import PROPOSERS, TEXT_RANKERS
from biovlm_web.comparisons.api import start_run
from biovlm_web.comparisons.exports import export_csv, export_html, export_json, result_payload
from biovlm_web.comparisons.jobs import DEFAULT_OPTIONS, MAX_HYPOTHESES
from biovlm_web.comparisons.models import Comparison, ComparisonImage
from biovlm_web.core.access import can_change, is_member, request_can_view
from biovlm_web.core.models import Project, ShareLink
from biovlm_web.core.views import ShareLinkForm, _login_url

PROPOSER_ROLES = {
    "measured": [],
    "captions": ["captioner", "vlm"],
    "decoding": ["vlm"],
    "llm": ["captioner", "llm"],
}
PROPOSER_TITLES = {
    "measured": "Measured features (no model weights)",
    "captions": "Caption token importance",
    "decoding": "Comparative decoding",
    "llm": "LLM over captions",
}
RANKER_ROLES = {"auto": [], "clip": ["clip"], "sentence_embedder": ["sentence_embedder"], "vqa": ["vlm"]}


class ComparisonForm(forms.ModelForm):
    class Meta:
        model = Comparison
        fields = ["name", "name_a", "name_b"]
        labels = {"name_a": "Name of group A", "name_b": "Name of group B"}


@login_required
@require_POST
def comparison_create(request, uuid):
    project = get_object_or_404(Project, uuid=uuid)
    if not is_member(request.user, project):
        raise Http404("No project with this UUID is visible to you.")
    form = ComparisonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A comparison needs a name (at most 200 characters) and group names (at most 100).")
        return redirect("project-detail", uuid=project.uuid)
    comparison = form.save(commit=False)
    comparison.project = project
    comparison.created_by = request.user
    comparison.save()
    return redirect("comparison-detail", uuid=comparison.uuid)


def _viewable_or_404(request, uuid):
    comparison = get_object_or_404(Comparison.objects.select_related("project", "job"), uuid=uuid)
    if not request_can_view(request, comparison):
        raise Http404("No comparison with this UUID is visible to you.")
    return comparison


def _option_rows(rows_by_role: dict, roles_for: dict, titles: dict | None = None) -> list[dict]:
    """Describe each proposer or ranker with the model roles it needs and why any is unavailable."""
    options = []
    for name, roles in roles_for.items():
        # One sentence per role, so the reasons (which end in a full stop) read as a paragraph.
        problems = [
            f"{role}: {rows_by_role[role]['reason'].rstrip('.')}."
            for role in roles
            if rows_by_role.get(role, {}).get("state") not in ("available", "unchecked")
        ]
        unchecked = [role for role in roles if rows_by_role.get(role, {}).get("state") == "unchecked"]
        options.append(
            {
                "name": name,
                "title": (titles or {}).get(name, name),
                "roles": roles,
                "available": not problems,
                "reason": " ".join(problems),
                "unchecked": unchecked,
            }
        )
    return options


def comparison_detail(request, uuid):
    comparison = get_object_or_404(Comparison.objects.select_related("project", "job", "created_by"), uuid=uuid)
    if not request_can_view(request, comparison):
        if not request.user.is_authenticated:
            return redirect(f"{_login_url()}?next={request.path}")
        raise Http404("No comparison with this UUID is visible to you.")
    member = can_change(request.user, comparison)
    payload = result_payload(comparison, include_dismissed=member)
    payload["read_only"] = not member
    payload["api"] = {
        "hypotheses": reverse("api-hypothesis-list"),
        "rank": reverse("api-comparison-rank", args=[comparison.uuid]),
    }
    context = {
        "comparison": comparison,
        "project": comparison.project,
        "member": member,
        "read_only": not member,
        "payload": payload,
        "job": comparison.job,
        "has_result": comparison.hypotheses.exists(),
    }
    if member:
        from django.conf import settings

        from biovlm_web.core.models_status import latest_check, role_rows

        check, _ = latest_check()
        rows_by_role = {row["role"]: row for row in role_rows(settings, check)}
        options = {**DEFAULT_OPTIONS, **comparison.options}
        context.update(
            {
                "builder": {
                    "comparison": str(comparison.uuid),
                    "names": {"a": comparison.name_a, "b": comparison.name_b},
                    "images_url": reverse("api-comparison-images", args=[comparison.uuid]),
                    "images": payload["images"],
                    "skipped": comparison.skipped,
                    "project_files": _project_image_files(comparison.project),
                },
                "proposers": _option_rows(
                    rows_by_role, {name: PROPOSER_ROLES[name] for name in PROPOSERS}, PROPOSER_TITLES
                ),
                "rankers": _option_rows(rows_by_role, {name: RANKER_ROLES[name] for name in TEXT_RANKERS}),
                "options": options,
                "max_hypotheses": MAX_HYPOTHESES,
                "share_links": ShareLink.objects.for_object(comparison).select_related("created_by"),
                "share_form": ShareLinkForm(),
            }
        )
    return render(request, "comparisons/comparison_detail.html", context)


def _project_image_files(project) -> list[dict]:
    from biovlm_web.uploads.models import DataFile

    files = DataFile.objects.filter(
        dataset__project=project, kind__in=[DataFile.Kind.IMAGE, DataFile.Kind.ARCHIVE]
    ).select_related("dataset")
    return [
        {"uuid": str(item.uuid), "name": item.original_name, "dataset": item.dataset.name, "kind": item.kind}
        for item in files[:1000]
    ]


@login_required
@require_POST
def comparison_run(request, uuid):
    comparison = get_object_or_404(Comparison.objects.select_related("project"), uuid=uuid)
    if not can_change(request.user, comparison):
        raise Http404("No comparison with this UUID is visible to you.")
    options = {
        "proposers": request.POST.getlist("proposers"),
        "text_ranker": request.POST.get("text_ranker", "auto"),
        "segmentation": request.POST.get("segmentation", "watershed"),
    }
    for name in ("hypotheses", "resamples", "permutations"):
        value = request.POST.get(name, "").strip()
        if value:
            try:
                options[name] = int(value)
            except ValueError:
                messages.error(request, f"{name} must be a whole number; got {value!r}.")
                return redirect("comparison-detail", uuid=comparison.uuid)
    try:
        start_run(comparison, options, request.user)
    except ValidationError as error:
        detail = error.detail.get("options", error.detail) if isinstance(error.detail, dict) else error.detail
        messages.error(request, " ".join(str(item) for item in (detail if isinstance(detail, list) else [detail])))
    return redirect("comparison-detail", uuid=comparison.uuid)


def comparison_image(request, uuid, image_uuid, variant):
    comparison = _viewable_or_404(request, uuid)
    if variant not in ("thumbnail", "image"):
        raise Http404(f"Unknown image variant {variant!r}; use thumbnail or image.")
    image = get_object_or_404(ComparisonImage, comparison=comparison, uuid=image_uuid)
    field = image.thumbnail if variant == "thumbnail" else image.image
    response = FileResponse(field.open("rb"), content_type="image/jpeg" if variant == "thumbnail" else "image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def comparison_export(request, uuid, export_format):
    comparison = _viewable_or_404(request, uuid)
    exporters = {"csv": export_csv, "json": export_json, "html": export_html}
    if export_format not in exporters:
        raise Http404(f"Unknown export format {export_format!r}; use csv, json or html.")
    return exporters[export_format](comparison)
