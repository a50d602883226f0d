import io
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.integrity import FileToVerify, verify_files
from analysis.progress import ConsoleReporter, RecordingReporter, Subtask, clamp_fraction


def test_clamp_fraction():
    assert clamp_fraction(-1) == 0.0
    assert clamp_fraction(2) == 1.0
    assert clamp_fraction(float("nan")) == 0.0
    assert clamp_fraction(0.25) == 0.25


def test_subtask_maps_into_parent_range():
    parent = RecordingReporter()
    Subtask(parent, "picking", 0.5, 0.75).report("slab 2", 0.5)
    assert parent.reports == [("picking", 0.625, "slab 2")]


def test_console_reporter_prints_steps():
    stream = io.StringIO()
    reporter = ConsoleReporter(stream, step=0.5)
    for fraction in (0.0, 0.1, 0.2, 0.6, 1.0):
        reporter.report("hashing", fraction)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[-1].endswith("hashing 100.0%")


def test_verify_files_finds_corruption(tmp_path):
    good = tmp_path / "good.bin"
    bad = tmp_path / "bad.bin"
    good.write_bytes(b"a" * 3_000_000)
    bad.write_bytes(b"b" * 10)
    import hashlib

    reporter = RecordingReporter()
    result = verify_files(
        [
            FileToVerify("good.bin", 3_000_000, hashlib.sha256(good.read_bytes()).hexdigest(), lambda: good.open("rb")),
            FileToVerify("bad.bin", 10, "0" * 64, lambda: bad.open("rb")),
            FileToVerify("gone.bin", 5, None, lambda: (tmp_path / "gone.bin").open("rb")),
        ],
        reporter,
    )
    assert result["checked"] == 3
    assert result["failed"] == 2
    assert [item["ok"] for item in result["files"]] == [True, False, False]
    assert "sha256 is" in result["files"][1]["problem"]
    assert "cannot be read" in result["files"][2]["problem"]
    fractions = [fraction for _, fraction, _ in reporter.reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


def test_cli_verify_against_manifest(tmp_path):
    target = tmp_path / "volume.mrc"
    target.write_bytes(b"x" * 1000)
    import hashlib

    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    manifest = tmp_path / "SHA256SUMS"
    manifest.write_text(f"{digest}  volume.mrc\n")
    root = Path(__file__).resolve().parents[2]
    ok = subprocess.run([sys.executable, "-m", "analysis", "verify", str(target), "--manifest", str(manifest)], cwd=root, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert digest in ok.stdout
    manifest.write_text(f"{'0' * 64}  volume.mrc\n")
    failed = subprocess.run([sys.executable, "-m", "analysis", "verify", str(target), "--manifest", str(manifest)], cwd=root, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "FAILED" in failed.stdout


def test_analysis_does_not_import_django():
    code = "import sys, analysis.progress, analysis.integrity, analysis.__main__; print('django' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert output.stdout.strip() == "False", output.stderr


@pytest.mark.django_db
def test_job_reporter_throttles_and_stores(personas, redis_conn, settings):
    from biovlm_web.core.jobs import submit_job
    from biovlm_web.core.models import Job
    from biovlm_web.core.progress import JobProgressReporter

    job = submit_job(personas["project"], "test_steps", {}, user=personas["owner"])
    Job.objects.filter(pk=job.pk).update(status="running")
    job.refresh_from_db()
    reporter = JobProgressReporter(job, min_interval=3600)
    for step in range(100):
        reporter.report("counting", step / 100)
    reporter.report("counting", 1.0, "done")
    reporter.log("a line with <markup>")
    reporter.flush()
    job.refresh_from_db()
    assert reporter.writes == 3  # the new stage, the finished fraction, the final flush
    assert job.progress == 1.0
    assert job.log[-1].endswith("a line with <markup>")
    assert job.snapshot()["log_total"] == len(job.log)
