"""The runtime seam: one interface, ONNX Runtime by default, OpenVINO when a profile names it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_extra

from toolchain.config.target import RuntimeOptions, load_target
from toolchain.errors import BadInput, ModelLoadError
from toolchain.runtime import Runtime, load_session, require_engines, runtime_for

OV = RuntimeOptions(engine="openvino", intra_op_threads=1)


def _model(path: Path, domain_op: tuple[str, str] | None = None) -> Path:
    """x [N, 4] -> MatMul(4x3) -> Relu; `domain_op` = (domain, op) replaces Relu with that op."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    act = helper.make_node(domain_op[1] if domain_op else "Relu", ["mm"], ["y"],
                           domain=domain_op[0] if domain_op else "")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["mm"]), act], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain_op[0], 1)] if domain_op else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_default_engine_is_onnx_runtime_and_records_its_settings(tmp_path):
    import onnxruntime as ort

    rt = runtime_for(None)
    assert isinstance(rt, Runtime) and rt.name == "onnxruntime" and rt.version() == ort.__version__
    assert rt.settings()["graph_optimization_level"] == "all"
    assert rt.with_threads(3).settings()["intra_op_threads"] == 3 and rt.settings()["intra_op_threads"] == 1
    sess = load_session(_model(tmp_path / "m.onnx"))
    out = sess.run(None, {"x": np.ones((2, 4), np.float32)})[0]
    np.testing.assert_allclose(out, np.ones((2, 4)) @ (np.arange(12).reshape(4, 3) / 10), rtol=1e-6)
    assert rt.optimized_op_types(tmp_path / "m.onnx")["MatMul"] == 1
    with pytest.raises(ModelLoadError, match="not found"):
        load_session(tmp_path / "missing.onnx")


def test_bf16_precision_needs_the_openvino_engine():
    with pytest.raises(ValueError, match="needs engine = 'openvino'"):
        RuntimeOptions(inference_precision="bf16")


def _add_layer_norm(path: Path) -> Path:
    """x, skip [1, 8, 16] -> Add -> LayerNormalization: the pattern ORT's SkipLayerNormFusion rewrites."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    gamma, beta = (numpy_helper.from_array(np.full(16, v, np.float32), n) for n, v in (("g", 1.0), ("b", 0.5)))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 8, 16]) for n in ("x", "s", "y")]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "s"], ["sum"]),
         helper.make_node("LayerNormalization", ["sum", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
        "g", io[:2], io[2:], [gamma, beta])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_disabled_optimizers_reach_the_session_the_settings_and_the_memory_probe(tmp_path):
    path = _add_layer_norm(tmp_path / "ln.onnx")
    assert runtime_for(RuntimeOptions()).optimized_op_types(path)["SkipLayerNormalization"] == 1
    rt = runtime_for(RuntimeOptions(disabled_optimizers=["SkipLayerNormFusion"]))
    ops = rt.optimized_op_types(path)
    assert ops["SkipLayerNormalization"] == 0 and ops["LayerNormalization"] == 1 and ops["Add"] == 1
    key = "optimization.disable_specified_optimizers"
    assert rt.settings()["session_config"] == {key: "SkipLayerNormFusion"}
    assert "session_config" not in runtime_for(None).settings()
    assert rt.memprobe_args()[-2:] == ["--disable-optimizers", "SkipLayerNormFusion"]
    feed = {"x": np.ones((1, 8, 16), np.float32), "s": np.arange(128, dtype=np.float32).reshape(1, 8, 16)}
    np.testing.assert_allclose(rt.load(path).run(None, feed)[0], load_session(path).run(None, feed)[0], atol=1e-5)
    with pytest.raises(ValueError, match="needs engine = 'onnxruntime'"):
        RuntimeOptions(engine="openvino", disabled_optimizers=["SkipLayerNormFusion"])


def test_the_package_session_block_and_snippet_carry_disabled_optimizers():
    from toolchain.package.manifest import SessionConfig
    from toolchain.package.session_config import session_config

    block = session_config(load_target("cpu-server").runtime.model_dump(), None)
    assert block["disabled_optimizers"] == ["SkipLayerNormFusion"]
    assert SessionConfig.model_validate(block).disabled_optimizers == ["SkipLayerNormFusion"]
    assert session_config(None, None)["disabled_optimizers"] == []
    from types import SimpleNamespace

    from toolchain.package.model_card import _session_lines

    lines, _ = _session_lines(SimpleNamespace(session=SessionConfig.model_validate(block)))
    assert lines[-1] == 'opts.add_session_config_entry("optimization.disable_specified_optimizers", "SkipLayerNormFusion")'


def test_missing_openvino_extra_is_bad_input_naming_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(BadInput, match=r"pip install 'edgeopt\[openvino\]'"):
        load_session(_model(tmp_path / "m.onnx"), OV)
    with pytest.raises(BadInput, match="OpenVINO is not installed"):
        require_engines([load_target("x86-server-openvino")])
    require_engines([load_target("cpu-server")])  # ORT profiles never import it


def test_run_with_an_openvino_profile_and_no_extra_exits_2_before_writing(monkeypatch, tmp_path, capsys):
    from toolchain.cli import main

    monkeypatch.setitem(sys.modules, "openvino", None)
    recipe = tmp_path / "r.toml"
    recipe.write_text('schema_version = 1\nname = "digits"\ntargets = ["x86-server-openvino"]\n')
    assert main(["run", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'edgeopt[openvino]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_openvino_session_matches_onnx_runtime(tmp_path):
    require_extra("openvino", "openvino")
    path = _model(tmp_path / "m.onnx")
    rt = runtime_for(OV)
    sess = rt.load(path)
    assert [(i.name, i.shape, i.type) for i in sess.get_inputs()] == [("x", [None, 4], "tensor(float)")]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], load_session(path).run(None, {"x": x})[0], atol=1e-5)
    assert sess.run(["y"], {"x": x})[0].shape == (5, 3)
    assert rt.settings() == {"device": "CPU", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                             "INFERENCE_NUM_THREADS": 1}
    counts = rt.optimized_op_counts(path)
    assert counts["total"] >= 3 and counts["int8_kernels"] == 0
    assert rt.load(path.read_bytes()).run(None, {"x": x})[0].shape == (5, 3)  # from a package's bytes


def test_a_graph_openvino_cannot_compile_is_skipped_with_the_reason(tmp_path):
    require_extra("openvino", "openvino")
    from toolchain.pipeline.precision import compilable

    good, bad = _model(tmp_path / "good.onnx"), _model(tmp_path / "bad.onnx", ("com.microsoft", "FusedGelu"))
    profile = load_target("x86-server-openvino")
    skipped = compilable({"fp32": good, "int8": bad}, profile)
    assert list(skipped) == ["int8"] and "OpenVINO cannot compile bad.onnx" in skipped["int8"]
    with pytest.raises(ModelLoadError):  # every ratio is against fp32: it must load
        compilable({"fp32": bad}, profile)
    assert compilable({"fp32": bad}, load_target("cpu-server")) == {}  # ORT profiles: convert already loaded them


def test_memory_probe_runs_the_model_in_openvino(tmp_path):
    require_extra("openvino", "openvino")
    from toolchain.bench.memory import peak_memory_mb, probe_args

    path = _model(tmp_path / "m.onnx")
    assert probe_args(path, OV, 1)[4:8] == ["--engine", "openvino", "--threads", "1"]
    mem = peak_memory_mb(path, OV, repeats=1)
    assert mem["process_peak_mb"] > mem["runtime_only_mb"] > 0 and mem["memory_probes"] == 1


def test_bf16_is_a_candidate_only_on_openvino_profiles_and_bf16_cpus(monkeypatch):
    from toolchain.pipeline import precision

    ov, ort = load_target("x86-server-openvino"), load_target("cpu-server")
    monkeypatch.setattr("toolchain.hostinfo.has_bf16", lambda: True)
    assert precision.bf16_applies(ov) and not precision.bf16_applies(ort)
    no_bf16 = ov.model_copy(update={"runtime": ov.runtime.model_copy(update={"bf16_candidate": False})})
    assert not precision.bf16_applies(no_bf16)
    runtimes = precision.candidate_runtimes(ov, ["fp32", "int8", precision.BF16])
    assert list(runtimes) == [precision.BF16] and runtimes[precision.BF16].inference_precision == "bf16"
    assert precision.runtime_of(ov, "int8") == ov.runtime
    monkeypatch.setattr("toolchain.hostinfo.has_bf16", lambda: False)
    assert not precision.bf16_applies(ov)  # OpenVINO would silently run f32: no second fp32 timing


def test_bf16_ships_only_within_the_budgets():
    from toolchain.pipeline.precision import BF16
    from toolchain.pipeline.ship import pick_fastest

    def weighed(p50, nbytes, failed=()):
        return {"selection_p50_ms": p50, "bytes": nbytes, "failed_budgets": list(failed)}

    fast_but_wrong = {"int8": weighed(2.0, 100), BF16: weighed(1.0, 400, ["max_accuracy_drop"])}
    assert pick_fastest(fast_but_wrong, 0.05) == "int8"
    assert pick_fastest({"int8": weighed(2.0, 100), BF16: weighed(1.0, 400)}, 0.05) == BF16
    assert pick_fastest({"int8": weighed(1.02, 100), BF16: weighed(1.0, 400)}, 0.05) == "int8"  # a tie: smaller ships


def test_the_report_names_a_skipped_candidate_and_why():
    from toolchain.pipeline.report import _selection_lines

    c = {"selection_p50_ms": 1.0, "p50_ms": 1.0, "bytes": 10, "failed_budgets": []}
    m = {"shipped": "int8_weights", "selection": {"rule": "fastest", "tie": 0.05,
                                                  "candidates": {"int8_weights": c, "fp32": c},
                                                  "skipped": {"int8": "OpenVINO cannot compile model.onnx (x)"}}}
    lines = _selection_lines("x86-server-openvino", m)
    assert lines[-1] == "  skipped: int8: OpenVINO cannot compile model.onnx (x)"
    m["selection"]["candidates"] = {"fp32": c}
    assert _selection_lines("x86-server-openvino", m) == [lines[-1]]


def test_onnx_runtime_work_imports_no_openvino(tmp_path):
    import subprocess

    model = _model(tmp_path / "m.onnx")
    probe = (
        "import sys\n"
        "from toolchain.runtime import load_session, runtime_for\n"
        "from toolchain.package.session_config import runtime_record, session_config\n"
        f"load_session({str(model)!r}).run(None, {{'x': __import__('numpy').ones((1, 4), 'float32')}})\n"
        "record = runtime_record(session_config(None, None))\n"
        "print(record['name'], 'openvino' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["onnxruntime", "False"]
