"""`edgeopt batch` on the local executor, end to end: a driver killed mid-batch resumes from the
cache; --gate gives the batch's exit code and --junit every run's budgets."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from batch_fixtures import batch_argv, run_batch, subprocess_env, tiny_recipe

pytestmark = pytest.mark.slow


def _wait_for(path_glob, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not list(path_glob()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_killed_batch_resumes_from_the_cache_and_gates_in_one_exit_code(tmp_path, fast_targets_dir):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    out = tmp_path / "out"
    argv = batch_argv([spec], out, fast_targets_dir, "--workers", "1")
    driver = subprocess.Popen(argv, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (out / "cache").glob("prune/*/record.json"), timeout=600)
        driver.send_signal(signal.SIGKILL)  # mid-batch: trained and pruned, nothing converted yet
    finally:
        driver.communicate(timeout=60)
    assert not (out / "batch.json").exists()

    resumed = run_batch([spec], out, fast_targets_dir, "--workers", "1")
    assert resumed.returncode in (0, 1), resumed.stderr[-2000:]
    doc = json.loads(resumed.stdout)
    assert sorted(doc["runs"]) == ["tabular-mlp--arm-mobile", "tabular-mlp--cpu-server"]
    assert "train: cached" in resumed.stderr and "prune: cached" in resumed.stderr
    assert "train: running" not in resumed.stderr
    assert not list((out / "cache").glob("*/.*.tmp"))  # the killed run's half-built entries are gone
    for run in doc["runs"].values():
        report = json.loads(Path(run["report"]).read_text())
        assert report["targets"][run["target"]]["passed"] == run["passed"]

    budgets = tmp_path / "budgets.toml"
    budgets.write_text(
        "schema_version = 1\n[cpu-server]\nmax_bytes = 1000000000\n[arm-mobile]\nmax_bytes = 1\n"
    )
    junit = tmp_path / "batch.xml"
    gated = run_batch(
        [spec], out, fast_targets_dir, "--workers", "1", "--gate", str(budgets), "--junit", str(junit)
    )
    assert gated.returncode == 1, gated.stderr[-2000:]  # arm-mobile's 1-byte budget fails
    assert ": running" not in gated.stderr  # every stage cached, benchmarks too (same host)
    suites = {s.get("name"): s for s in ET.parse(junit).getroot()}
    assert set(suites) == {"tabular-mlp--cpu-server", "tabular-mlp--arm-mobile"}
    assert suites["tabular-mlp--cpu-server"].get("failures") == "0"
    assert suites["tabular-mlp--arm-mobile"].get("failures") == "1"
    gated_doc = json.loads(gated.stdout)
    assert gated_doc["runs"]["tabular-mlp--arm-mobile"]["budgets"]["max_bytes"]["value"] > 1

    budgets.write_text(
        "schema_version = 1\n[cpu-server]\nmax_bytes = 1000000000\n[arm-mobile]\nmax_bytes = 1000000000\n"
    )
    passing = run_batch([spec], out, fast_targets_dir, "--workers", "1", "--gate", str(budgets))
    assert passing.returncode == 0, passing.stderr[-2000:]
