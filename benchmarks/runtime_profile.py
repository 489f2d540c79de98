"""Where the time goes, per class of operator, in the int8, f32 and bf16 forms of runtimes.py's models.

runtimes.py measures how fast each runtime runs ResNet-18 and MobileNetV2 (224 px, 1 thread, batch 1);
issue 14 asks, where a speed goal is missed on the CPU at hand, why. This script answers with per-op
profiles of the same files:

- OpenVINO (CPU plugin): PERF_COUNT per executed layer (real time), on edgeopt's x86-server-openvino
  fp32 and int8 files, f32 and, where the CPU has bf16 compute, bf16;
- ONNX Runtime: its profiler's per-node kernel times on the graphs it actually runs (saved after its
  level-"all" optimization, then loaded with optimization off so node names match), fp32 and ORT's
  uint8 QDQ int8.

Layers are grouped into dense convolutions (kxk), 1x1 convolutions, depthwise convolutions, fully
connected/MatMul, data movement (reorders, quantize/dequantize, converts), and the rest (pooling,
adds, activations). Per class: the median over inferences of the summed layer times. From those:

- conv speedup = f32 conv time / int8 conv time, per class: what the int8 kernels themselves give;
- ceiling with free non-conv layers = f32 total / int8 conv time: no runtime can beat that without
  faster int8 convolutions. AVX512-VNNI (no AMX) does 4 int8 multiply-adds per 32-bit lane where f32
  does one, so a compute-bound int8 conv tops out near 4x its f32 twin; AMX changes that bound.

Profilers add per-layer cost (small layers look bigger, ORT's most): the shares are for comparing
classes, the ratios of like with like. Wall-clock speedups are runtimes.py's.

Usage: python benchmarks/runtime_profile.py [--models mobilenet_v2,resnet18] [--inferences N] [--samples N]
Writes results/runtime_profile.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runtimes

RESULTS = runtimes.RESULTS
CLASSES = ("dense conv", "1x1 conv", "depthwise conv", "fully connected", "data movement", "other")
CONVS = CLASSES[:3]


def ov_class(node_type: str, exec_type: str) -> str:
    if node_type in ("Convolution", "GroupConvolution"):
        if node_type == "GroupConvolution" or "dw" in exec_type:
            return "depthwise conv"
        return "1x1 conv" if "1x1" in exec_type else "dense conv"
    if node_type.startswith(("FullyConnected", "MatMul")):
        return "fully connected"
    if node_type in ("Reorder", "FakeQuantize", "Convert", "Subtract", "Multiply", "Transpose"):
        return "data movement"
    return "other"


def ov_profile(path: Path, precision: str, x: np.ndarray, inferences: int) -> dict[str, float]:
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": precision,
              "PERF_COUNT": True}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    per_class: dict[str, list[float]] = defaultdict(list)
    for i in range(inferences + 5):
        request.infer({compiled.inputs[0]: x})
        if i < 5:  # warm-up
            continue
        sums = dict.fromkeys(CLASSES, 0.0)
        for layer in request.profiling_info:  # the last inference's layers
            sums[ov_class(layer.node_type, layer.exec_type)] += layer.real_time.total_seconds() * 1e6
        for k, v in sums.items():
            per_class[k].append(v)
    return {k: statistics.median(v) for k, v in per_class.items()}


def _conv_kind(node, shapes: dict[str, list[int]]) -> str:
    attrs = {a.name: a for a in node.attribute}
    group = attrs["group"].i if "group" in attrs else 1
    weight = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
    dims = shapes.get(weight)
    if dims is not None and group > 1 and group == dims[0]:
        return "depthwise conv"
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else (dims or [0, 0, 0, 0])[2:]
    return "1x1 conv" if kernel and all(k == 1 for k in kernel) else "dense conv"


def ort_class(node, shapes: dict[str, list[int]]) -> str:
    op = node.op_type
    if "Conv" in op:
        return _conv_kind(node, shapes)
    if op in ("Gemm", "MatMul", "QGemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
        return "fully connected"
    if op in ("QuantizeLinear", "DequantizeLinear", "ReorderInput", "ReorderOutput", "Transpose", "Cast"):
        return "data movement"
    return "other"


def ort_profile(path: Path, x: np.ndarray, inferences: int, work: Path) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    saved = work / f"{path.stem}.ort-optimized.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.optimized_model_filepath = str(saved)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(saved)).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    kind = {n.name: ort_class(n, shapes) for n in graph.node}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = str(work / f"{path.stem}-prof")
    sess = ort.InferenceSession(str(saved), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(inferences + 5):
        sess.run(None, feed)
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_run: dict[str, list[float]] = defaultdict(list)
    runs = [e for e in events if e.get("name") == "model_run"][5:]  # after the warm-up
    for run in runs:
        start, end = run["ts"], run["ts"] + run["dur"]
        sums = dict.fromkeys(CLASSES, 0.0)
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and start <= e["ts"] <= end:
                sums[kind.get(e["name"][: -len("_kernel_time")], "other")] += e["dur"]
        for k, v in sums.items():
            per_run[k].append(v)
    return {k: statistics.median(v) for k, v in per_run.items()}


def forms(files: dict[str, Path], bf16: bool) -> dict[str, tuple]:
    """label -> (engine, file, precision): the forms profiled, f32 reference first per engine."""
    out = {"ort fp32": ("ort", files["fp32"], None), "ort int8 (uint8 QDQ)": ("ort", files["peer/qdq-uint8"], None),
           "openvino f32": ("ov", files["x86-server-openvino/fp32"], "f32"),
           "openvino int8 (edgeopt)": ("ov", files["x86-server-openvino/int8"], "f32")}
    if bf16:
        out["openvino bf16"] = ("ov", files["x86-server-openvino/fp32"], "bf16")
    return out


def profile_model(name: str, inferences: int, samples: int, bf16: bool) -> dict:
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(samples, 3, 224, 224)).astype(np.float32)
    x = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix=f"runtime-profile-{name}-") as tmp:
        work = Path(tmp)
        files = runtimes.artifacts(name, runtimes.build(name, calib), calib, work)
        profiles, wall = {}, {}
        for label, (engine, path, precision) in forms(files, bf16).items():
            profiles[label] = (ort_profile(path, x, inferences, work) if engine == "ort"
                               else ov_profile(path, precision, x, inferences))
            wall[label] = wall_us(engine, path, precision, x, inferences)
    return {"profiles": profiles, "wall_us": wall, "bounds": bounds(profiles)}


def wall_us(engine: str, path: Path, precision: str | None, x: np.ndarray, inferences: int) -> float:
    """Median wall time of one call without a profiler: beside the layer sums, it shows the runtime's
    own per-call cost outside the layers."""
    from toolchain.config.target import RuntimeOptions
    from toolchain.runtime import load_session

    options = (RuntimeOptions(intra_op_threads=1) if engine == "ort"
               else RuntimeOptions(engine="openvino", intra_op_threads=1, inference_precision=precision))
    sess = load_session(path, options)
    feed = {sess.get_inputs()[0].name: x}
    times = []
    for i in range(inferences + 5):
        started = time.perf_counter()
        sess.run(None, feed)
        if i >= 5:
            times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def bounds(profiles: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per engine: int8 conv speedup per class, and the ceiling with every non-conv layer free."""
    out = {}
    for engine, f32, int8 in (("openvino", "openvino f32", "openvino int8 (edgeopt)"),
                              ("onnxruntime", "ort fp32", "ort int8 (uint8 QDQ)")):
        a, b = profiles[f32], profiles[int8]
        int8_conv = sum(b[c] for c in CONVS)
        out[engine] = {
            "profiled_speedup": sum(a.values()) / sum(b.values()),
            "conv_speedup": {c: a[c] / b[c] for c in CONVS if a[c] > 0 and b[c] > 0},
            "all_conv_speedup": sum(a[c] for c in CONVS) / int8_conv,
            "non_conv_share_of_int8": 1 - int8_conv / sum(b.values()),
            "ceiling_free_non_conv": sum(a.values()) / int8_conv,
        }
    return out


def render(doc: dict) -> str:
    from toolchain.bench.results import machine_line

    lines = ["# Per-operator profiles: where int8, f32 and bf16 time goes (runtimes.py's models)", "",
             machine_line(doc["host"], doc["versions"]) + f"; measured {doc['date']}, 1-minute load average "
             f"{doc['load_average']:.1f}. 1 thread, batch 1, 224 px; median over {doc['inferences']} profiled "
             f"inferences of each class's summed layer times (µs). Rerun: `{doc['command']}`.", "",
             ("Profilers add per-layer cost, ORT's most: compare like with like. Wall-clock ratios: "
             "[runtimes.md](runtimes.md)."), ""]
    for name, m in doc["models"].items():
        labels = list(m["profiles"])
        lines += [f"## {name}", "", "| class | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
        for c in (*CLASSES, "total"):
            cells = [sum(m["profiles"][lb].values()) if c == "total" else m["profiles"][lb][c] for lb in labels]
            lines.append(f"| {c} | " + " | ".join(f"{v:,.0f}" for v in cells) + " |")
        lines.append("| wall time of a call, no profiler | " + " | ".join(f"{m['wall_us'][lb]:,.0f}" for lb in labels) + " |")
        lines += ["", ("| engine | profiled int8 speedup | int8 conv speedup per class | all convs | "
                  "non-conv share of int8 time | ceiling with free non-conv layers |"), "|---|---:|---|---:|---:|---:|"]
        for engine, b in m["bounds"].items():
            per = ", ".join(f"{c} {v:.2f}x" for c, v in b["conv_speedup"].items())
            lines.append(f"| {engine} | {b['profiled_speedup']:.2f}x | {per} | {b['all_conv_speedup']:.2f}x | "
                         f"{b['non_conv_share_of_int8']:.0%} | {b['ceiling_free_non_conv']:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet18")
    ap.add_argument("--inferences", type=int, default=30)
    ap.add_argument("--samples", type=int, default=32, help="random images for BatchNorm statistics and calibration")
    args = ap.parse_args()

    import os
    from importlib import metadata

    from toolchain.bench.results import publish
    from toolchain.hostinfo import has_bf16, host_info

    bf16 = has_bf16()
    doc = {"host": host_info(), "bf16": bf16, "date": time.strftime("%Y-%m-%d"), "inferences": args.inferences,
           "load_average": os.getloadavg()[0], "command": "python benchmarks/runtime_profile.py " + " ".join(sys.argv[1:]),
           "versions": {lib: metadata.version(lib) for lib in ("onnxruntime", "openvino")},
           "models": {name: profile_model(name, args.inferences, args.samples, bf16) for name in args.models.split(",")}}
    publish(RESULTS, "runtime_profile", doc, render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
