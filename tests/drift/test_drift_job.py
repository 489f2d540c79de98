"""examples/drift_job.sh end to end with the embedded MLflow registry: no drift leaves the alias,
drift moves it back (slow: MLflow creates its SQLite store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_extra
from test_drift import _package

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _edgeopt(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["edgeopt", *args], check=False, env=env, capture_output=True, text=True, timeout=300)


def test_drift_job_rolls_production_back_only_on_drift(tmp_path):
    require_extra("mlflow", "mlflow")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "REGISTRY": f"sqlite:///{tmp_path}/mlruns.db", "MODEL": "digits-drift"}
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        pkg, data = _package(tmp_path / version, "digits")
        assert _edgeopt(env, "registry", "register", str(pkg), "--name", "digits-drift",
                        "--registry", env["REGISTRY"]).returncode == 0
    for number in ("1", "2"):
        assert _edgeopt(env, "registry", "promote", "digits-drift", number, "--alias", "production",
                        "--registry", env["REGISTRY"]).returncode == 0
    job = [str(ROOT / "examples" / "drift_job.sh")]
    seen = []
    for name, x in (("same", data.x_test), ("bright", np.clip(data.x_test * 1.3, 0, 1))):
        np.savez(tmp_path / f"{name}.npz", x=x)
        code = subprocess.run(job, check=False, env={**env, "LIVE": str(tmp_path / f"{name}.npz")},
                              capture_output=True, text=True, timeout=600).returncode
        listing = _edgeopt(env, "registry", "list", "digits-drift", "--json", "--registry", env["REGISTRY"])
        production = [v["version"] for v in json.loads(listing.stdout)["versions"] if "production" in v["aliases"]]
        seen.append((name, code, production))
    assert seen == [("same", 0, [2]), ("bright", 1, [1])]
