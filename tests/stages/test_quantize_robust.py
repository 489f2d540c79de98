"""Quantize on graphs edgeopt did not make (issue #13): a fixed batch dimension gets full
calibration batches, ORT's pre-processing is best effort, and no temporary file lands in the
current directory."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.config.target import QuantizeScheme
from toolchain.data.feeds import Feeds
from toolchain.stages.quantize import QuantizeConfig, pre_process, quantize

QDQ = QuantizeScheme(format="qdq", activation_type="uint8", weight_type="int8", per_channel=False)


def _matmul_net(path, batch: int, features: int = 8):
    """x [batch, features] -> MatMul -> Relu -> MatMul, the batch dimension fixed."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (features, features)).astype(np.float32), n) for n in ("w1", "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, features])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _sym_breaker(path):
    """Runs fine in ORT, but ORT's symbolic shape inference gives up on it ("Incomplete symbolic
    shape inference"): Concat of a NonZero result (data-dependent width) with a static tensor."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Abs", ["h"], ["a"], name="abs"), helper.make_node("Add", ["a", "one"], ["pos"], name="add"),
             helper.make_node("NonZero", ["pos"], ["nz"], name="nonzero"),  # always [2, 4]: every entry >= 1
             helper.make_node("Cast", ["nz"], ["nzf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Concat", ["nzf", "h"], ["y"], name="concat", axis=0)]
    graph = helper.make_graph(nodes, "breaker", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [w, numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize(("n", "batch", "fixed"), [(10, 4, True), (3, 4, True), (8, 4, True), (10, 4, False)])
def test_calibration_batches_are_full_for_a_fixed_batch(n, batch, fixed):
    x = np.arange(n, dtype=np.float32)[:, None]
    chunks = [feed["x"] for feed, _ in Feeds({"x": x}, {"x": 0}).batches(batch, pad=fixed)]
    sizes = [len(c) for c in chunks]
    assert len(chunks) == -(-n // batch)
    if fixed:
        assert sizes == [batch] * len(chunks)
        assert set(np.concatenate(chunks)[:, 0]) == set(range(n))  # every sample used, padding repeats them
    else:
        assert sum(sizes) == n  # a dynamic batch takes the short last batch as it is


def test_fixed_batch_model_with_a_ragged_sample_count_quantizes(tmp_path):
    # 10 samples in batches of the model's 4: the last batch used to be 2 ("Got: 2 Expected: 4").
    src = _matmul_net(tmp_path / "m.onnx", batch=4)
    x = np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32)
    facts = quantize(src, x, QuantizeConfig(scheme=QDQ, calibration_samples=10), tmp_path / "q.onnx", {})
    assert facts["pre_process"] == "full"
    sess = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "QuantizeLinear" in ops
    assert sess.run(None, {"x": x[:4]})[0].shape == (4, 8)


def test_pre_process_falls_back_and_writes_nothing_to_the_cwd(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    src = _sym_breaker(tmp_path / "breaker.onnx")
    monkeypatch.chdir(cwd)
    x = np.random.default_rng(2).normal(size=(16, 4)).astype(np.float32)
    facts = quantize(src, x, QuantizeConfig(scheme=QDQ, calibration_samples=16), work / "q.onnx", {})
    assert facts["pre_process"] == "skip_symbolic_shape"
    assert "Incomplete symbolic shape inference" in facts["pre_process_note"]
    assert os.listdir(cwd) == []  # ORT writes sym_shape_infer_temp.onnx(.data) to the cwd when it gives up
    assert sorted(os.listdir(work)) == ["q.onnx"]  # its temp dir next to the output is gone too
    out = ort.InferenceSession(str(work / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x[:1]})[0]
    assert out.shape == (3, 4)


def test_pre_process_that_always_fails_is_skipped_with_a_note(tmp_path, monkeypatch):
    import onnxruntime.quantization.shape_inference as si

    def broken(*args, **kwargs):
        raise AssertionError("_infer_Concat")

    monkeypatch.setattr(si, "quant_pre_process", broken)
    src = _matmul_net(tmp_path / "m.onnx", batch=1)
    facts = pre_process(src, tmp_path / "pre.onnx")
    assert facts["pre_process"] == "skipped"
    assert facts["pre_process_note"].count("AssertionError") == 2  # both levels were tried
    assert (tmp_path / "pre.onnx").read_bytes() == src.read_bytes()


def test_every_quantize_format_has_a_quantizer():
    from typing import get_args

    from toolchain.config.target import QuantizeScheme
    from toolchain.stages.quantize import QUANTIZERS

    assert set(QUANTIZERS) == set(get_args(QuantizeScheme.model_fields["format"].annotation))
