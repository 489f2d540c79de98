"""Drift references for models with a recurrent state and a scalar input, and for bare
`edgeopt package --data`: the state and the constant are recorded with their kind and reason,
`edgeopt drift` skips them (and says why) instead of refusing the package, and still flags a
shifted feature input."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.cli.main import main
from toolchain.drift.reference import DRIFT_REFERENCE_NAME, DRIFT_SCHEMA_VERSION, MIN_BIN_COUNT
from toolchain.errors import EXIT_BAD_INPUT
from toolchain.package import verify_package

FEATURES, HIDDEN, CLASSES = 8, 16, 4


def gru_like(path: Path) -> Path:
    """One recurrent step: h1 = tanh(x Wx + h0[0] Wh) * sr / 16000, y = h1 Wy, h_n = h1[None].
    Inputs x [batch, 8], state h0 [1, batch, 16] (batch on axis 1), sample rate sr: int64 scalar."""
    rng = np.random.default_rng(0)
    weights = {
        "Wx": rng.standard_normal((FEATURES, HIDDEN)) / 3,
        "Wh": rng.standard_normal((HIDDEN, HIDDEN)) / 4,
        "Wy": rng.standard_normal((HIDDEN, CLASSES)) / 4,
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in weights.items()]
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array(16000.0, np.float32), "sr_ref"),
    ]
    nodes = [
        helper.make_node("Squeeze", ["h0", "ax0"], ["h"]),
        helper.make_node("MatMul", ["x", "Wx"], ["a"]),
        helper.make_node("MatMul", ["h", "Wh"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Tanh", ["s"], ["t"]),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["srf", "sr_ref"], ["scale"]),
        helper.make_node("Mul", ["t", "scale"], ["h1"]),
        helper.make_node("MatMul", ["h1", "Wy"], ["y"]),
        helper.make_node("Unsqueeze", ["h1", "ax0"], ["h_n"]),
    ]
    graph = helper.make_graph(
        nodes,
        "gru_like",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "batch", HIDDEN]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES]),
            helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [1, "batch", HIDDEN]),
        ],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def samples(n: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": (rng.standard_normal((n, FEATURES)) * (1 + shift) + shift).astype(np.float32),
        "h0": (rng.standard_normal((1, n, HIDDEN)) * 0.1).astype(np.float32),
        "sr": np.array(16000, np.int64),
    }


@pytest.fixture(scope="module")
def stateful(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stateful")
    np.savez(d / "calib.npz", **samples(300, 1))
    assert (
        main(
            [
                "package",
                str(gru_like(d / "m.onnx")),
                "--target",
                "cpu-server",
                "--data",
                str(d / "calib.npz"),
                "--out",
                str(d / "m.zip"),
            ]
        )
        == 0
    )
    return d / "m.zip"


def _reference(pkg: Path) -> dict:
    with zipfile.ZipFile(pkg) as zf:
        return json.loads(zf.read(DRIFT_REFERENCE_NAME))


def _drift(tmp: Path, pkg: Path, capsys, arrays: dict, *extra: str) -> tuple[int, dict | str]:
    np.savez(tmp / "live.npz", **arrays)
    code = main(["drift", str(pkg), "--data", str(tmp / "live.npz"), *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if "--json" in extra and code in (0, 1) else out.out + out.err)


def test_state_and_scalar_inputs_are_recorded_with_their_kind(stateful):
    assert verify_package(stateful).ok  # golden samples from the data, one run of every input
    ref = _reference(stateful)
    assert ref["schema_version"] == DRIFT_SCHEMA_VERSION == 2
    x, h0, sr = (ref["inputs"][n] for n in ("x", "h0", "sr"))
    assert (
        x["kind"] == "values"
        and x["samples"] == 300
        and len(x["channels"]) == FEATURES
        and x["batch_axis"] == 0
    )
    assert h0 == {
        "kind": "state",
        "batch_axis": 1,
        "shape": [1, HIDDEN],
        "dtype": "float32",
        "reason": h0["reason"],
    }
    assert (
        sr["kind"] == "constant" and sr["batch_axis"] is None and sr["shape"] == [] and sr["dtype"] == "int64"
    )
    assert "16000" not in json.dumps(sr)  # a constant's value is not a statistic: not stored
    assert ref["outputs"]["y"]["kind"] == "classes" and ref["outputs"]["y"]["samples"] == 300
    assert ref["outputs"]["h_n"]["kind"] == "state"  # [1, batch, 16]: no samples on axis 0
    for c in x["channels"]:
        assert min(c["histogram"]["counts"]) >= MIN_BIN_COUNT and c["count"] == 300


def test_drift_skips_state_and_constant_and_flags_a_shifted_feature(stateful, tmp_path, capsys):
    code, doc = _drift(tmp_path, stateful, capsys, samples(200, 2), "--json")
    assert code == 0 and doc["flagged"] == [] and doc["samples"] == {"x": 200}
    skipped = {(s["kind"], s["tensor"]): s["as"] for s in doc["skipped"]}
    assert skipped == {("input", "h0"): "state", ("input", "sr"): "constant", ("output", "h_n"): "state"}
    assert {(r["kind"], r["tensor"]) for r in doc["rows"]} == {("input", "x"), ("output", "y")}
    code, doc = _drift(tmp_path, stateful, capsys, samples(200, 3, shift=1.0), "--json")
    assert code == 1 and "input x" in doc["flagged"]
    assert sum(r["drift"] for r in doc["rows"] if r["tensor"] == "x") == FEATURES


def test_live_data_may_leave_out_the_state_then_outputs_are_skipped_with_the_reason(
    stateful, tmp_path, capsys
):
    code, text = _drift(tmp_path, stateful, capsys, {"x": samples(200, 2)["x"]})
    assert code == 0
    assert "skipped input h0 (state)" in text and "skipped input sr (constant)" in text
    assert (
        "skipped output y (classes): outputs not compared: the live data has no array for state input 'h0'"
        in text
    )
    code, err = _drift(
        tmp_path, stateful, capsys, {"h0": samples(200, 2)["h0"]}
    )  # the feature input is needed
    assert code == EXIT_BAD_INPUT and "no array for input 'x'" in err


def test_bare_package_without_data_has_no_reference_and_drift_says_how_to_get_one(tmp_path, capsys):
    model = tmp_path / "mlp.onnx"
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((FEATURES, CLASSES)).astype(np.float32), "W"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CLASSES])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(model))
    assert main(["package", str(model), "--target", "cpu-server", "--out", str(tmp_path / "bare.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "bare.zip") as zf:
        assert DRIFT_REFERENCE_NAME not in zf.namelist()  # 4 random golden inputs are no sample data
    code, err = _drift(tmp_path, tmp_path / "bare.zip", capsys, {"x": samples(50, 0)["x"]})
    assert code == EXIT_BAD_INPUT and "edgeopt package --data" in err
    np.savez(tmp_path / "calib.npy.npz", x=samples(120, 1)["x"])
    assert (
        main(
            [
                "package",
                str(model),
                "--target",
                "cpu-server",
                "--data",
                str(tmp_path / "calib.npy.npz"),
                "--out",
                str(tmp_path / "withref.zip"),
            ]
        )
        == 0
    )
    assert _reference(tmp_path / "withref.zip")["inputs"]["x"]["samples"] == 120
    # the user's samples feed the statistics, not the golden inputs: no row of them is in the package
    assert main(["inspect", "--privacy", str(tmp_path / "withref.zip"), "--data", str(tmp_path / "calib.npy.npz")]) == 0
    assert (
        main(
            [
                "package",
                str(model),
                "--target",
                "cpu-server",
                "--data",
                "random",
                "--out",
                str(tmp_path / "r.zip"),
            ]
        )
        == EXIT_BAD_INPUT
    )
    assert not (tmp_path / "r.zip").exists()


def test_schema_1_references_are_still_read():
    from toolchain.drift.compare import compare

    rng = np.random.default_rng(0)
    v1 = {
        "schema_version": 1,
        "min_bin_count": 10,
        "outputs": {},
        "inputs": {
            "x": {
                "kind": "values",
                "samples": 400,
                "sample_shape": [2],
                "pooled": False,
                "channels": [
                    {
                        "count": 400,
                        "mean": 0.0,
                        "std": 1.0,
                        "quantiles": {},
                        "histogram": {"edges": [-1.0, 0.0, 1.0], "counts": [64, 136, 136, 64]},
                    }
                    for _ in range(2)
                ],
            }
        },
    }
    doc = compare(v1, {"x": rng.standard_normal((300, 2))})
    assert doc["skipped"] == [] and len(doc["rows"]) == 2 and doc["flagged"] == []


@pytest.mark.slow  # a whole compress run: quantize, benchmark, gate, package
def test_compress_with_random_data_packages_a_reference_for_a_stateful_model(
    fast_targets_dir, tmp_path, capsys
):
    out = tmp_path / "c"
    code = main(
        [
            "compress",
            str(gru_like(tmp_path / "m.onnx")),
            "--data",
            "random",
            "--target",
            "cpu-server",
            "--targets-dir",
            str(fast_targets_dir),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code in (0, 1)
    report = json.loads(capsys.readouterr().out)
    ref = _reference(Path(report["targets"]["cpu-server"]["package"]))
    assert {n: r["kind"] for n, r in ref["inputs"].items()} == {
        "x": "values",
        "h0": "state",
        "sr": "constant",
    }
    assert {n: r["kind"] for n, r in ref["outputs"].items()} == {"y": "classes", "h_n": "state"}
    assert ref["inputs"]["x"]["samples"] == report["baseline"]["data"]["calibration_samples"] == 102
