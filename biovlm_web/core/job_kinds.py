"""Platform job kinds of the core app."""

from biovlm_web.core.jobs import JobKind, register_job_kind


def run_check_models(job, reporter) -> dict:
    """Load every configured model role on this worker and record what loaded, where, and why not."""
    from analysis.backends import ROLES
    from biovlm_web.core.jobs import worker_name
    from biovlm_web.core.model_registry import get_registry

    registry = get_registry()
    roles = []
    for index, role in enumerate(ROLES):
        reporter.report("loading models", index / len(ROLES), f"Loading the {role} model")
        status = registry.status(role, load=True)
        roles.append(status.as_dict())
        reporter.log(f"{role}: {'loaded on ' + status.info['device'] if status.available else status.reason}")
    reporter.report("loading models", 1.0, f"{sum(r['available'] for r in roles)} of {len(roles)} roles available")
    return {"roles": roles, "worker": worker_name()}


def validate_check_models(project, params: dict) -> dict:
    """Reject parameters: the sources a check loads come only from the server's settings."""
    from biovlm_web.core.jobs import JobError

    if params:
        raise JobError(
            f"check_models takes no parameters, got {', '.join(sorted(params))}. Model sources are set by an "
            "administrator through BIOVLM_MODEL_<ROLE> settings."
        )
    return {}


register_job_kind(
    JobKind(
        name="check_models",
        title="Check models",
        function=run_check_models,
        queue="gpu",
        validate=validate_check_models,
        result_template="core/job_check_models_result.html",
    )
)

from biovlm_web.core import demo  # noqa: E402, F401  registers the demo's follow-up job kind
