"""Mobile analyses on hand-built graphs whose answers are worked out in the comments."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from toolchain.mobile.estimate import REFERENCE_DEVICES, DeviceFigures, estimate_latency, macs_of
from toolchain.mobile.memory_estimate import estimate_memory, infer_shapes, value_types


def _model(nodes, inputs, outputs, inits):
    g = h.make_graph(nodes, "g", inputs, outputs, inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _f32(name, shape, seed=0):
    return nh.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def tiny_cnn(batch="N"):
    """x[b,4,8,8] -> Conv(8,3x3,pad 1) -> Relu -> MaxPool 2x2 -> Flatten -> Gemm(128->10)."""
    nodes = [
        h.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        h.make_node("Flatten", ["p"], ["f"], name="flat"),
        h.make_node("Gemm", ["f", "Wf", "Bf"], ["y"], transB=1, name="fc"),
    ]
    return _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [batch, 4, 8, 8])],
                  [h.make_tensor_value_info("y", T.FLOAT, [batch, 10])],
                  [_f32("W", (8, 4, 3, 3)), _f32("B", (8,)), _f32("Wf", (10, 128)), _f32("Bf", (10,))])


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    d = tmp_path_factory.mktemp("mobile")
    onnx.save(tiny_cnn(1), str(d / "fp32.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": np.random.default_rng(i).random((1, 4, 8, 8)).astype(np.float32)} for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(d / "fp32.onnx"), str(d / "qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    return d


# ---- A: EP coverage -------------------------------------------------------------------------

def test_ep_coverage_fp32_counts(tiny_paths):
    from toolchain.mobile.ep_coverage import check_model

    rep = check_model(tiny_paths / "fp32.onnx").to_dict()
    eps = rep["eps"]
    # NNAPI's list has all five ops: one partition of 5/5
    assert (eps["NNAPI"]["nodes_covered"], eps["NNAPI"]["nodes_total"], eps["NNAPI"]["partitions"]) == (5, 5, 1)
    assert eps["NNAPI"]["suitability"] == "YES"
    # CoreML MLProgram lacks Flatten, which splits the graph in two
    ml = eps["CoreML-MLProgram"]
    assert (ml["nodes_covered"], ml["partitions"], ml["unsupported_ops"]) == (4, 2, ["ai.onnx:Flatten"])
    # XNNPACK: Conv, Relu (fused into Conv), MaxPool, Gemm; not Flatten
    x = eps["XNNPACK"]
    assert (x["nodes_covered"], x["nodes_total"], x["partitions"]) == (4, 5, 2)
    assert x["unsupported_ops"] == ["ai.onnx:Flatten"] and x["accuracy"] == "approximate"
    assert any("NNAPI" in line for line in rep["log"])  # the checker's log was captured


def test_ep_coverage_qdq_units(tiny_paths, capfd):
    from toolchain.mobile.ep_coverage import check_model

    q = onnx.load(str(tiny_paths / "qdq.onnx"))
    ops = [n.op_type for n in q.graph.node]
    assert len(ops) == 18 and ops.count("Conv") == 1  # the quantizer folds Relu into the Conv's Q
    x = check_model(tiny_paths / "qdq.onnx").to_dict()["eps"]["XNNPACK"]
    # XNNPACK takes whole QDQ units: Conv (DQ x, DQ W, DQ B, Conv, Q) = 5, MaxPool (DQ, MaxPool, Q) = 3.
    # A QDQ Gemm is not among its quantized ops, Flatten is not supported at all.
    assert (x["nodes_covered"], x["nodes_total"], x["partitions"]) == (8, 18, 1)
    assert "ai.onnx:Gemm" in x["unsupported_ops"]
    assert "NNAPI" not in capfd.readouterr().err  # nothing leaked to the terminal


# ---- B: static memory -----------------------------------------------------------------------

def test_memory_hand_computed():
    # x[1,4,8,8] f32 = 1024 B. conv -> a[1,8,8,8] = 2048 B; relu -> b 2048 B; add(a,b) -> c 2048 B;
    # maxpool -> d[1,8,4,4] = 512 B.
    # step 0 conv: x + a = 3072; step 1 relu: a + b = 4096 (x dead); step 2 add: a + b + c = 6144;
    # step 3 pool: c + d = 2560.  Peak 6144 at the Add.  Weights: W 288 + B 8 floats = 1184 B.
    nodes = [
        h.make_node("Conv", ["x", "W", "B"], ["a"], pads=[1, 1, 1, 1], name="conv"),
        h.make_node("Relu", ["a"], ["b"], name="relu"),
        h.make_node("Add", ["a", "b"], ["c"], name="add"),
        h.make_node("MaxPool", ["c"], ["d"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
    ]
    m = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8, 8])],
               [h.make_tensor_value_info("d", T.FLOAT, [1, 8, 4, 4])], [_f32("W", (8, 4, 3, 3)), _f32("B", (8,))])
    est = estimate_memory(m)
    assert est.weights_bytes == 1184
    assert est.peak_activation_bytes == 6144
    assert (est.peak_step, est.peak_node, est.live_at_peak) == (2, "add", ("a", "b", "c"))
    assert est.total_bytes == 7328 and est.to_dict()["label"] == "estimated"


def test_memory_folds_dequantized_weights():
    # DQ(int8 W) is computed from weights only: it is neither an activation nor extra weight bytes.
    # Weights: Wq 288 int8 + scale 4 + zero point 1 = 293 B.  Activations: x 1024 + y 2048 = 3072.
    wq = nh.from_array(np.ones((8, 4, 3, 3), np.int8), "Wq")
    nodes = [
        h.make_node("DequantizeLinear", ["Wq", "s", "z"], ["W"], name="dq"),
        h.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], name="conv"),
    ]
    m = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8, 8])],
               [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 8, 8])],
               [wq, nh.from_array(np.array(0.1, np.float32), "s"), nh.from_array(np.array(0, np.int8), "z")])
    est = estimate_memory(m)
    assert (est.weights_bytes, est.peak_activation_bytes) == (293, 3072)


# ---- C: analytical latency ------------------------------------------------------------------

def test_macs_hand_computed():
    m = infer_shapes(tiny_cnn(1))
    types = value_types(m)
    macs = {n.name: macs_of(n, types) for n in m.graph.node}
    # Conv: 8x8x8 outputs x (4 in-channels x 3x3) = 512 x 36 = 18432; Gemm: 10 outputs x 128 = 1280
    assert macs == {"conv": 18432, "relu": 0, "pool": 0, "flat": 0, "fc": 1280}

    # Depthwise conv: group 8, W[8,1,3,3]: 512 outputs x 9 = 4608. MatMul [2,3,4]x[4,5]: 2*3*5 x 4 = 120.
    nodes = [h.make_node("Conv", ["x", "Wd"], ["d"], pads=[1, 1, 1, 1], group=8, name="dw"),
             h.make_node("MatMul", ["a", "Wm"], ["mm"], name="mm")]
    m2 = infer_shapes(_model(
        nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 8, 8, 8]), h.make_tensor_value_info("a", T.FLOAT, [2, 3, 4])],
        [h.make_tensor_value_info("d", T.FLOAT, [1, 8, 8, 8]), h.make_tensor_value_info("mm", T.FLOAT, [2, 3, 5])],
        [_f32("Wd", (8, 1, 3, 3)), _f32("Wm", (4, 5))]))
    t2 = value_types(m2)
    assert [macs_of(n, t2) for n in m2.graph.node] == [4608, 120]


def test_latency_roofline_hand_computed():
    # 1 GFLOP/s and 1 GB/s make the arithmetic visible.  Conv: 2 x 18432 FLOP = 36.864 us compute,
    # 1024 + 1152 + 32 + 2048 = 4256 B = 4.256 us memory -> compute-bound 0.036864 ms.
    # Relu: 2048 + 2048 B = 4.096 us.  Overhead 1 us per op.  Total 0.036864 + 0.004096 + 0.002 ms.
    nodes = [h.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             h.make_node("Relu", ["c"], ["y"], name="relu")]
    m = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 8, 8])],
               [h.make_tensor_value_info("y", T.FLOAT, [1, 8, 8, 8])], [_f32("W", (8, 4, 3, 3)), _f32("B", (8,))])
    dev = DeviceFigures(int8_gops=1.0, fp32_gflops=1.0, memory_gbps=1.0, op_overhead_us=1.0)
    est = estimate_latency(m, dev)
    assert (est.macs_fp32, est.macs_int8, est.bytes_moved) == (18432, 0, 4256 + 4096)
    by = {o.name: o for o in est.ops}
    assert by["conv"].bound == "compute" and by["conv"].ms == pytest.approx(0.036864 + 0.001)
    assert by["relu"].bound == "memory" and by["relu"].ms == pytest.approx(0.004096 + 0.001)
    assert est.latency_ms == pytest.approx(0.042960)
    assert est.to_dict()["label"] == "estimated"
    assert estimate_latency(m, None).latency_ms is None  # no figures: no number, never a guess
    assert estimate_latency(m, DeviceFigures(memory_gbps=1.0)).missing == ("fp32_gflops",)


def test_latency_qdq_costs_units_in_int8(tiny_paths):
    est = estimate_latency(onnx.load(str(tiny_paths / "qdq.onnx")), REFERENCE_DEVICES["cortex-a76"])
    assert (est.macs_int8, est.macs_fp32) == (18432 + 1280, 0)
    conv = next(o for o in est.ops if o.op == "Conv")
    # int8 x 256 B + int8 W 288 B + int32 bias 32 B + int8 out 512 B (the fp32 graph moved 4256 B)
    assert (conv.precision, conv.bytes) == ("int8", 256 + 288 + 32 + 512)


def test_device_figures_are_strict():
    from toolchain.config.base import validate
    from toolchain.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'gflops'"):
        validate(DeviceFigures, {"gflops": 1.0}, "t.toml")
    assert validate(DeviceFigures, {"fp32_gflops": 24}, "t.toml").fp32_gflops == 24.0


# ---- E: the command -------------------------------------------------------------------------

def test_mobile_report_cli(tiny_paths, fast_targets_dir):
    from toolchain.cli.mobile import mobile_report_cmd

    runner = CliRunner()
    res = runner.invoke(mobile_report_cmd, [str(tiny_paths / "qdq.onnx"), "--target", "arm-mobile",
                                            "--targets-dir", str(fast_targets_dir), "--device", "raspberry-pi-4", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["memory"]["label"] == doc["latency"]["label"] == "estimated"
    assert doc["ep_coverage"]["eps"]["NNAPI"]["nodes_covered"] == 18
    assert doc["latency"]["latency_ms"] > 0
    text = runner.invoke(mobile_report_cmd, [str(tiny_paths / "qdq.onnx"), "--target", "arm-mobile",
                                             "--targets-dir", str(fast_targets_dir)]).output
    # arm-mobile declares [device] figures, so the estimate is available (and labelled)
    assert "memory (estimated)" in text and "latency (estimated, roofline" in text and "unavailable" not in text


def test_mobile_report_rejects_ort_file(tmp_path):
    from toolchain.cli.mobile import mobile_report_cmd
    from toolchain.errors import BadInput

    bad = tmp_path / "model.ort"
    bad.write_bytes(b"x")
    res = CliRunner().invoke(mobile_report_cmd, [str(bad), "--target", "arm-mobile"])
    assert isinstance(res.exception, BadInput) and res.exception.exit_code == 2  # cli.main maps it to exit 2
    assert "pass the .onnx it was converted from" in str(res.exception)


def test_mobile_report_refuses_an_offline_optimized_onnx_in_one_line(tiny_paths, tmp_path, capsys):
    """An .onnx target's artifact (what `edgeopt run` writes as <target>/<name>.fp32.onnx) holds
    ORT's fused ops, which have no ONNX shapes: one line, exit 2, not a traceback."""
    from toolchain.cli.main import main
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import convert_config
    from toolchain.stages.convert import convert

    convert(tiny_paths / "fp32.onnx", convert_config(load_target("cpu-server")), tmp_path, {})
    optimized = onnx.load(str(tmp_path / "model.onnx"))
    assert {n.op_type for n in optimized.graph.node if n.domain == "com.microsoft"} == {"FusedConv"}
    code = main(["mobile-report", str(tmp_path / "model.onnx"), "--target", "arm-mobile", "--json"])
    out, err = capsys.readouterr()
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert "optimized offline by ONNX Runtime: its FusedConv ops" in err


def test_mobile_report_on_an_ort_names_the_runs_report_not_a_cache_path(tmp_path, capsys):
    from toolchain.cli.main import main

    (tmp_path / "model.ort").write_bytes(b"x")
    (tmp_path / "mobile_report.json").write_text("{}")
    code = main(["mobile-report", str(tmp_path / "model.ort"), "--target", "arm-mobile"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"wrote this analysis to {tmp_path / 'mobile_report.json'}" in err and "cache" not in err
