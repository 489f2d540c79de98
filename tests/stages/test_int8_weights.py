"""Int8 weights, fp32 compute: the stored weights shrink ~4x, ORT folds them back into the very
fp32 graph it ran before, and the outputs move only by the weights' rounding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.errors import VerificationError
from toolchain.stages.compact import optimized_ops
from toolchain.stages.int8_weights import Int8WeightsConfig, int8_weights, quantize_per_channel

ROUNDING_BOUND = 1 / 254  # |w - q*s| <= s/2 = peak/254, relative to the channel's peak


def _model(path, rng):
    """Conv -> Relu -> Flatten -> Gemm(transB=1) -> MatMul -> Add(bias read also by Add) with a
    shared conv weight, a tiny weight, and an initializer the app may override (a graph input)."""
    conv_w = rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32)
    conv_w[5] *= 1e-3  # a quiet channel: per-channel scales keep its precision
    gemm_w = rng.normal(0, 0.1, (32, 16 * 8 * 8)).astype(np.float32)
    mm_w = rng.normal(0, 0.1, (32, 10)).astype(np.float32)
    # 20 elements save 60 bytes, minus 8 for two scales: under min_saved_bytes (64), stays fp32
    tiny = rng.normal(0, 0.1, (10, 2)).astype(np.float32)
    bias = rng.normal(0, 0.1, (2,)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(conv_w, "conv_w"), (gemm_w, "gemm_w"), (mm_w, "mm_w"), (tiny, "tiny"), (bias, "bias"),
              (np.array([1, -1], np.int64), "shape")]]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Flatten", ["r1"], ["f"]),
        helper.make_node("Gemm", ["f", "gemm_w"], ["g"], transB=1),
        helper.make_node("MatMul", ["g", "mm_w"], ["m"]),
        helper.make_node("MatMul", ["m", "tiny"], ["t"]),
        helper.make_node("Add", ["t", "bias"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"edgeopt.recipe": "abc123"})
    onnx.save(model, str(path))
    return {"conv_w": conv_w, "gemm_w": gemm_w, "mm_w": mm_w}


def _run(path, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_weights_are_stored_int8_and_ort_folds_them_back_into_the_same_fp32_graph(tmp_path):
    rng = np.random.default_rng(0)
    src, dest = tmp_path / "fp32.onnx", tmp_path / "w8.onnx"
    weights = _model(src, rng)
    facts = int8_weights(src, Int8WeightsConfig(), dest)

    assert facts["weights_int8"] == 3  # conv, gemm, matmul; not the tiny one, the bias, the shape
    out = onnx.load(str(dest))
    inits = {t.name: t for t in out.graph.initializer}
    assert set(weights).isdisjoint(inits) and "tiny" in inits and inits["tiny"].data_type == TensorProto.FLOAT
    assert {inits[n + "_q"].data_type for n in weights} == {TensorProto.INT8}
    # one scale per output channel, shaped to broadcast: conv axis 0, Gemm(transB=1) axis 0, MatMul last axis
    assert list(inits["conv_w_s"].dims) == [16, 1, 1, 1]
    assert list(inits["gemm_w_s"].dims) == [32, 1] and list(inits["mm_w_s"].dims) == [1, 10]
    # bytes: the three weights were 4 bytes per element, now 1 (plus scales and two nodes each)
    weight_bytes = 4 * sum(w.size for w in weights.values())
    assert facts["bytes_before"] - facts["bytes_after"] > 0.74 * weight_bytes
    assert dest.stat().st_size == facts["bytes_after"]
    assert {p.key: p.value for p in out.metadata_props} == {"edgeopt.recipe": "abc123"}  # the stamp is kept

    # ORT folds every Cast -> Mul pair at load: the optimized graphs have the same op counts
    assert optimized_ops(dest, False) == optimized_ops(src, False)
    assert facts["verified"]["optimized_ops"] == sum(optimized_ops(src, False).values())

    # dequantized weights are within half a step of the originals, per channel
    for name, w in weights.items():
        q = numpy_helper.to_array(inits[name + "_q"]).astype(np.float32)
        s = numpy_helper.to_array(inits[name + "_s"])
        axis = 0 if name != "mm_w" else 1
        err = np.abs(q * s - w).max(axis=tuple(i for i in range(w.ndim) if i != axis))
        peak = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis))
        assert (err <= peak * ROUNDING_BOUND * (1 + 1e-6)).all()
    assert facts["max_relative_weight_error"] <= ROUNDING_BOUND * (1 + 1e-6)

    x = rng.random((4, 3, 8, 8), dtype=np.float32)
    ref, got = _run(src, x), _run(dest, x)
    sqnr = 10 * np.log10((ref ** 2).sum() / ((ref - got) ** 2).sum())
    assert sqnr > 35 and facts["verified"]["sqnr_db"] > 35


def test_weights_read_by_anything_but_a_weight_slot_stay_fp32(tmp_path):
    """A weight also added to an activation (or fed by the app as a graph input) keeps its exact value."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 16)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "w"], ["a"]),
             helper.make_node("MatMul", ["a", "v"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16]),
                                           helper.make_tensor_value_info("v", TensorProto.FLOAT, [16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 16])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(w.T.copy(), "v")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    facts = int8_weights(src, Int8WeightsConfig(), tmp_path / "out.onnx")
    assert facts["weights_int8"] == 0 and "verified" not in facts
    assert onnx.load(str(tmp_path / "out.onnx")).graph.initializer[0].data_type == TensorProto.FLOAT


def test_gemm_without_transposed_weights_scales_its_columns(tmp_path):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(64, 8)).astype(np.float32)  # [in, out]
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
                              [numpy_helper.from_array(w, "w")])
    src, dest = tmp_path / "g.onnx", tmp_path / "g8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    assert int8_weights(src, Int8WeightsConfig(), dest)["weights_int8"] == 1
    scales = {t.name: t for t in onnx.load(str(dest)).graph.initializer}["w_s"]
    assert list(scales.dims) == [1, 8]


def test_quantize_per_channel_is_symmetric_and_keeps_zero_channels_at_zero():
    w = np.array([[0.0, 0.0, 0.0], [1.0, -0.5, 0.25], [-2.54, 1.27, 0.0]], np.float32)
    q, s = quantize_per_channel(w, 0)
    assert s.shape == (3, 1) and s[0, 0] == 1.0 and not q[0].any()
    assert q[1].tolist() == [127, -64, 32] and q[2].tolist() == [-127, 64, 0]
    assert np.abs(q * s - w).max() <= 2.54 / 254 + 1e-7


def test_an_unfolded_result_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    from toolchain.stages import compact

    rng = np.random.default_rng(3)
    src, dest = tmp_path / "fp32.onnx", tmp_path / "w8.onnx"
    _model(src, rng)
    real = compact.optimized_ops
    monkeypatch.setattr(compact, "optimized_ops", lambda p, a: real(p, a) + Counter({"Mul": int(p != src)}))
    with pytest.raises(VerificationError, match="did not fold"):
        int8_weights(src, Int8WeightsConfig(), dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == [src]


def test_min_saved_bytes_decides_which_weights_pay_and_is_validated(tmp_path):
    from pydantic import ValidationError

    rng = np.random.default_rng(4)
    src = tmp_path / "fp32.onnx"
    _model(src, rng)
    # with no minimum the tiny weight is quantized too (it saves 52 bytes of payload)
    assert int8_weights(src, Int8WeightsConfig(min_saved_bytes=0), tmp_path / "all.onnx")["weights_int8"] == 4
    with pytest.raises(ValidationError):
        Int8WeightsConfig(min_saved_bytes=-1)
    with pytest.raises(ValidationError):
        Int8WeightsConfig(bits=4)


def test_recurrent_weights_are_scaled_per_gate_row_and_still_fold(tmp_path):
    rng = np.random.default_rng(5)
    hidden, features = 16, 8
    w = rng.normal(0, 0.3, (1, 3 * hidden, features)).astype(np.float32)
    r = rng.normal(0, 0.3, (1, 3 * hidden, hidden)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("GRU", ["x", "w", "r"], ["y"], hidden_size=hidden)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, features])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 1, hidden])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(r, "r")])
    src, dest = tmp_path / "gru.onnx", tmp_path / "gru8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    facts = int8_weights(src, Int8WeightsConfig(), dest)
    scales = {t.name: list(t.dims) for t in onnx.load(str(dest)).graph.initializer if t.name.endswith("_s")}
    assert facts["weights_int8"] == 2 and scales == {"w_s": [1, 48, 1], "r_s": [1, 48, 1]}
    assert facts["verified"]["sqnr_db"] > 35
