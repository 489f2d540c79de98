"""The forms benchmarks/transformer.py times: edgeopt's own cpu-server stages (cached quantize +
convert, the profile's session options) next to hand-built ablations (ORT's transformer optimizer
with its default fusions, per-channel vs per-tensor, unfused int8, QDQ for OpenVINO) and OpenVINO
f32 / bf16 / int8 on the same graphs. Also: op counts of the graph each engine runs, and a per-op
profile (ORT `enable_profiling`, OpenVINO perf counts) of the forms that matter."""

from __future__ import annotations

import collections
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "ORT fp32 unfused"
# label -> (engine, what it is); the order is the table's.
FORMS = {
    REFERENCE: ("onnxruntime", "the exported graph, ORT defaults (level all): every ratio's reference"),
    "ORT fp32 fused (ORT defaults)": ("onnxruntime", "transformer optimizer with all its bert fusions incl. SkipLayerNormalization"),
    "ORT fp32 fused (edgeopt)": ("onnxruntime", "edgeopt's fusion (no SkipLayerNormalization), cpu-server session"),
    "ORT int8 dynamic fused (ORT defaults)": ("onnxruntime", "dynamic int8 after all bert fusions, ORT default session"),
    "ORT int8 dynamic fused (edgeopt, cpu-server)": ("onnxruntime", "cpu-server's dynamic candidate (per-channel), its session"),
    "ORT int8 dynamic fused per-tensor": ("onnxruntime", "as edgeopt's, per_channel = false"),
    "ORT int8 dynamic unfused": ("onnxruntime", "dynamic int8 without the transformer optimizer, cpu-server session"),
    "ORT int8 QDQ u8 fused (edgeopt, cpu-server)": ("onnxruntime", "cpu-server's QDQ candidate, its session"),
    "ORT int8 QDQ u8 unfused": ("onnxruntime", "QDQ u8/s8 per-channel without fusion (the graph OpenVINO reads)"),
    "OpenVINO f32": ("openvino", "the exported graph at f32"),
    "OpenVINO bf16": ("openvino", "the exported graph at INFERENCE_PRECISION_HINT bf16"),
    "OpenVINO int8 (QDQ u8 unfused)": ("openvino", "the unfused QDQ graph, f32 elsewhere"),
    "OpenVINO int8+bf16 (QDQ u8 unfused)": ("openvino", "the unfused QDQ graph, bf16 elsewhere"),
}
PROFILED = (REFERENCE, "ORT int8 dynamic fused (ORT defaults)", "ORT int8 dynamic fused (edgeopt, cpu-server)",
            "OpenVINO bf16", "OpenVINO int8+bf16 (QDQ u8 unfused)")


def _ort_fused_default(src: Path, dest: Path) -> dict[str, int]:
    """ORT's transformer optimizer with its own default bert fusions (what edgeopt did before)."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    from toolchain.stages.transformer_fusion import _dims

    heads, hidden = _dims(onnx.load(str(src), load_external_data=False))
    with contextlib.redirect_stdout(sys.stderr):
        fused = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    fused.save_model_to_file(str(dest))
    return {op: n for op, n in fused.get_fused_operator_statistics().items() if n}


def _hand_quantize(src: Path, dest: Path, scheme, data) -> None:
    """The quantize stage's own code path for a scheme, on a graph already fused (or not) by hand."""
    from toolchain.config.stages import QuantizeConfig
    from toolchain.stages.quantize import quantize

    scheme = scheme.model_copy(update={"fuse_transformer": False})
    quantize(src, data.x_train, QuantizeConfig(scheme=scheme, calibration_samples=64), dest, {})


def build(recipe, cache_dir: Path, work: Path) -> tuple[dict[str, tuple[Path, Any]], Any, dict[str, Any]]:
    """label -> (artifact, RuntimeOptions), the data set, and fusion records / notes."""
    from toolchain.config.stages import QuantizeConfig
    from toolchain.config.target import RuntimeOptions, load_target
    from toolchain.pipeline import steps
    from toolchain.pipeline.build_target import convert_config
    from toolchain.pipeline.cache import StageCache
    from toolchain.stages.transformer_fusion import fuse_transformer

    profile = load_target("cpu-server")
    ort_default = RuntimeOptions(intra_op_threads=1, inter_op_threads=1)
    server = profile.runtime.model_copy(update={"intra_op_threads": 1, "inter_op_threads": 1})
    cache, ccfg = StageCache(cache_dir), convert_config(profile)
    data = steps.dataset(recipe)
    exported = steps.export(cache, recipe, data, steps.train(cache, recipe, data), label="export[fp32]")
    src = steps.artifact_path(exported)

    def pipeline_form(update: dict, label: str) -> tuple[Path, Any]:
        """cpu-server's quantize + convert stages (cached) for its scheme with `update`."""
        scheme = profile.quantize.model_copy(update=update)
        q = steps.quantize(cache, QuantizeConfig(scheme=scheme, calibration_samples=64), data, exported, {}, label=label)
        return steps.artifact_path(steps.convert(cache, ccfg, q, {}, label=f"convert[{label}]")), q

    notes: dict[str, Any] = {"fused_ops (ORT defaults)": _ort_fused_default(src, work / "fused_default.onnx")}
    notes["fused_ops (edgeopt)"] = fuse_transformer(src, work / "fused_edgeopt.onnx", True).get("fused_ops")
    dyn, dyn_q = pipeline_form({"format": "dynamic"}, "quantize[dynamic]")
    qdq, _ = pipeline_form({"format": "qdq"}, "quantize[qdq]")
    dyn_pt, _ = pipeline_form({"format": "dynamic", "per_channel": False}, "quantize[dynamic,per-tensor]")
    dyn_unfused, _ = pipeline_form({"format": "dynamic", "fuse_transformer": False}, "quantize[dynamic,unfused]")
    qdq_unfused, qdq_unfused_q = pipeline_form({"format": "qdq", "fuse_transformer": False}, "quantize[qdq,unfused]")
    notes["edgeopt dynamic record"] = dyn_q.record.get("transformer_fusion")
    _hand_quantize(work / "fused_default.onnx", work / "dyn_default.onnx", profile.quantize.model_copy(
        update={"format": "dynamic"}), data)
    ov = RuntimeOptions(engine="openvino", intra_op_threads=1)
    ov_bf16 = ov.model_copy(update={"inference_precision": "bf16"})
    forms = {
        REFERENCE: (src, ort_default),
        "ORT fp32 fused (ORT defaults)": (work / "fused_default.onnx", ort_default),
        "ORT fp32 fused (edgeopt)": (work / "fused_edgeopt.onnx", server),
        "ORT int8 dynamic fused (ORT defaults)": (work / "dyn_default.onnx", ort_default),
        "ORT int8 dynamic fused (edgeopt, cpu-server)": (dyn, server),
        "ORT int8 dynamic fused per-tensor": (dyn_pt, server),
        "ORT int8 dynamic unfused": (dyn_unfused, server),
        "ORT int8 QDQ u8 fused (edgeopt, cpu-server)": (qdq, server),
        "ORT int8 QDQ u8 unfused": (qdq_unfused, server),
        "OpenVINO f32": (src, ov),
        "OpenVINO bf16": (src, ov_bf16),
        # the unconverted QDQ file: cpu-server's "extended" offline pass bakes ORT-only QLinear ops in
        "OpenVINO int8 (QDQ u8 unfused)": (steps.artifact_path(qdq_unfused_q), ov),
        "OpenVINO int8+bf16 (QDQ u8 unfused)": (steps.artifact_path(qdq_unfused_q), ov_bf16),
    }
    return forms, data, notes


def op_counts(path: Path, options) -> dict[str, int]:
    """Op types of the graph the engine executes (ORT after its optimizations; OpenVINO's layers)."""
    from toolchain.runtime import runtime_for

    ops = runtime_for(options).optimized_op_types(path)
    return dict(collections.Counter(ops).most_common(10))


def ort_profile(path: Path, options, feed: dict, runs: int = 100) -> dict[str, float]:
    """Per op type: % of ORT's kernel time over `runs` runs (enable_profiling)."""
    import tempfile

    import onnxruntime as ort

    from toolchain.runtime.ort_runtime import session_options

    opts = session_options(options)
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "prof")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    spent: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            spent[e["args"]["op_name"]] += e["dur"]
    return _shares(spent, runs)


def ov_profile(path: Path, options, feed: dict, runs: int = 100) -> dict[str, float]:
    """Per layer type (and its runtime precision): % of OpenVINO's executed time (PERF_COUNT)."""
    from toolchain.runtime.openvino_runtime import OpenVinoRuntime, import_openvino

    ov = import_openvino()
    rt = OpenVinoRuntime(options)
    config = {k: v for k, v in rt.settings().items() if k != "device"} | {"PERF_COUNT": True}
    core = ov.Core()
    request = core.compile_model(core.read_model(str(path)), "CPU", config).create_infer_request()
    spent: collections.Counter = collections.Counter()
    for _ in range(runs):
        request.infer(feed)
        for info in request.profiling_info:
            spent[f"{info.node_type} ({info.exec_type.split('_')[-1]})"] += info.real_time.total_seconds() * 1e6
    return _shares(spent, runs)


def _shares(spent: collections.Counter, runs: int) -> dict[str, float]:
    total = sum(spent.values()) or 1.0
    out = {"kernel_us_per_run": round(total / runs, 1)}
    out.update({op: round(100 * us / total, 1) for op, us in spent.most_common(8)})
    return out


def fidelity(sessions: dict[str, Any], feeds: list[dict]) -> dict[str, dict[str, float]]:
    """SQNR (dB) of each form's logits vs the reference's, and top-1 agreement, on `feeds`."""
    from toolchain.bench.fidelity import sqnr_db

    def logits(s):
        return np.concatenate([s.run(None, f)[0] for f in feeds])

    ref = logits(sessions[REFERENCE])
    out = {}
    for label, s in sessions.items():
        got = logits(s)
        out[label] = {"sqnr_db": float(min(sqnr_db(ref, got), 200.0)),
                      "agreement": float((got.argmax(1) == ref.argmax(1)).mean())}
    return out


def skip_layer_norm_micro(shapes=((32, 64), (64, 128), (128, 256)), runs: int = 500) -> list[dict[str, Any]]:
    """One ORT SkipLayerNormalization vs Add + LayerNormalization (optimizations off, 1 thread),
    interleaved in 5 rounds: the kernel cost behind edgeopt's choice not to fuse it."""
    import time

    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, hidden):
        params = [numpy_helper.from_array(np.full(hidden, v, np.float32), n) for n, v in (("g", 1.0), ("b", 0.0))]
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "s", "y")]
        graph = helper.make_graph(nodes, "g", io[:2], io[2:], params)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.graph_optimization_level = 1, ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    out = []
    for tokens, hidden in shapes:
        graphs = {
            "SkipLayerNormalization": [helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b"], ["y"],
                                                        domain="com.microsoft", epsilon=1e-5)],
            "Add + LayerNormalization": [helper.make_node("Add", ["x", "s"], ["a"]),
                                         helper.make_node("LayerNormalization", ["a", "g", "b"], ["y"], epsilon=1e-5)],
        }
        sessions = {k: ort.InferenceSession(model(v, hidden).SerializeToString(), opts, providers=["CPUExecutionProvider"])
                    for k, v in graphs.items()}
        feed = {n: np.random.default_rng(0).random((1, tokens, hidden), dtype=np.float32) for n in ("x", "s")}
        p50 = {k: [] for k in sessions}
        for _ in range(5):
            for k, sess in sessions.items():
                times = []
                for _ in range(runs // 5):
                    start = time.perf_counter()
                    sess.run(None, feed)
                    times.append(time.perf_counter() - start)
                p50[k].append(1e6 * float(np.median(times)))
        out.append({"tokens": tokens, "hidden": hidden, **{k: round(float(np.median(v)), 1) for k, v in p50.items()}})
    return out
