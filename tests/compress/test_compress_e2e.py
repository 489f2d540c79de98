"""`edgeopt compress` end to end: each model source through quantize -> convert -> benchmark -> gate ->
package, with the fast target profiles. Fixtures and helpers live in test_compress.py."""

# ruff: noqa: F811  (pytest fixtures imported from test_compress are "redefined" as test arguments)

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_compress import N_IN, _cli, _external, _mlp_opset9, _run, mlp, targets, torch_model  # noqa: F401

from toolchain.config.budgets import DEFAULT_MIN_SQNR_DB

pytestmark = pytest.mark.slow


def test_onnx_opset9_end_to_end_and_cached_rerun(mlp, targets, tmp_path, capsys):
    out = tmp_path / "out"
    args = [
        mlp["model"],
        "--target",
        "cpu-server",
        "--target",
        "arm-mobile",
        "--data",
        mlp["data"],
        "--out",
        out,
        "--targets-dir",
        targets,
        "--json",
    ]
    code, stdout, _ = _cli(args, capsys)
    doc = json.loads(stdout)  # stdout holds the document and nothing else
    assert code == 0 and doc["passed"] is True
    assert set(doc) >= {
        "schema_version",
        "recipe",
        "out_dir",
        "passed",
        "targets",
        "baseline",
        "stages",
        "versions",
    }
    assert doc["baseline"]["model"]["original_opset"] == 9 and doc["baseline"]["model"]["opset"] == 13
    assert doc["baseline"]["data"] == {
        **doc["baseline"]["data"],
        "task": "classify",
        "calibration_samples": 240,
        "evaluation_samples": 60,
    }
    for t in doc["targets"].values():
        assert Path(t["artifact"]).is_file() and Path(t["package"]).is_file()
        assert t["bytes"] == Path(t["artifact"]).stat().st_size and t["size_ratio"] <= 0.5
        assert t["fp32_accuracy"] == 1.0  # labels are the fp32 model's own argmax
        assert t["accuracy_drop"] == pytest.approx(1.0 - t["accuracy"]) and t["accuracy_drop"] <= 0.05
        ev = t["evaluation"]
        assert ev["kind"] == "classify" and ev["samples"] == 60
        assert ev["top1_agreement"] >= 0.95 and ev["sqnr_db"] >= 25, ev
        assert set(t["budgets"]) == {"max_size_ratio", "max_accuracy_drop", "max_peak_memory_mb"}
    assert doc["targets"]["arm-mobile"]["artifact"].endswith(".ort")
    assert json.loads((out / "report.json").read_text())["recipe"] == doc["recipe"]
    code, stdout, _ = _cli(args, capsys)
    again = json.loads(stdout)
    # every stage of the first run, and only those, is a cache hit (per target: quantize and convert
    # per candidate, fidelity, benchmark, package; plus the import)
    assert code == 0 and {s["status"] for s in again["stages"]} == {"hit"}
    assert [s["stage"] for s in again["stages"]] == [s["stage"] for s in doc["stages"]]
    assert len(again["stages"]) >= 15 and {s["status"] for s in doc["stages"]} == {"run"}
    assert again["recipe"]["hash"] == doc["recipe"]["hash"]
    _golden_samples_reruns_only_the_packages(args, doc, capsys)


def _golden_samples_reruns_only_the_packages(args: list, doc: dict, capsys) -> None:
    """Issue 17: the default packages hold no row of --data; `--golden samples` changes only the
    package stages' cache keys, and its packages hold evaluation rows that inspect --privacy finds."""
    from toolchain.cli.main import main
    from toolchain.package import read_manifest

    data = str(args[args.index("--data") + 1])
    assert doc["package_golden"] == "synthetic" and doc["calibration_data"]["kind"] == "train"
    for t in doc["targets"].values():
        assert read_manifest(Path(t["package"]))[0].golden.source == "synthetic"
        assert main(["inspect", "--privacy", t["package"], "--data", data]) == 0
    capsys.readouterr()  # the listings above
    code, stdout, _ = _cli([*args, "--golden", "samples"], capsys)
    samples = json.loads(stdout)
    misses = sorted(s["stage"] for s in samples["stages"] if s["status"] != "hit")
    assert code == 0 and misses == ["package[arm-mobile]", "package[cpu-server]"], misses
    assert samples["package_golden"] == "samples"
    for t in samples["targets"].values():
        assert read_manifest(Path(t["package"]))[0].golden.source == "samples"
        assert main(["inspect", "--privacy", t["package"], "--data", data]) == 1


def test_random_data_warns_and_checks_agreement(mlp, targets, tmp_path, capsys):
    path = _external(_mlp_opset9(), tmp_path / "m", "weights.bin")
    out = tmp_path / "out"
    code, stdout, err = _cli(
        [
            path,
            "--target",
            "cpu-server",
            "--data",
            "random",
            "--out",
            out,
            "--targets-dir",
            targets,
            "--json",
        ],
        capsys,
    )
    doc = json.loads(stdout)
    assert code == 0, err
    assert "warning: --data random" in err and "accuracy cannot be checked" in err
    t = doc["targets"]["cpu-server"]
    assert t["accuracy"] is None and "max_accuracy_drop" not in t["budgets"]
    assert t["evaluation"]["kind"] == "agreement" and t["evaluation"]["budgets_not_applied"] == ["max_accuracy_drop"]
    # Which form ships is timed (this MLP's candidates run within noise of each other), and the
    # U8S8 int8 form measures 22.4 dB on a CPU without VNNI (CI) but 39 dB as int8-stored weights:
    # the guarantee is the fidelity floor gated without labels, met by the artifact evaluated.
    floor = t["budgets"]["min_sqnr_db"]
    assert floor["limit"] == DEFAULT_MIN_SQNR_DB and floor["pass"] and floor["value"] == t["min_sqnr_db"]
    assert t["evaluation"]["top1_agreement"] >= 0.9 and t["evaluation"]["sqnr_db"] >= t["min_sqnr_db"] >= 20.0
    assert doc["baseline"]["model"]["external_data_inlined"] == ["weights.bin"]
    assert len(doc["warnings"]) == 2


def test_csv_regression_with_custom_evaluator(tmp_path, targets, capsys, monkeypatch):
    single = _mlp_opset9(n_out=1)
    src = tmp_path / "reg.onnx"
    onnx.save(single, str(src))
    x = np.random.default_rng(2).standard_normal((100, N_IN)).astype(np.float32)
    y = _run(src.read_bytes(), x)[:, 0] + 0.1  # a known offset: fp32 MSE is 0.01 exactly-ish
    rows = [",".join([*(f"f{i}" for i in range(N_IN)), "target"])]
    rows += [",".join([*(repr(float(v)) for v in xi), repr(float(yi))]) for xi, yi in zip(x, y)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "compress_eval_mod.py").write_text(
        "import numpy as np\ndef score(outputs, y):\n    return {'max_err': float(np.abs(outputs[:, 0] - y).max())}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, stdout, err = _cli(
        [
            src,
            "--target",
            "cpu-server",
            "--data",
            tmp_path / "d.csv",
            "--label-column",
            "target",
            "--evaluator",
            "compress_eval_mod:score",
            "--out",
            tmp_path / "out",
            "--targets-dir",
            targets,
            "--json",
        ],
        capsys,
    )
    ev = json.loads(stdout)["targets"]["cpu-server"]["evaluation"]
    assert code == 0, err
    assert ev["kind"] == "custom" and ev["fp32_mse"] == pytest.approx(0.01, rel=1e-3)
    assert ev["mse"] < 0.02 and ev["mae"] < 0.15
    assert ev["custom"]["fp32"]["max_err"] == pytest.approx(0.1, rel=1e-3)
    assert ev["custom"]["artifact"]["max_err"] < 0.5


def test_torch_factory_with_state_dict(torch_model, targets, tmp_path, capsys):
    d = torch_model["dir"]
    code, stdout, err = _cli(
        [
            "compress_tiny_net:build",
            "--weights",
            d / "weights.pt",
            "--data",
            d / "img.npz",
            "--target",
            "cpu-server",
            "--out",
            tmp_path / "out",
            "--targets-dir",
            targets,
            "--json",
        ],
        capsys,
    )
    doc = json.loads(stdout)
    t = doc["targets"]["cpu-server"]
    assert code == 0, err
    assert doc["recipe"]["name"] == "build"
    assert doc["baseline"]["model"]["source"] == "torch-factory"
    assert doc["baseline"]["model"]["export_parity"]["max_abs_diff"] < 1e-4
    assert t["fp32_accuracy"] == 1.0 and t["accuracy_drop"] <= 0.05
    assert "torch_eager_latency_ms" in t  # the eager model is timed beside the artifacts
