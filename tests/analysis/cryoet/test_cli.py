"""``python -m analysis cryoet`` commands run in subprocesses on a small simulated tomogram."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.cryoet.io import read_particles
from analysis.cryoet.spatial import SpatialMap

REPO_ROOT = Path(__file__).resolve().parents[3]


def cryoet(*arguments, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "analysis", "cryoet", *[str(item) for item in arguments]]
    environment = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=environment)


def assert_usage_error(completed: subprocess.CompletedProcess, *fragments: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last_line


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("cryoet-cli")
    completed = cryoet("simulate", "sim", "--shape", 48, 128, 128, "--snr", 1, "--seed", 4, cwd=directory)
    assert completed.returncode == 0, completed.stderr
    return directory


@pytest.fixture(scope="module")
def run_summary(workspace) -> dict:
    completed = cryoet(
        "run", "sim/simulated_4.mrc", "--min-score", 3, "--output", "run/picks.csv", "--map", "run/map.npz",
        cwd=workspace,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "classify" in completed.stderr
    return json.loads(completed.stdout)


def test_simulate_writes_tomogram_and_picks(workspace):
    assert (workspace / "sim" / "simulated_4.mrc").is_file()
    reference = read_particles(workspace / "sim" / "Picks")
    assert len(reference) > 0


def test_simulate_rejects_negative_snr(workspace):
    completed = cryoet("simulate", "other", "--snr", -1, cwd=workspace)
    assert_usage_error(completed, "--snr", "positive")
    assert not (workspace / "other").exists()


def test_pick_writes_star(workspace):
    completed = cryoet("pick", "sim/simulated_4.mrc", "--min-score", 3, "--output", "pick/picks.star", cwd=workspace)
    assert completed.returncode == 0, completed.stderr
    picks = read_particles(workspace / "pick" / "picks.star", voxel_size=10.0)
    assert len(picks) > 0
    # The tomogram is 128 x 128 x 48 voxels of 10 Å.
    assert np.all(picks.positions >= 0)
    assert np.all(picks.positions <= [1280, 1280, 480])


def test_pick_missing_tomogram(workspace):
    completed = cryoet("pick", "absent.mrc", "--output", "picks.csv", cwd=workspace)
    assert_usage_error(completed, "not found", "absent.mrc")


def test_pick_template_needs_class(workspace):
    completed = cryoet("pick", "sim/simulated_4.mrc", "--method", "template", "--output", "t.csv", cwd=workspace)
    assert_usage_error(completed, "--template-class")


def test_classify_writes_labelled_csv(workspace):
    reference = workspace / "sim" / "Picks"
    completed = cryoet("classify", "sim/simulated_4.mrc", reference, "--output", "labelled.csv", cwd=workspace)
    assert completed.returncode == 0, completed.stderr
    labelled = read_particles(workspace / "labelled.csv")
    assert len(labelled) == len(read_particles(reference))
    assert set(labelled.class_names) <= {*read_particles(reference).class_names, "background"}


def test_classify_missing_checkpoint(workspace):
    completed = cryoet(
        "classify", "sim/simulated_4.mrc", "sim/Picks", "--checkpoint", "none.pt", "--output", "x.csv", cwd=workspace
    )
    assert_usage_error(completed, "Checkpoint not found", "none.pt")


def test_run_counts_and_files(workspace, run_summary):
    assert run_summary["picked"] == (
        run_summary["kept"] + run_summary["rejected_as_background"] + run_summary["merged_duplicates"]
    )
    assert run_summary["produced_by"].startswith("DoG + APT-ViT (aptvit-small, sha256 ")
    assert list(run_summary["timings_seconds"]) == ["read", "pick", "classify", "map"]
    assert len(read_particles(workspace / "run" / "picks.csv")) == run_summary["kept"]
    assert len(SpatialMap.load(workspace / "run" / "map.npz")) == run_summary["kept"]


def test_run_rejects_map_suffix(workspace):
    completed = cryoet("run", "sim/simulated_4.mrc", "--output", "p.json", "--map", "map.txt", cwd=workspace)
    assert_usage_error(completed, "map.txt", ".npz")


def test_query_tool_with_params(workspace, run_summary):
    completed = cryoet(
        "query", "run/map.npz", "--tool", "region_composition", "--param", "shape=tomogram", cwd=workspace
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["call"] == {"tool": "region_composition", "params": {"shape": "tomogram"}, "planner": "command line"}
    assert output["result"]["count"] == run_summary["kept"]


def test_query_question(workspace, run_summary):
    completed = cryoet("query", "run/map.npz", "--question", "how many ribosomes are there?", cwd=workspace)
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["call"]["tool"] == "region_composition"
    assert output["call"]["planner"] == "grammar"
    assert output["result"]["count"] == run_summary["kept"]


def test_query_unknown_tool(workspace, run_summary):
    completed = cryoet("query", "run/map.npz", "--tool", "volume", cwd=workspace)
    assert_usage_error(completed, "invalid choice", "volume")


def test_query_bad_param(workspace, run_summary):
    completed = cryoet("query", "run/map.npz", "--tool", "neighbors", "--param", "radius", cwd=workspace)
    assert_usage_error(completed, "--param", "radius", "KEY=VALUE")


def test_query_needs_tool_or_question(workspace, run_summary):
    completed = cryoet("query", "run/map.npz", cwd=workspace)
    assert_usage_error(completed, "--tool", "--question")


def test_evaluate_reference_against_itself(workspace):
    completed = cryoet("evaluate", "sim/Picks", "sim/Picks", cwd=workspace)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["class", "weight"]
    assert len(lines) == 8
    assert lines[-1] == "weighted F-beta (beta = 4): 1.000"


def test_evaluate_missing_reference(workspace):
    completed = cryoet("evaluate", "sim/Picks", "truth.star", cwd=workspace)
    assert_usage_error(completed, "not found", "truth.star")


def test_help_states_units(workspace):
    for command in ("simulate", "pick", "classify", "run", "query", "evaluate"):
        completed = cryoet(command, "--help", cwd=workspace)
        assert completed.returncode == 0, command
        assert "Å" in completed.stdout, command


def test_train_help_and_missing_output(workspace):
    completed = cryoet("train", "--help", cwd=workspace)
    assert completed.returncode == 0, completed.stderr
    assert "--output" in completed.stdout
    completed = cryoet("train", "--pretrain-steps", 1, cwd=workspace)
    assert completed.returncode == 2
    assert "--output" in completed.stderr
