"""The ORT uint8 QDQ peer (pipeline/variants.py, issue 14): cpu-server's ship rule weighs the scheme ONNX
Runtime's own quantize_static writes with uint8 activations, so what ships is never slower than it
beyond the ship tie. The peer candidate is checked to be that scheme (same int8 weights and scales
as ORT's own output), and on a ResNet-18-style network edgeopt did not write (the benchmark's
re-creation of He et al.'s layout) the shipped candidate is the fastest within the tie by the
report's own numbers, and the report says how it compares with the peer."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_quantize_stem import _conv_net, _inputs

from toolchain.config.base import to_toml
from toolchain.config.target import load_target
from toolchain.pipeline.variants import PEER_LABEL, PEER_SCHEME, peer_equivalent, scheme_variants
from toolchain.stages.quantize import QuantizeConfig, quantize

STEM_OFF = "int8[fp32_stem=false]"
ROOT = Path(__file__).resolve().parents[2]


def test_the_peer_is_built_once_unless_a_candidate_already_is_it():
    profile = load_target("cpu-server")
    assert "ort_uint8_qdq" in profile.artifact.scheme_candidates
    scheme = profile.quantize
    stem = scheme_variants(profile, scheme, set(), {"stem_convs": ["stem"], "attention_nodes": 0})
    assert list(stem) == [STEM_OFF, PEER_LABEL]
    assert stem[PEER_LABEL].model_dump(include=set(PEER_SCHEME)) == PEER_SCHEME
    # a profile whose own scheme is ORT's (per-tensor; no stem in the graph): nothing more to build
    per_tensor = scheme.model_copy(update={"per_channel": False})
    none = scheme_variants(profile, per_tensor, set(), {"stem_convs": [], "attention_nodes": 0})
    assert none == {} and peer_equivalent({"int8": per_tensor}, {"stem_convs": []}) == "int8"
    # with a stem, the fp32_stem flip of a per-tensor scheme is the peer: named, not built twice
    flips = scheme_variants(profile, per_tensor, set(), {"stem_convs": ["stem"]})
    assert list(flips) == [STEM_OFF] and peer_equivalent({"int8": per_tensor, **flips}, {"stem_convs": ["stem"]}) == STEM_OFF
    # a recipe that pins per_channel decided the scheme: no peer overriding it
    assert PEER_LABEL not in scheme_variants(profile, scheme, {"per_channel"}, {"stem_convs": ["stem"]})


def _ort_uint8_qdq(src, calib: np.ndarray, dest) -> None:
    """What a user of ONNX Runtime writes: quantize_static, QDQ, uint8 activations, the rest default."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dest), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8)


def _quantized_tensors(path) -> tuple[Counter, list[bytes]]:
    model = onnx.load(str(path))
    ints = sorted(numpy_helper.to_array(i).tobytes() for i in model.graph.initializer
                  if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32))
    return Counter(n.op_type for n in model.graph.node), ints


def test_the_peer_scheme_writes_what_ort_quantize_static_writes(tmp_path):
    src = _conv_net(3, tmp_path / "rgb.onnx")
    x = _inputs(3, n=32)
    profile = load_target("cpu-server")
    peer = scheme_variants(profile, profile.quantize, set(), {"stem_convs": ["stem"]})[PEER_LABEL]
    cfg = QuantizeConfig(scheme=peer, calibration_samples=len(x), seed=0)
    record = quantize(src, x, cfg, tmp_path / "ours.onnx", {})
    _ort_uint8_qdq(src, x, tmp_path / "ort.onnx")
    ours, theirs = _quantized_tensors(tmp_path / "ours.onnx"), _quantized_tensors(tmp_path / "ort.onnx")
    assert record["fp32_stem_nodes"] == [] and ours[0]["QuantizeLinear"] >= 3
    assert ours == theirs  # the same nodes, the same int8 weights, zero points and int32 biases
    # and not what cpu-server's own scheme writes (per-channel, fp32 stem)
    quantize(src, x, cfg.model_copy(update={"scheme": profile.quantize}), tmp_path / "profile.onnx", {})
    assert _quantized_tensors(tmp_path / "profile.onnx") != theirs


def _resnet18_64px(path, x: np.ndarray):
    """benchmarks/runtimes.py's ResNet-18 (10 classes), BatchNorm statistics from `x`, exported."""
    import importlib.util

    import torch

    from toolchain.config.stages import ExportConfig
    from toolchain.stages.export import export_onnx

    spec = importlib.util.spec_from_file_location("bench_runtimes", ROOT / "benchmarks" / "runtimes.py")
    runtimes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtimes)
    torch.manual_seed(0)
    model = runtimes.resnet18(num_classes=10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.as_tensor(x[:16]))
    export_onnx(model.eval(), x[:4], ExportConfig(parity_atol=1e-3, parity_samples=2), path)
    return path


@pytest.mark.slow
def test_resnet18_ships_the_fastest_candidate_and_reports_the_peer(fast_targets_dir, tmp_path):
    import onnxruntime as ort

    from toolchain.compress.run import CompressOptions, compress, compress_document, render_compress
    from toolchain.pipeline.ship import pick_fastest

    data = tomllib.loads((fast_targets_dir / "cpu-server.toml").read_text())
    data["benchmark"].update(thread_sweep=[], batch_sizes=[1], rounds=3, runs=30, warmup_runs=3)
    data["budgets"].update(max_size_ratio=0.9, max_accuracy_drop=0.5, max_peak_memory_mb=4000.0)
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "cpu-server.toml").write_text(to_toml(data))
    x = np.random.default_rng(0).normal(size=(48, 3, 64, 64)).astype(np.float32)
    model = _resnet18_64px(tmp_path / "resnet18.onnx", x)
    y = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0].argmax(1)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    result = compress(CompressOptions(model=str(model), targets=("cpu-server",), data=str(tmp_path / "data.npz"),
                                      out_dir=tmp_path / "out", targets_dir=targets, calibration_samples=16),
                      warn=lambda _: None)
    t, text = compress_document(result)["targets"]["cpu-server"], render_compress(result)
    sel = t["selection"]
    weighed, tie = sel["candidates"], sel["tie"]
    assert {"int8", STEM_OFF, PEER_LABEL} <= set(weighed)
    assert weighed[PEER_LABEL]["scheme"]["per_channel"] is False and weighed[PEER_LABEL]["scheme"]["fp32_stem"] is False
    # the shipped candidate is the ship rule's pick on the report's numbers, and the fastest within the tie
    assert t["shipped"] == pick_fastest(weighed, tie)
    fewest = min(len(c["failed_budgets"]) for c in weighed.values())
    pool = [c["selection_p50_ms"] for c in weighed.values() if len(c["failed_budgets"]) == fewest]
    assert weighed[t["shipped"]]["selection_p50_ms"] <= min(pool) * (1 + tie)
    peer = sel["ort_uint8_qdq"]
    assert peer["candidate"] == PEER_LABEL and peer["weighed"]
    assert peer["speedup"] == weighed[PEER_LABEL]["selection_p50_ms"] / weighed[t["shipped"]]["selection_p50_ms"]
    if not weighed[PEER_LABEL]["failed_budgets"]:
        assert peer["speedup"] >= 1 / (1 + tie)  # never slower than ORT's own uint8 QDQ beyond the tie
    assert f"vs ORT's own uint8 QDQ ({PEER_LABEL}): shipped {peer['speedup']:.2f}x as fast" in text
    assert "  why: " in text
