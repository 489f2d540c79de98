"""Where `edgeopt drift` takes its thresholds from: the target profile's [drift] recorded in the
package, then a budgets file's [drift] table, then --psi/--ks-pvalue; and the profile's
min_bin_count deciding how coarse the package's reference histograms are."""

from __future__ import annotations

import json
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_drift_inputs import gru_like, samples

from toolchain.cli.main import main
from toolchain.config.base import to_toml
from toolchain.config.drift import DriftSettings
from toolchain.config.target import load_target_file
from toolchain.drift.reference import DRIFT_REFERENCE_NAME
from toolchain.errors import EXIT_BAD_INPUT, ConfigError
from toolchain.gating.budgets_file import load_budgets, load_drift_table
from toolchain.resources import bundled_dir


def _profile_dir(tmp: Path, drift: dict) -> Path:
    data = tomllib.loads((bundled_dir("targets") / "cpu-server.toml").read_text())
    d = tmp / "targets"
    d.mkdir(exist_ok=True)
    (d / "cpu-server.toml").write_text(to_toml({**data, "drift": drift}))
    return d


def _package(tmp: Path, drift: dict) -> Path:
    np.savez(tmp / "calib.npz", **samples(300, 1))
    pkg = tmp / "m.zip"
    assert (
        main(
            [
                "package",
                str(gru_like(tmp / "m.onnx")),
                "--target",
                "cpu-server",
                "--data",
                str(tmp / "calib.npz"),
                "--targets-dir",
                str(_profile_dir(tmp, drift)),
                "--out",
                str(pkg),
            ]
        )
        == 0
    )
    return pkg


@pytest.fixture(scope="module")
def lenient(tmp_path_factory) -> Path:
    """Built for a profile whose [drift] psi no shift reaches and with coarse bins (min_bin_count 40)."""
    return _package(tmp_path_factory.mktemp("lenient"), {"psi": 50.0, "min_bin_count": 40})


def _drift(tmp: Path, pkg: Path, capsys, *extra: str) -> tuple[int, dict | str]:
    np.savez(tmp / "live.npz", **samples(200, 3, shift=1.0))  # every x feature shifted: PSI ~1
    code = main(["drift", str(pkg), "--data", str(tmp / "live.npz"), "--json", *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code in (0, 1) else out.err)


def test_profile_defaults_are_todays_values_and_unknown_keys_are_refused(tmp_path):
    assert DriftSettings().model_dump() == {"psi": 0.2, "ks_pvalue": 0.01, "min_bin_count": 10}
    with pytest.raises(ConfigError, match="psii.*known.*min_bin_count"):
        load_target_file(_profile_dir(tmp_path, {"psii": 1.0}) / "cpu-server.toml")
    with pytest.raises(ConfigError, match="min_bin_count"):
        load_target_file(_profile_dir(tmp_path, {"min_bin_count": 0}) / "cpu-server.toml")


def test_package_carries_its_profiles_thresholds_and_bin_floor(lenient):
    with zipfile.ZipFile(lenient) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        ref = json.loads(zf.read(DRIFT_REFERENCE_NAME))
    assert manifest["target_profile"]["drift"] == {"psi": 50.0, "ks_pvalue": 0.01, "min_bin_count": 40}
    assert ref["min_bin_count"] == 40
    counts = [n for c in ref["inputs"]["x"]["channels"] for n in c["histogram"]["counts"]]
    counts += ref["outputs"]["y"]["histogram"]["counts"]
    assert min(counts) >= 40 and sum(ref["inputs"]["x"]["channels"][0]["histogram"]["counts"]) == 300


def test_thresholds_come_from_the_package_then_the_budgets_file_then_flags(lenient, tmp_path, capsys):
    code, doc = _drift(tmp_path, lenient, capsys)
    assert code == 0 and doc["thresholds"]["psi"] == 50.0  # the profile's psi: nothing reaches it
    assert doc["thresholds"]["sources"] == {"psi": "profile", "ks_pvalue": "profile"}
    assert max(r["psi"] for r in doc["rows"]) > 0.5  # the shift is there; the threshold decided
    budgets = tmp_path / "budgets.toml"
    budgets.write_text("schema_version = 1\n[cpu-server]\nmax_p50_ms = 5.0\n[drift]\npsi = 0.2\n")
    code, doc = _drift(tmp_path, lenient, capsys, "--budgets", str(budgets))
    assert code == 1 and "input x" in doc["flagged"]
    assert doc["thresholds"]["sources"] == {"psi": "budgets", "ks_pvalue": "profile"}
    code, doc = _drift(
        tmp_path, lenient, capsys, "--budgets", str(budgets), "--psi", "40", "--ks-pvalue", "0.05"
    )
    assert code == 0 and doc["thresholds"]["psi"] == 40.0 and doc["thresholds"]["ks_pvalue"] == 0.05
    assert doc["thresholds"]["sources"] == {"psi": "flag", "ks_pvalue": "flag"}


def test_a_package_built_before_drift_settings_uses_the_defaults(tmp_path, capsys):
    from toolchain.drift.compare import resolve_thresholds

    thresholds, sources = resolve_thresholds(
        {"name": "cpu-server"}, ("flag", {"psi": None, "ks_pvalue": None})
    )
    assert thresholds.model_dump() == {"psi": 0.2, "ks_pvalue": 0.01}
    assert sources == {"psi": "default", "ks_pvalue": "default"}


def test_budgets_file_drift_table_is_validated_for_drift_and_gate_alike(tmp_path):
    f = tmp_path / "b.toml"
    f.write_text("schema_version = 1\n[cpu-server]\nmax_p50_ms = 5.0\n[drift]\nks_pvalue = 0.001\n")
    assert load_drift_table(f) == {"ks_pvalue": 0.001}  # unset keys fall back to the package's
    assert list(load_budgets(f)) == ["cpu-server"]  # [drift] is not read as a target
    f.write_text(
        "schema_version = 1\n[cpu-server]\nmax_p50_ms = 5.0\n[drift]\npsi = 0.2\nmin_bin_count = 5\n"
    )
    for load in (load_drift_table, load_budgets):
        with pytest.raises(ConfigError, match="unknown key .min_bin_count.; known keys here: ks_pvalue, psi"):
            load(f)
    f.write_text("schema_version = 1\n[cpu-server]\nmax_p50_ms = 5.0\n")
    with pytest.raises(ConfigError, match=r"no \[drift\] table"):
        load_drift_table(f)


def test_bad_threshold_flags_are_exit_2(lenient, tmp_path, capsys):
    code, err = _drift(tmp_path, lenient, capsys, "--ks-pvalue", "1.5")
    assert code == EXIT_BAD_INPUT and "--ks-pvalue" in err
