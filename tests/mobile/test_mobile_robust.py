"""Informational mobile estimates never abort a build (issue #13: arm-mobile refused a model after
200 s because the static-memory estimate met a symbolic tensor): what cannot be estimated is
null in the report, with a note saying why."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from toolchain.cli.mobile import render
from toolchain.config.target import load_target
from toolchain.errors import ModelLoadError
from toolchain.mobile.report import mobile_report
from toolchain.pipeline.build_target import summarize_mobile


def _data_dependent(path):
    """x[1,4] -> MatMul -> NonZero: NonZero's output width depends on the data, so no static shape."""
    w = nh.from_array(np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32), "w")
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"], name="mm"), h.make_node("NonZero", ["m"], ["y"], name="nz")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                     [h.make_tensor_value_info("y", T.INT64, [2, "nnz"])], [w])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(path))
    return path


def test_a_symbolic_tensor_makes_the_memory_estimate_null_with_a_note(tmp_path):
    doc = mobile_report(_data_dependent(tmp_path / "m.onnx"), load_target("arm-mobile"))
    assert doc["memory"] is None
    assert "no static shape" in doc["notes"]["memory"]
    assert doc["ep_coverage"]["eps"]["NNAPI"]["nodes_total"] == 2  # the other analyses still ran
    assert doc["latency"]["macs_fp32"] == 16  # MatMul [1,4]x[4,4]
    summary = summarize_mobile(doc)  # what the build keeps under metrics["estimated"]
    assert summary["static_memory_bytes"] is None
    assert set(summary["notes"]) == {"memory"}
    assert "no static shape" in render(doc)


def test_any_failure_in_an_analysis_is_a_note(tmp_path, monkeypatch):
    import toolchain.mobile.ep_coverage as ep

    def broken(*args, **kwargs):
        raise RuntimeError("usability checker tripped")

    monkeypatch.setattr(ep, "check_model", broken)
    doc = mobile_report(_data_dependent(tmp_path / "m.onnx"), load_target("arm-mobile"))
    assert doc["ep_coverage"] is None
    assert doc["notes"]["ep_coverage"] == "not estimated: RuntimeError: usability checker tripped"
    assert summarize_mobile(doc)["ep_nodes_covered"] == {}


def test_an_unreadable_model_is_still_an_error(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        mobile_report(tmp_path / "bad.onnx", load_target("arm-mobile"))
