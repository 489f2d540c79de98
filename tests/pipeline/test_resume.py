"""Resumable, reproducible runs: a run killed with SIGKILL and started again completes, and its
artifacts are byte-identical to an uninterrupted run of the same recipe (.ort included: see
toolchain/stages/_ort_convert.py for what that took)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolchain.fsio import sha256_file

pytestmark = pytest.mark.slow

# Files no measurement decides. cpu-server's shipped digits-fast.onnx is the candidate its
# `ship = "fastest"` rule picked by timing, so it is checked through the candidates (below).
ARTIFACTS = ["cpu-server/digits-fast.fp32.onnx", "arm-mobile/digits-fast.ort", "arm-mobile/digits-fast.fp32.ort",
             "arm-mobile/mobile_report.json"]
SHIPPED = {"cpu-server": "digits-fast.onnx", "arm-mobile": "digits-fast.ort"}


def _run(recipe: Path, out: Path, targets_dir: Path, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "toolchain.cli", "run", str(recipe), "--out", str(out), "--targets-dir", str(targets_dir)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def _wait_for(path_glob: str, root: Path, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(root.glob(path_glob)):
            return True
        time.sleep(0.05)
    return False


def test_kill_9_then_rerun_gives_identical_artifacts(tmp_path, reduced_recipe, fast_targets_dir):
    reference = tmp_path / "reference"
    assert _run(reduced_recipe, reference, fast_targets_dir).wait(timeout=600) == 0

    killed = tmp_path / "killed"
    proc = _run(reduced_recipe, killed, fast_targets_dir)
    # Kill in the middle of the work: once training is done and an export is being built.
    assert _wait_for("cache/export/.*.tmp", killed, timeout=300) or _wait_for("cache/export/*", killed, timeout=1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "report.json").exists()
    leftovers = [p for p in (killed / "cache").rglob("*.tmp")]
    assert _run(reduced_recipe, killed, fast_targets_dir).wait(timeout=600) == 0
    for rel in ARTIFACTS:
        assert sha256_file(killed / rel) == sha256_file(reference / rel), rel
    # every candidate weighed is byte-identical between the runs, and each run shipped the one its report names
    ref_doc, doc = (json.loads((d / "report.json").read_text())["targets"] for d in (reference, killed))
    for target, name in SHIPPED.items():
        ref_candidates, candidates = ref_doc[target]["candidates"], doc[target]["candidates"]
        assert set(candidates) == set(ref_candidates) and len(candidates) >= 2, target
        for label, path in candidates.items():
            assert sha256_file(Path(path)) == sha256_file(Path(ref_candidates[label])), (target, label)
        for root, report in ((reference, ref_doc), (killed, doc)):
            shipped = report[target]["shipped"]
            assert sha256_file(root / target / name) == sha256_file(Path(report[target]["candidates"][shipped])), (target, shipped)
    # temp directories of the killed run are never trusted as cache entries
    assert all(not (p / "record.json").exists() or p.name.endswith(".tmp") for p in leftovers)
