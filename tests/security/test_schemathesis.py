"""schemathesis against the served OpenAPI schema on a live server: no operation returns 5xx.

It runs schemathesis's command line on the schema at /api/schema/ of a Uvicorn server on
127.0.0.1, signed in with the owner's API token, with a few examples per operation and a time
budget, so the run stays within a couple of minutes.
"""

import subprocess
import sys

import pytest

pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed; `make install-dev` installs it from requirements-dev.txt"
)

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 5
MAX_SECONDS = 90


def test_no_server_errors(live_asgi, personas, tmp_path):
    from rest_framework.authtoken.models import Token

    from biovlm_web.core.jobs import submit_job

    token = Token.objects.create(user=personas["owner"])
    submit_job(personas["project"], "test_steps", {"steps": 1}, user=personas["owner"])
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{live_asgi.url}/api/schema/?format=json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_SECONDS),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Token {token.key}",
        "--report",
        "ndjson",
        "--report-dir",
        str(tmp_path),
        "--no-color",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=MAX_SECONDS + 120)
    output = result.stdout + result.stderr
    failures = output[output.find("FAILURES") : output.find("SUMMARY")] if "FAILURES" in output else output
    assert "Server error" not in output, failures[:20000]
    assert result.returncode == 0, output[-6000:]
