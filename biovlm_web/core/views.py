"""Pages of the core app: projects, jobs and share links."""

import json
import logging

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from biovlm_web.core import share_guard
from biovlm_web.core.access import can_change, is_member, is_owner, projects_for, remember_share_token, request_can_view
from biovlm_web.core.jobs import JobError, cancel_job, job_kinds, reap_stale_jobs, retry_job
from biovlm_web.core.models import Job, Membership, Project, ShareLink
from biovlm_web.core.sharing import get_shareable, shareable_for_object

logger = logging.getLogger(__name__)


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class ShareLinkForm(forms.Form):
    label = forms.CharField(max_length=200, required=False)
    expires_in_hours = forms.FloatField(
        required=False, min_value=0.01, max_value=366 * 24, help_text="Leave empty for a link that lasts until revoked."
    )


@login_required
def home(request):
    return render(request, "core/home.html", _home_context(request, ProjectForm()))


def _home_context(request, form) -> dict:
    from biovlm_web.core import landing

    projects = projects_for(request.user).select_related("owner")
    recent_jobs = Job.objects.filter(project__in=projects).select_related("project")[:20]
    model_rows, model_check, pending_check = landing.model_rows()
    return {
        "projects": projects,
        "recent_jobs": recent_jobs,
        "form": form,
        "capabilities": landing.capabilities(projects),
        "queues": landing.queue_status(),
        "model_rows": model_rows,
        "model_check": model_check,
        "pending_check": pending_check,
    }


@login_required
@require_POST
def project_create(request):
    form = ProjectForm(request.POST)
    if not form.is_valid():
        # The home page again, with the errors beside the form, so they are seen where the
        # name was typed rather than in a message at the top of a long page.
        return render(request, "core/home.html", _home_context(request, form), status=400)
    with transaction.atomic():
        project = form.save(commit=False)
        project.owner = request.user
        project.save()
        Membership.objects.create(project=project, user=request.user, role=Membership.Role.OWNER)
    return redirect("project-detail", uuid=project.uuid)


def _member_project_or_404(request, uuid):
    project = get_object_or_404(Project, uuid=uuid)
    if not is_member(request.user, project):
        raise Http404("No project with this UUID is visible to you.")
    return project


@login_required
def project_detail(request, uuid):
    project = _member_project_or_404(request, uuid)
    context = {
        "project": project,
        "datasets": project.datasets.all(),
        "jobs": project.jobs.select_related("created_by")[:50],
        "memberships": project.memberships.select_related("user").order_by("user__username"),
        "is_owner": is_owner(request.user, project),
        "job_kinds": sorted(job_kinds().values(), key=lambda kind: kind.title),
    }
    return render(request, "core/project_detail.html", context)


@login_required
@require_POST
def project_members(request, uuid):
    project = _member_project_or_404(request, uuid)
    if not is_owner(request.user, project):
        return HttpResponseForbidden("Only the project owner can change members.")
    username = request.POST.get("username", "").strip()
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if request.POST.get("action") == "remove":
        if user is None or user.pk == project.owner_id:
            messages.error(request, "That user cannot be removed from this project.")
        else:
            Membership.objects.filter(project=project, user=user).delete()
            messages.success(request, f"Removed {user.username} from the project.")
    elif user is None:
        messages.error(request, f"No active user named {username!r}; check the spelling.")
    else:
        _, created = Membership.objects.get_or_create(project=project, user=user)
        if created:
            messages.success(request, f"Added {user.username} to the project.")
        else:
            messages.info(request, f"{user.username} is already a member of this project.")
    return redirect("project-detail", uuid=project.uuid)


def job_detail(request, uuid):
    job = get_object_or_404(Job.objects.select_related("project", "created_by", "retry_of"), uuid=uuid)
    if not request_can_view(request, job):
        if not request.user.is_authenticated:
            return redirect(f"{_login_url()}?next={request.path}")
        raise Http404("No job with this UUID is visible to you.")
    if job.status == Job.Status.RUNNING and reap_stale_jobs():
        job.refresh_from_db()

    member = can_change(request.user, job)
    kind = job_kinds().get(job.kind)
    context = {
        "job": job,
        "member": member,
        "read_only": not member,
        "kind_title": kind.title if kind else job.kind,
        "result_template": kind.result_template if kind else "core/job_result.html",
        "params_json": json.dumps(job.params, indent=2, sort_keys=True),
    }
    if member:
        context["share_links"] = ShareLink.objects.for_object(job).select_related("created_by")
        context["share_form"] = ShareLinkForm()
    return render(request, "core/job_detail.html", context)


def _login_url():
    from django.conf import settings
    from django.shortcuts import resolve_url

    return resolve_url(settings.LOGIN_URL)


def _member_job_or_404(request, uuid):
    job = get_object_or_404(Job.objects.select_related("project"), uuid=uuid)
    if not can_change(request.user, job):
        raise Http404("No job with this UUID is visible to you.")
    return job


@login_required
@require_POST
def job_cancel(request, uuid):
    job = _member_job_or_404(request, uuid)
    if cancel_job(job):
        messages.success(request, "Cancellation requested." if job.status == Job.Status.RUNNING else "Job cancelled.")
    else:
        messages.error(request, f"The job is {job.status} and cannot be cancelled.")
    return redirect("job-detail", uuid=job.uuid)


@login_required
@require_POST
def job_retry(request, uuid):
    job = _member_job_or_404(request, uuid)
    try:
        with transaction.atomic():
            new_job = retry_job(job, user=request.user)
    except JobError as error:
        messages.error(request, str(error))
        return redirect("job-detail", uuid=job.uuid)
    return redirect("job-detail", uuid=new_job.uuid)


@login_required
@require_POST
def share_create(request, target_type, uuid):
    shareable = get_shareable(target_type)
    if shareable is None:
        raise Http404(f"Results of type {target_type!r} cannot be shared.")
    target = get_object_or_404(shareable.model, uuid=uuid)
    if not can_change(request.user, target):
        raise Http404("No result with this UUID is visible to you.")
    form = ShareLinkForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Expiry must be a number of hours between 0.01 and 8784, or empty.")
        return redirect(shareable.page_url(target))
    hours = form.cleaned_data["expires_in_hours"]
    expires_at = timezone.now() + timezone.timedelta(hours=hours) if hours else None
    ShareLink.objects.create(
        project=target.project,
        target=target,
        label=form.cleaned_data["label"],
        expires_at=expires_at,
        created_by=request.user,
    )
    messages.success(request, "Share link created.")
    return redirect(shareable.page_url(target))


@login_required
@require_POST
def share_revoke(request, uuid):
    link = get_object_or_404(ShareLink.objects.select_related("project"), uuid=uuid)
    if not is_member(request.user, link.project):
        raise Http404("No share link with this UUID is visible to you.")
    ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    messages.success(request, "Share link revoked; it no longer opens the result.")
    shareable = shareable_for_object(link.target)
    return redirect(shareable.page_url(link.target) if shareable and link.target else "home")


def share_open(request, token):
    seconds = share_guard.retry_after(request)
    if seconds is not None:
        context = {"reason": "rate_limited", "message": share_guard.too_many_failures_message(seconds)}
        response = render(request, "core/share_invalid.html", context, status=429)
        response["Retry-After"] = str(seconds)
        return response
    links = ShareLink.objects.select_related("content_type").with_tokens([token])
    link = links[0] if links else None
    if link is None:
        share_guard.record_failure(request)
        return render(request, "core/share_invalid.html", {"reason": "unknown"}, status=404)
    if link.is_revoked:
        return render(request, "core/share_invalid.html", {"reason": "revoked", "link": link}, status=410)
    if link.is_expired:
        return render(request, "core/share_invalid.html", {"reason": "expired", "link": link}, status=410)
    target = link.target
    shareable = shareable_for_object(target) if target is not None else None
    if shareable is None:
        return render(request, "core/share_invalid.html", {"reason": "unknown"}, status=404)
    remember_share_token(request.session, link.token)
    return redirect(shareable.page_url(target))


@login_required
def models_page(request):
    from django.conf import settings

    from biovlm_web.core.models_status import latest_check, role_rows

    check, pending = latest_check()
    context = {"rows": role_rows(settings, check), "check": check, "pending": pending}
    return render(request, "core/models.html", context)


@login_required
@require_POST
def models_check(request):
    from biovlm_web.core.jobs import submit_job
    from biovlm_web.core.models_status import CHECK_KIND, latest_check

    _, pending = latest_check()
    if pending is not None:
        messages.info(request, "A model check is already waiting or running; here it is.")
        return redirect("job-detail", uuid=pending.uuid)
    with transaction.atomic():
        job = submit_job(None, CHECK_KIND, {}, user=request.user)
    return redirect("job-detail", uuid=job.uuid)
