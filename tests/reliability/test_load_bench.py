"""bench/load.py for a few seconds with two clients: it must finish cleanly and run its integrity check."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_load_bench_short_run():
    command = [sys.executable, "bench/load.py", "--clients", "2", "--seconds", "4", "--baseline-seconds", "2"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]

    checked = re.search(r"Integrity check: (\d+) stored files compared by sha256, (\d+) jobs checked\.", output)
    assert checked, output[-3000:]
    assert int(checked.group(1)) >= 1
    assert int(checked.group(2)) >= 1
    assert re.search(r"Jobs: \d+ succeeded, 0 failed or cancelled, 0 unfinished\.", output)
    assert "Result: 0 request errors, 0 integrity problems." in output
    for kind in ("page: project", "upload: chunk", "job: submit", "websocket: snapshot"):
        assert kind in output
