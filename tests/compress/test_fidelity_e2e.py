"""Fidelity through `edgeopt compress`: measured for every target, gated by default without
labels, and a floor the artifact misses fails the run (exit 1) instead of passing it."""

# ruff: noqa: F811  (pytest fixtures imported from test_compress are "redefined" as test arguments)

from __future__ import annotations

import json
import tomllib

import pytest
from test_compress import _cli, mlp, targets  # noqa: F401

from toolchain.config.base import to_toml
from toolchain.config.budgets import DEFAULT_MIN_SQNR_DB

pytestmark = pytest.mark.slow


def _compress(model, targets_dir, out, capsys, data="random"):
    code, stdout, _ = _cli([model, "--target", "cpu-server", "--data", data, "--out", out,
                            "--targets-dir", targets_dir, "--json"], capsys)
    return code, json.loads(stdout)


def test_without_labels_the_default_fidelity_floor_is_measured_and_gated(mlp, targets, tmp_path, capsys):
    code, doc = _compress(mlp["model"], targets, tmp_path / "out", capsys)
    t = doc["targets"]["cpu-server"]
    verdict = t["budgets"]["min_sqnr_db"]
    assert verdict["limit"] == DEFAULT_MIN_SQNR_DB and verdict["value"] == t["min_sqnr_db"]
    assert t["min_sqnr_db"] >= DEFAULT_MIN_SQNR_DB and verdict["pass"] is True and code == 0
    out = t["fidelity"]["outputs"][t["fidelity"]["worst_output"]]
    assert out["cosine"] > 0.99 and out["max_abs_diff"] > 0  # int8 is close, not identical
    # labelled data: the accuracy budget looks at the outputs, no default floor is added
    code, doc = _compress(mlp["model"], targets, tmp_path / "labelled", capsys, data=str(mlp["data"]))
    assert "min_sqnr_db" not in doc["targets"]["cpu-server"]["budgets"]
    assert doc["targets"]["cpu-server"]["min_sqnr_db"] > 0  # still measured and reported


def test_an_artifact_below_its_fidelity_floor_fails_the_run(mlp, targets, tmp_path, capsys):
    strict = tmp_path / "strict-targets"
    strict.mkdir()
    data = tomllib.loads((targets / "cpu-server.toml").read_text())
    data["budgets"]["min_sqnr_db"] = 120.0  # int8 cannot reach this: 120 dB is float rounding
    (strict / "cpu-server.toml").write_text(to_toml(data))
    code, doc = _compress(mlp["model"], strict, tmp_path / "out", capsys)
    t = doc["targets"]["cpu-server"]
    assert code == 1 and doc["passed"] is False
    assert t["budgets"]["min_sqnr_db"]["pass"] is False and t["min_sqnr_db"] < 120.0
