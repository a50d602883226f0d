"""Role rows shown by the models page and the models API."""

from analysis.backends import ROLES, SourceError, parse_source
from analysis.backends.registry import DEFAULT_SOURCES
from analysis.backends.spec import ROLE_TITLES
from biovlm_web.core.models import Job

CHECK_KIND = "check_models"


def configured_sources(settings) -> dict[str, str]:
    return {**DEFAULT_SOURCES, **settings.MODEL_SOURCES}


def latest_check():
    """Return (the newest finished model check, the model check still queued or running), either may be None."""
    checks = Job.objects.filter(kind=CHECK_KIND, project__isnull=True)
    finished = checks.filter(status=Job.Status.SUCCEEDED).order_by("-finished_at").first()
    pending = checks.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).order_by("-created_at").first()
    return finished, pending


def role_rows(settings, check: Job | None) -> list[dict]:
    """Build one row per role from the configured source, whether it parses, and the last check's findings."""
    checked = {row["role"]: row for row in (check.result.get("roles", []) if check else [])}
    sources = configured_sources(settings)
    rows = []
    for role in ROLES:
        text = sources[role]
        try:
            source = parse_source(text, role)
            config_error = ""
        except SourceError as error:
            source = None
            config_error = str(error)
        found = checked.get(role)
        if config_error:
            state, reason = "invalid", config_error
        elif source.kind == "none":
            state, reason = "off", "No model is configured; the pipelines use their weight-free path."
        elif found is None:
            state, reason = "unchecked", "Not checked yet: run a model check."
        elif found.get("source") != text:
            state, reason = "unchecked", "The source changed since the last check: run a model check."
        elif found["available"]:
            state, reason = "available", ""
        else:
            state, reason = "unavailable", found["reason"]
        rows.append(
            {
                "role": role,
                "title": ROLE_TITLES[role],
                "source": str(source) if source else text,
                "state": state,
                "reason": reason,
                "info": found.get("info", {}) if found and state == "available" else {},
            }
        )
    return rows
