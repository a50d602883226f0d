"""Home page data: the three capabilities, the job queues and workers, and the model roles."""

from __future__ import annotations

import logging

from django.conf import settings
from django.urls import reverse

from biovlm_web.core.models import Job

logger = logging.getLogger(__name__)

# Each capability: its title, what it does, the page of a project that starts it with that
# link's text (not the project's name, which other links on the page carry), and the job
# kinds and result key of its finished runs.
CAPABILITIES = (
    {
        "key": "cryoet",
        "title": "Cryo-ET spatial query",
        "summary": "Pick particles in an MRC tomogram, classify them with APT-ViT and query the particle map.",
        "project_url": "tomogram-list",
        "anchor": "",
        "link_text": "Tomograms",
        "kinds": ("tomogram_run",),
        "result_key": "run_url",
    },
    {
        "key": "comparisons",
        "title": "Set-difference comparison",
        "summary": "Rank descriptions of what is more true of image group A than of group B, with evidence.",
        "project_url": "project-detail",
        "anchor": "#comparisons",
        "link_text": "Comparisons",
        "kinds": ("setdiff_comparison", "setdiff_comparison_models"),
        "result_key": "comparison_url",
    },
    {
        "key": "anomalies",
        "title": "Lab video anomaly review",
        "summary": "Fit a scene on normal videos, flag what differs in new ones, and review each flagged event.",
        "project_url": "project-detail",
        "anchor": "#anomaly-scenes",
        "link_text": "Anomaly scenes",
        "kinds": ("anomaly_video_run",),
        "result_key": "run_url",
    },
)
MAX_PROJECT_LINKS = 3


def capabilities(projects) -> list[dict]:
    """Return each capability with links into the first projects and its newest finished result."""
    linked_projects = list(projects[:MAX_PROJECT_LINKS])
    rows = []
    for capability in CAPABILITIES:
        latest = (
            Job.objects.filter(project__in=projects, kind__in=capability["kinds"], status=Job.Status.SUCCEEDED)
            .select_related("project")
            .order_by("-finished_at")
            .first()
        )
        rows.append(
            {
                **capability,
                "links": [
                    (project.name, reverse(capability["project_url"], args=[project.uuid]) + capability["anchor"])
                    for project in linked_projects
                ],
                "latest": latest,
                "latest_url": (latest.result or {}).get(capability["result_key"]) if latest else None,
            }
        )
    return rows


def queue_status() -> dict:
    """Return the length of every RQ queue and the state of every registered worker.

    ``error`` is set instead when Redis does not respond, so the page still renders.
    """
    import django_rq
    from rq import Worker

    try:
        queues = []
        for name in settings.RQ_QUEUES:
            queue = django_rq.get_queue(name)
            queues.append({"name": name, "queued": queue.count, "running": queue.started_job_registry.count})
        connection = django_rq.get_connection("default")
        workers = []
        for worker in sorted(Worker.all(connection=connection), key=lambda item: item.name):
            workers.append(
                {
                    "name": worker.name,
                    "state": str(worker.get_state()),
                    "queues": ", ".join(worker.queue_names()),
                    "current_job": worker.get_current_job_id() or "",
                }
            )
    except Exception as error:  # redis-py raises ConnectionError, TimeoutError or OSError subclasses
        logger.warning("Reading the job queues failed: %s", error)
        return {"queues": [], "workers": [], "error": f"The job queue is unavailable: {error}"}
    return {"queues": queues, "workers": workers, "error": ""}


def model_rows() -> tuple[list[dict], Job | None, Job | None]:
    """Return one row per model role with the state the newest finished model check found,
    that check, and the model check still queued or running, if any."""
    from biovlm_web.core.models_status import latest_check, role_rows

    check, pending = latest_check()
    return role_rows(settings, check), check, pending
