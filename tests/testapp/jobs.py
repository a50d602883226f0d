"""A job kind that takes a set time, so tests can watch, cancel and kill a running job."""

import time

from biovlm_web.core.jobs import JobError, JobKind, register_job_kind


def _validate(project, params):
    steps = int(params.get("steps", 10))
    delay = float(params.get("delay", 0.05))
    if not 1 <= steps <= 10_000 or not 0 <= delay <= 10:
        raise JobError("steps must be 1 to 10000 and delay 0 to 10 seconds.")
    return {"steps": steps, "delay": delay, "fail_at": params.get("fail_at")}


def run_steps(job, reporter):
    steps = job.params["steps"]
    for step in range(1, steps + 1):
        time.sleep(job.params["delay"])
        if job.params.get("fail_at") == step:
            raise JobError(f"Step {step} failed on purpose.")
        reporter.report("counting", step / steps, f"step {step} of {steps}")
    return {"steps": steps}


register_job_kind(JobKind(name="test_steps", title="Test steps", function=run_steps, validate=_validate))
