"""fp32_stem: a conv that reads the model input with <= 4 channels stays fp32 in the stage and the
search; other convs are unaffected; the search times the stem-flipped variant and flags a target
where int8 loses to fp32."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from toolchain.config.base import validate
from toolchain.config.target import QuantizeScheme, TargetProfile
from toolchain.errors import ConfigError
from toolchain.search import SearchBudget, search_quantization
from toolchain.search.budget import Candidate, SearchReport
from toolchain.search.measure import onnx_logits
from toolchain.stages.quantize import QuantizeConfig, quantize, stem_convs

U8 = {"activation_type": "uint8", "weight_type": "int8", "per_channel": True}  # the cpu-server scheme


def _conv_net(in_ch: int, path, *, weight_via: str = "initializer", group: int = 1, size: int = 12):
    """input -> Conv 'stem' (in_ch -> 8) -> Relu -> Conv 'conv2' (8 -> 8) -> Relu -> GAP -> Flatten -> Gemm (10)."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, in_ch // group, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (rng.normal(0, 0.1, 8).astype(np.float32), "b1"),
        (rng.normal(0, 0.2, (8, 8, 3, 3)).astype(np.float32), "w2"), (np.zeros(8, np.float32), "b2"),
        (rng.normal(0, 0.5, (10, 8)).astype(np.float32), "w3"), (np.zeros(10, np.float32), "b3")]]
    pre = []
    if weight_via == "initializer":
        inits.append(numpy_helper.from_array(w1, "w1"))
    elif weight_via == "constant":
        pre.append(helper.make_node("Constant", [], ["w1"], name="w1_const", value=numpy_helper.from_array(w1)))
    else:  # an already-quantized weight: int8 initializer -> DequantizeLinear
        inits += [numpy_helper.from_array(np.round(w1 / 0.01).astype(np.int8), "w1_q"),
                  numpy_helper.from_array(np.array(0.01, np.float32), "w1_s")]
        pre.append(helper.make_node("DequantizeLinear", ["w1_q", "w1_s"], ["w1"], name="w1_dq"))
    nodes = pre + [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="stem", pads=[1, 1, 1, 1], group=group),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_ch, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def _inputs(in_ch: int, n: int = 64, size: int = 12) -> np.ndarray:
    return np.random.default_rng(1).uniform(0, 1, (n, in_ch, size, size)).astype(np.float32)


def _conv_weight_producers(path) -> dict[str, str]:
    """Conv name -> op type producing its weight ('initializer' when read directly)."""
    graph = onnx.load(str(path)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return {n.name: producer.get(n.input[1], "initializer") for n in graph.node if n.op_type == "Conv"}


def test_stem_detection_follows_constant_and_dequantize(tmp_path):
    for via in ("initializer", "constant", "dequantize"):
        assert stem_convs(onnx.load(str(_conv_net(3, tmp_path / f"{via}.onnx", weight_via=via)))) == ["stem"]
    assert stem_convs(onnx.load(str(_conv_net(16, tmp_path / "c16.onnx")))) == []
    # Depthwise on an 8-channel input: weight dims[1] = 1, but 8 channels enter; not a stem.
    assert stem_convs(onnx.load(str(_conv_net(8, tmp_path / "dw.onnx", group=8)))) == []
    assert stem_convs(onnx.load(str(_conv_net(4, tmp_path / "c4.onnx")))) == ["stem"]


def test_a_1d_conv_on_the_input_is_not_a_stem():
    """ORT's fp32 NCHWc stem kernel is 2-D only; a 2-channel Conv1d stays int8 (measured faster)."""
    w = numpy_helper.from_array(np.ones((8, 2, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv1d")], "seq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 128])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 126])], [w])
    assert stem_convs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])) == []


@pytest.mark.parametrize("fp32_stem", [True, False])
def test_stage_keeps_stem_fp32_only_when_asked(tmp_path, fp32_stem):
    src = _conv_net(3, tmp_path / "fp32.onnx")
    x = _inputs(3)
    cfg = QuantizeConfig(scheme=QuantizeScheme(**U8, fp32_stem=fp32_stem), calibration_samples=32,
                         nodes_to_exclude=["fc"])
    facts = quantize(src, x, cfg, tmp_path / "q.onnx", {})
    weights = _conv_weight_producers(tmp_path / "q.onnx")
    assert weights["conv2"] == "DequantizeLinear"
    assert weights["stem"] == ("initializer" if fp32_stem else "DequantizeLinear")
    assert facts["fp32_stem_nodes"] == (["stem"] if fp32_stem else [])
    assert facts["fp32_nodes"] == (["fc", "stem"] if fp32_stem else ["fc"])  # union with the config's list
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    # An fp32 stem reads the float input itself: nothing quantizes the graph input.
    input_quantized = any(n.op_type == "QuantizeLinear" and n.input[0] == "x" for n in graph.node)
    assert input_quantized is not fp32_stem
    err = np.abs(onnx_logits(tmp_path / "q.onnx", x) - onnx_logits(src, x)).max()
    assert err < 0.05, f"int8 logits off by {err}"


def test_stage_leaves_wide_first_conv_alone(tmp_path):
    src = _conv_net(16, tmp_path / "fp32.onnx")
    cfg = QuantizeConfig(scheme=QuantizeScheme(**U8, fp32_stem=True), calibration_samples=32)
    facts = quantize(src, _inputs(16), cfg, tmp_path / "q.onnx", {})
    assert facts["fp32_stem_nodes"] == [] and facts["fp32_nodes"] == []
    assert _conv_weight_producers(tmp_path / "q.onnx") == {"stem": "DequantizeLinear", "conv2": "DequantizeLinear"}


def test_profile_accepts_fp32_stem_and_still_rejects_typos():
    base = {"schema_version": 1, "name": "t", "platform": "amd64"}
    assert validate(TargetProfile, {**base, "quantize": {"fp32_stem": True}}, "t.toml").quantize.fp32_stem is True
    with pytest.raises(ConfigError, match="unknown key 'quantize.fp32_stemm'.*fp32_stem"):
        validate(TargetProfile, {**base, "quantize": {"fp32_stemm": True}}, "t.toml")


def test_targets_show_lists_fp32_stem(tmp_path):
    from toolchain.cli import cli

    (tmp_path / "stemmy.toml").write_text('schema_version = 1\nname = "stemmy"\nplatform = "amd64"\n'
                                          '[quantize]\nfp32_stem = true\n')
    result = CliRunner().invoke(cli, ["targets", "--targets-dir", str(tmp_path), "show", "stemmy", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["profile"]["quantize"]["fp32_stem"] is True and doc["sources"]["quantize.fp32_stem"] == "file"
    result = CliRunner().invoke(cli, ["targets", "--targets-dir", str(tmp_path), "show", "stemmy"])
    assert "quantize.fp32_stem" in result.output and "true" in result.output


@pytest.mark.parametrize("fp32_stem, flipped", [(False, "int8-fp32stem"), (True, "int8-int8stem")])
def test_search_times_the_stem_flipped_variant(tmp_path, fp32_stem, flipped):
    src = _conv_net(3, tmp_path / "fp32.onnx", size=32)
    x = _inputs(3, n=128, size=32)
    y = onnx_logits(src, x).argmax(1)  # labels = fp32 predictions: baseline accuracy 1.0
    report = search_quantization(src, x[:64], x, y, SearchBudget(max_drop=0.5), tmp_path / "search",
                                 scheme=QuantizeScheme(**U8, fp32_stem=fp32_stem))
    by_name = {c.name: c for c in report.candidates}
    assert sorted(by_name) == sorted(["fp32", "int8", flipped])
    assert by_name[flipped].detail["stem_flipped"] and by_name[flipped].detail["fp32_stem"] is not fp32_stem
    assert by_name["int8"].detail["fp32_stem"] is fp32_stem
    assert all(c.latency_ms is not None and c.latency_ms > 0 for c in report.candidates)
    assert report.best in ("int8", flipped) and report.speedup_vs_fp32 > 0
    fp32_variant = flipped if not fp32_stem else "int8"
    weights = _conv_weight_producers(tmp_path / "search" / by_name[fp32_variant].path)
    assert weights == {"stem": "initializer", "conv2": "DequantizeLinear"}
    assert [t["step"] for t in report.tried][:2] == ["int8", flipped]


def _report(latencies: dict[str, float], meets: dict[str, bool]) -> tuple[SearchReport, Candidate]:
    cands = [Candidate(n, f"{n}.onnx", 0.9, 100, latency_ms=ms, meets_budget=meets.get(n, True), baseline=n == "fp32")
             for n, ms in latencies.items()]
    best = next(c for c in cands if c.name == "int8")
    return SearchReport("quantization", {}, 0.9, 0.89, True, "int8", "best.onnx", cands, [], []), best


def test_flags_int8_slower_than_fp32_only_when_every_feasible_variant_loses():
    from toolchain.search.quant import _compare_with_fp32

    report, best = _report({"fp32": 1.0, "int8": 1.10, "int8-fp32stem": 1.25}, {})
    _compare_with_fp32(report, best, "latency")
    assert report.int8_slower_than_fp32 and report.speedup_vs_fp32 == pytest.approx(1 / 1.10)
    assert report.tried[-1]["step"] == "int8-vs-fp32" and 'format = "none"' in report.tried[-1]["finding"]
    # One feasible variant faster than fp32: no flag (an infeasible faster one would not count).
    report, best = _report({"fp32": 1.0, "int8": 1.10, "int8-fp32stem": 0.80}, {})
    _compare_with_fp32(report, best, "latency")
    assert not report.int8_slower_than_fp32 and report.tried == []
    report, best = _report({"fp32": 1.0, "int8": 1.10, "int8-fp32stem": 0.80}, {"int8-fp32stem": False})
    _compare_with_fp32(report, best, "latency")
    assert report.int8_slower_than_fp32
    report, best = _report({"fp32": 1.0, "int8": 1.10}, {})
    _compare_with_fp32(report, best, "bytes")  # a bytes objective wanted the small file: no warning
    assert not report.int8_slower_than_fp32 and report.speedup_vs_fp32 == pytest.approx(1 / 1.10)


@pytest.fixture()
def stubbed_steps(tmp_path, monkeypatch):
    """The recipe's stages stubbed out, so a CLI test reads only the (stubbed) search's report."""
    from toolchain.pipeline import steps

    class _Data:
        x_train = np.zeros((4, 1, 8, 8), np.float32)
        x_test, y_test = x_train, np.zeros(4, np.int64)
        input_name = "x"

    for stage in ("train", "prune", "export"):
        monkeypatch.setattr(steps, stage, lambda *a, **k: None)
    monkeypatch.setattr(steps, "dataset", lambda rec, cache=None: _Data())
    monkeypatch.setattr(steps, "artifact_path", lambda entry: tmp_path / "model.onnx")


def test_cli_warns_and_hints_fp32_stem(tmp_path, monkeypatch, stubbed_steps):
    """The CLI's reading of a report; the recipe's stages and the search itself are stubbed."""
    import toolchain.search
    from toolchain.cli import cli

    report, _ = _report({"fp32": 1.0, "int8": 1.30, "int8-fp32stem": 1.10}, {})
    report.best = "int8-fp32stem"
    report.candidates[2].detail = {"excluded_nodes": [], "fp32_stem": True, "stem_flipped": True}
    report.int8_slower_than_fp32, report.speedup_vs_fp32 = True, 1 / 1.10
    monkeypatch.setattr(toolchain.search, "search_quantization", lambda *a, **k: report)
    result = CliRunner().invoke(cli, ["search", "--target", "cpu-server", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warning == [("warning: every int8 variant within budget is slower than fp32 on this machine (best 0.91x); "
                        "consider [quantize] format = \"none\" for target 'cpu-server'")]
    assert "  to use it: [quantize] fp32_stem = true" in result.output.splitlines()


def test_cli_search_weighs_int8_weights_on_fastest_targets_and_hints_at_the_profile(tmp_path, monkeypatch, stubbed_steps):
    import toolchain.search
    from toolchain.cli import cli

    report, _ = _report({"fp32": 1.0, "int8": 1.30, "fp32-int8weights": 1.0}, {})
    report.best = "fp32-int8weights"
    report.candidates[2].detail = {"excluded_nodes": [], "fp32_compute": True, "weights_int8": 3}
    asked = {}

    def fake_search(*args, **kwargs):
        asked.update(kwargs)
        return report

    monkeypatch.setattr(toolchain.search, "search_quantization", fake_search)
    result = CliRunner().invoke(cli, ["search", "--target", "cpu-server", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert asked["int8_weights"] is True  # cpu-server ships "fastest": the search weighs what the run weighs
    assert any("to use it: nothing in the recipe; target 'cpu-server' has [artifact] ship = \"fastest\"" in line
               for line in result.output.splitlines())
    result = CliRunner().invoke(cli, ["search", "--target", "cpu-server", "--out", str(tmp_path), "--json"])
    assert json.loads(result.output)["recipe_hint"] == {"target_artifact": {"ship": "fastest"}}
    CliRunner().invoke(cli, ["search", "--target", "arm-mobile", "--out", str(tmp_path), "--json"])
    assert asked["int8_weights"] is False  # .ort, ship = "quantized": the stored form would not survive
