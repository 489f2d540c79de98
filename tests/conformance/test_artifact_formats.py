"""Every bundled target profile's artifact: a small conv + relu + gemm ONNX model converted with the
profile's ConvertConfig loads in ONNX Runtime, carries the provenance stamp and computes what the
source computes. A new profile, or a new artifact format, is checked without edits.
"""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from toolchain.config.target import ArtifactSpec, available_targets, load_target_file
from toolchain.pipeline.build_target import convert_config

PROFILES = {name: load_target_file(path) for name, path in available_targets().items()}
PARITY_ATOL = 1e-4  # fp32 in, fp32 out: only the optimizer's reassociation may differ


def _save(graph, opset: int, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tiny_model(path: Path) -> Path:
    """input [N, 1, 8, 8] -> Conv 4x3x3 -> Relu -> Flatten -> Gemm 10, dynamic batch, opset 17."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "conv_b"),
             numpy_helper.from_array(rng.normal(size=(10, 144)).astype(np.float32) * 0.1, "fc_w"),
             numpy_helper.from_array(rng.normal(size=10).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], name="conv"),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
             helper.make_node("Flatten", ["relu"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    return _save(graph, 17, path)


def sequence_model(path: Path) -> Path:
    """tokens [N, T] int64 -> Gather (embedding 16x6) -> ReduceMean over T -> Gemm 3: a second
    symbolic dimension, as text and audio models have (the sequence length)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(16, 6)).astype(np.float32), "embedding"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "time_axis"),
             numpy_helper.from_array(rng.normal(size=(3, 6)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "fc_b")]
    nodes = [helper.make_node("Gather", ["embedding", "tokens"], ["embedded"], name="embed"),
             helper.make_node("ReduceMean", ["embedded", "time_axis"], ["pooled"], name="pool", keepdims=0),
             helper.make_node("Gemm", ["pooled", "fc_w", "fc_b"], ["logits"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "seq", [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["N", "T"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    return _save(graph, 18, path)


def _stamp(target: str) -> dict[str, str]:
    from toolchain.package.metadata import metadata_props_for

    return metadata_props_for("conformance", target, "0" * 64, [str(i) for i in range(10)], {})


def _run(path: Path, x: np.ndarray, optimize: bool = True) -> tuple[np.ndarray, dict[str, str]]:
    """ORT's outputs; `optimize=False` runs a QDQ graph as the float math it specifies, whatever
    int8 kernels this CPU has (without VNNI ORT's U8S8 GEMM saturates: measured 1.8 off fp32
    where the QDQ math is 0.1 off, on an AVX2-only EPYC)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0], dict(sess.get_modelmeta().custom_metadata_map)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_every_artifact_format_has_a_bundled_profile():
    formats = set(typing.get_args(ArtifactSpec.model_fields["format"].annotation))
    assert formats == {p.artifact.format for p in PROFILES.values()}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_artifact_loads_is_stamped_and_agrees_with_the_source(name, source, tmp_path):
    from toolchain.stages.convert import convert

    profile = PROFILES[name]
    cfg = convert_config(profile)
    out = tmp_path / "out"
    out.mkdir()
    facts = convert(source, cfg, out, _stamp(name))
    artifact = out / facts["artifact"]
    assert artifact.suffix == f".{profile.artifact.format}"
    batch = cfg.fixed_batch if cfg.shapes == "fixed" else 3
    x = np.random.default_rng(1).normal(size=(batch, 1, 8, 8)).astype(np.float32)
    expected, _ = _run(source, x)
    got, meta = _run(artifact, x)
    assert {k: meta.get(k) for k in _stamp(name)} == _stamp(name)
    assert got.shape == expected.shape == (batch, 10)
    assert float(np.max(np.abs(got - expected))) <= PARITY_ATOL
    assert sorted(p.name for p in out.iterdir()) == sorted({facts["artifact"], *facts["extra_files"]})


@pytest.mark.parametrize("name", sorted(n for n, p in PROFILES.items() if p.runtime.engine != "onnxruntime"))
def test_int8_and_fp32_artifacts_load_in_the_profiles_engine(name, source, tmp_path):
    """A profile naming another engine ships files that engine compiles: its quantized form too
    (no ORT-only contrib operators baked in by the offline optimization), with outputs near the
    graph's own QDQ math (ORT unoptimized: no CPU-specific int8 kernel in the reference)."""
    import onnx
    from conftest import require_extra

    from toolchain.runtime import runtime_for
    from toolchain.stages.convert import convert
    from toolchain.stages.quantize import QuantizeConfig, quantize

    profile = PROFILES[name]
    require_extra(profile.runtime.engine, profile.runtime.engine)  # engine name = module = extra
    x = np.random.default_rng(1).normal(size=(64, 1, 8, 8)).astype(np.float32)
    q = tmp_path / "q.onnx"
    quantize(source, x, QuantizeConfig(scheme=profile.quantize, calibration_samples=64), q, {})
    for label, src in {"fp32": source, "int8": q}.items():
        out = tmp_path / label
        out.mkdir()
        artifact = out / convert(src, convert_config(profile), out, _stamp(name))["artifact"]
        domains = {n.domain for n in onnx.load(str(artifact)).graph.node}
        assert domains <= {"", "ai.onnx"}, f"{label}: non-standard operators {domains}"
        got = runtime_for(profile.runtime).load(artifact).run(None, {"input": x[:3]})[0]
        expected, _ = _run(artifact, x[:3], optimize=False)
        assert got.shape == (3, 10)
        assert float(np.max(np.abs(got - expected))) <= (PARITY_ATOL if label == "fp32" else 0.05 * np.abs(expected).max())


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_sequence_length_stays_symbolic_where_the_batch_is_fixed(name, tmp_path):
    """A fixed-shape profile fixes the batch only: the sequence length is the data's to choose (it
    was fixed to 0 before, so no text model ran on arm-mobile)."""
    from toolchain.stages.convert import convert

    source = sequence_model(tmp_path / "seq.onnx")
    cfg = convert_config(PROFILES[name])
    out = tmp_path / "out"
    out.mkdir()
    artifact = out / convert(source, cfg, out, _stamp(name))["artifact"]
    batch = cfg.fixed_batch if cfg.shapes == "fixed" else 3
    for length in (5, 11):
        x = np.random.default_rng(length).integers(0, 16, size=(batch, length)).astype(np.int64)
        expected, _ = _run(source, x)
        got, _ = _run(artifact, x)
        assert got.shape == (batch, 3)
        assert float(np.max(np.abs(got - expected))) <= PARITY_ATOL


@pytest.mark.parametrize("name", sorted(n for n, p in PROFILES.items() if p.artifact.format == "ort"))
def test_the_ort_conversion_skips_the_profiles_disabled_optimizers(name, source, tmp_path):
    """[runtime] disabled_optimizers reach the offline .ort conversion too (ORT's converter tool
    takes none): with ConvActivationFusion off, Conv + Relu stay two operators."""
    from toolchain.stages.convert import convert

    cfg = convert_config(PROFILES[name])
    ops = {}
    for label, disabled in (("default", []), ("disabled", ["ConvActivationFusion"])):
        out = tmp_path / label
        out.mkdir()
        facts = convert(source, cfg.model_copy(update={"disabled_optimizers": disabled}), out, _stamp(name))
        ops[label] = (out / "required_operators.config").read_text()
        x = np.random.default_rng(1).normal(size=(cfg.fixed_batch or 3, 1, 8, 8)).astype(np.float32)
        got, _ = _run(out / facts["artifact"], x)
        assert float(np.max(np.abs(got - _run(source, x)[0]))) <= PARITY_ATOL
    assert "FusedConv" in ops["default"] and "FusedConv" not in ops["disabled"]
    assert "Relu" not in ops["default"] and "Relu" in ops["disabled"]
