from django import template

from biovlm_web.core.jobs import job_kinds

register = template.Library()


@register.filter
def job_title(job) -> str:
    """Return the job kind's title, such as "Verify dataset integrity", or the raw kind if unknown."""
    kind = job_kinds().get(job.kind)
    return kind.title if kind else job.kind
