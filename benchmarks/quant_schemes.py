"""Which int8 scheme makes MobileNetV2 fast on ONNX Runtime's CPU EP, and why the default does not.

Quantizes one fp32 export many ways and measures each against fp32 in the same interleaved run:
latency (batch 1, 224 px, 1 thread), size, logit SQNR / top-1 agreement, and the op types left in
ORT's session-optimized graph. Those op counts are the "why": a QDQ file is only fast if ORT fuses
every DQ->op->Q group into an int8 kernel; what is not fused runs in fp32 plus Q/DQ/Transpose.

Usage: python benchmarks/quant_schemes.py [--weights sd.pt] [--only REGEX] [--quick] [--out DIR]
Rewrites results/quant_schemes.json and the tables between the markers in quant_schemes.md (the
analysis around them is hand-written). About 7 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SIZE = 224  # the resolution published MobileNetV2 latencies use
NUM_CLASSES = 1000  # ImageNet head: its 1.28M-weight Gemm is a third of the bytes, so size ratios are real
CLASSES_USED = 10  # classes of the synthetic proxy task (the head keeps its 1000 outputs)
CALIB_N = 32  # minmax ranges stop moving after a few dozen images; more only slows the run
EVAL_N = 200
TRAIN_N = 1024
INT8_OK = {"session.qdqisint8allowed": "1"}  # lets ORT fuse S8-activation groups (its ARM default)
CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


# ---------------------------------------------------------------- data, model, export
def structured_images(n: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet-normalised images with smooth colour fields, hard edges and a texture, unlike noise,
    so calibration sees realistic ranges; label = texture orientation bin x object shape."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out, labels = np.empty((n, 3, size, size), np.float32), rng.integers(0, CLASSES_USED, n)
    for i, label in enumerate(labels):
        g = int(rng.integers(2, 9))
        low = torch.from_numpy(rng.random((1, 3, g, g), dtype=np.float32))
        img = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)[0].numpy()
        theta = (label % 5 + rng.uniform(0.1, 0.9)) * np.pi / 5
        grating = np.sin(2 * np.pi * rng.uniform(3, 8) * (xx * np.cos(theta) + yy * np.sin(theta)))
        img += rng.uniform(0.15, 0.35) * grating * rng.uniform(0.5, 1, (3, 1, 1))
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, r = rng.uniform(0.15, 0.85, 2).tolist() + [rng.uniform(0.08, 0.25)]
            disk = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[:, disk if label >= 5 else (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r)] = rng.random((3, 1))
        out[i] = np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return (out - mean) / std, labels


def build_model(weights: str | None, train_steps: int):
    import torch

    spec = importlib.util.spec_from_file_location("zoo_mobilenet_v2", ROOT / "models" / "mobilenet_v2.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    torch.manual_seed(0)
    model = zoo.build(num_classes=NUM_CLASSES)
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu"))
        return model.eval(), f"loaded from {Path(weights).name}"
    # A randomly initialised deep net is chaotic: small perturbations (int8 rounding included) grow
    # layer by layer, so its int8 SQNR is unrepresentative (about 11 dB measured here, against
    # ~27 dB after the proxy training below). No pretrained weights are downloaded.
    x, y = (torch.from_numpy(a) for a in structured_images(TRAIN_N, seed=100, size=64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(train_steps):
        idx = torch.from_numpy(np.random.default_rng(step).choice(TRAIN_N, 32, replace=False))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    # BN statistics depend on resolution: re-estimate them at the benchmark's.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
    with torch.no_grad():
        for k in range(4):
            model(torch.from_numpy(structured_images(16, seed=1000 + k)[0]))
    return model.eval(), (f"random init + {train_steps} Adam steps on the synthetic 10-class task at 64 px "
                          f"(last loss {loss.item():.2f}), BN statistics re-estimated at {SIZE} px")


def export_fp32(model, dest: Path) -> dict:
    """The exporter call the toolchain uses, then check what was really written."""
    import onnx
    import torch
    from onnx import version_converter

    with contextlib.redirect_stdout(sys.stderr), torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), str(dest), dynamo=True,
                          external_data=False, opset_version=17)
    proto = onnx.load(str(dest))
    facts = {"opset_written": _opset(proto), "ops_exported": _count(proto.graph.node)}
    facts["batchnorm_nodes"] = facts["ops_exported"].get("BatchNormalization", 0)
    if facts["opset_written"] != 17:
        # torch 2.13 writes opset 18 when the graph has a mean (ReduceMean takes axes as an input
        # from 18) because its own down-conversion fails. onnx's converter succeeds but keeps
        # `noop_with_empty_axes`, which opset 17 does not know: checker and ORT reject the file.
        proto = version_converter.convert_version(proto, 17)
        facts["reducemean_attrs_stripped"] = 0
        for node in (n for n in proto.graph.node if n.op_type == "ReduceMean"):
            keep = [a for a in node.attribute if a.name != "noop_with_empty_axes"]
            facts["reducemean_attrs_stripped"] += len(node.attribute) - len(keep)
            del node.attribute[:]
            node.attribute.extend(keep)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(dest))
    facts["opset_final"] = _opset(proto)
    return facts


def _opset(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _count(nodes) -> dict:
    return dict(collections.Counter(n.op_type for n in nodes).most_common())


# ---------------------------------------------------------------- graph pre-processing
def ort_basic(src: Path, dest: Path) -> Path:
    """ORT's BASIC level: portable folds only (constants, Conv+BN, Conv+Add), no x86 layouts."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    return dest


# ---------------------------------------------------------------- variants
@dataclass
class Variant:
    name: str
    what: str
    source: str = "fp32"  # which prepared fp32 graph to quantize: fp32 | pre | ortbasic
    kind: str = "static"  # static | dynamic | none (the fp32 baseline itself)
    kw: dict = field(default_factory=dict)  # quantize_static keyword arguments
    exclude: tuple = ()  # op types left in fp32, or "stem" for the first conv
    session_config: dict = field(default_factory=dict)


def variants() -> list[Variant]:
    from onnxruntime.quantization import CalibrationMethod as C
    from onnxruntime.quantization import QuantFormat as F
    from onnxruntime.quantization import QuantType as T

    pc, u8s8 = {"per_channel": True}, {"activation_type": T.QUInt8, "weight_type": T.QInt8}
    best = {**u8s8, **pc}

    def extra(base, **options):
        return {**base, "extra_options": options}

    V = Variant
    return [
        V("fp32", "ORT fp32, graph optimization ALL", kind="none"),
        V("qdq_default", "quantize_static() defaults: QDQ, S8S8, per-tensor, MinMax"),
        V("qdq_default_pre", "defaults after quant_pre_process()", source="pre"),
        V("qdq_s8s8_pc", "S8S8 per-channel", kw=pc),
        V("qdq_s8s8_pc_int8ok", "S8S8 per-channel, qdqisint8allowed=1", kw=pc, session_config=INT8_OK),
        V("qdq_s8s8_pc_actsym", "S8S8 per-channel, ActivationSymmetric", kw=extra(pc, ActivationSymmetric=1)),
        V("qdq_u8s8", "U8S8 per-tensor", kw=u8s8),
        V("qdq_u8s8_pc", "U8S8 per-channel", kw=best),
        V("qdq_u8s8_pc_pre", "U8S8 per-channel after quant_pre_process()", source="pre", kw=best),
        V("qdq_u8s8_pc_ortbasic", "U8S8 per-channel on ORT-BASIC fp32", source="ortbasic", kw=best),
        V("qdq_u8s8_pc_rr", "U8S8 per-channel, reduce_range", kw={**best, "reduce_range": True}),
        V("qdq_u8u8", "U8U8 per-tensor", kw={"activation_type": T.QUInt8, "weight_type": T.QUInt8}),
        V("qdq_u8s8_pc_actsym", "U8S8 per-channel, ActivationSymmetric", kw=extra(best, ActivationSymmetric=1)),
        V("qdq_u8s8_pc_wasym", "U8S8 per-channel, WeightSymmetric=False", kw=extra(best, WeightSymmetric=0)),
        V("qdq_u8s8_pc_keepclip", "U8S8 pc, QDQKeepRemovableActivations", kw=extra(best, QDQKeepRemovableActivations=1)),
        V("qdq_u8s8_pc_force", "U8S8 pc, ForceQuantizeNoInputCheck", kw=extra(best, ForceQuantizeNoInputCheck=1)),
        V("qdq_u8s8_pc_noadd", "U8S8 per-channel, Add left fp32", kw=best, exclude=("Add",)),
        V("qdq_u8s8_pc_nogemm", "U8S8 per-channel, Gemm left fp32", kw=best, exclude=("Gemm",)),
        V("qdq_u8s8_pc_nostem", "U8S8 per-channel, first conv left fp32", kw=best, exclude=("stem",)),
        V("qdq_u8s8_pc_pct", "U8S8 per-channel, Percentile calibration", kw={**best, "calibrate_method": C.Percentile}),
        V("qop_default", "QOperator, else defaults (S8S8 per-tensor)", kw={"quant_format": F.QOperator}),
        V("qop_u8s8_pc", "QOperator U8S8 per-channel", kw={"quant_format": F.QOperator, **best}),
        V("dynamic_default", "quantize_dynamic() defaults", kind="dynamic"),
    ]


class Reader:
    """CalibrationDataReader over a fixed array; a fresh one per quantize call (readers are one-shot)."""

    def __init__(self, name: str, data: np.ndarray):
        self.it = iter([{name: x[None]} for x in data])

    def get_next(self):
        return next(self.it, None)


def build_variant(v: Variant, sources: dict, calib: np.ndarray, work: Path) -> Path:
    import onnx
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    src, out = sources[v.source], work / f"{v.name}.onnx"
    if v.kind == "none":
        return src
    if v.kind == "dynamic":
        quantize_dynamic(str(src), str(out))
        return out
    g = onnx.load(str(src)).graph
    stem = [n.name for n in g.node if n.op_type == "Conv" and g.input[0].name in n.input][:1]
    op_types = None
    if set(v.exclude) - {"stem"}:
        op_types = sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - set(v.exclude))
    quantize_static(str(src), str(out), Reader(g.input[0].name, calib), op_types_to_quantize=op_types,
                    nodes_to_exclude=stem if "stem" in v.exclude else [], **v.kw)
    return out


# ---------------------------------------------------------------- measurement
def session(path: Path, threads: int, config: dict, dump: Path | None = None, profile: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the "hardware specific (NCHWc)" warning on dumping is expected here
    for k, val in config.items():
        so.add_session_config_entry(k, val)
    if dump:
        so.optimized_model_filepath = str(dump)
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def interleaved_latency(sessions: dict, x: np.ndarray, rounds: int, runs: int = 40, cap_s: float = 0.6) -> dict:
    """Each round runs every candidate in turn (rotating who starts), so drift hits all alike."""
    times, per_round, names = {k: [] for k in sessions}, {k: [] for k in sessions}, list(sessions)
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            s, feed = sessions[k], {sessions[k].get_inputs()[0].name: x}
            for _ in range(3):
                s.run(None, feed)
            t_end, got = time.perf_counter() + cap_s, []
            while len(got) < runs and (time.perf_counter() < t_end or len(got) < 5):
                t0 = time.perf_counter()
                s.run(None, feed)
                got.append(time.perf_counter() - t0)
            times[k] += got
            per_round[k].append(float(np.median(got)))
    return {k: {"p50_ms": 1e3 * float(np.median(t)), "p90_ms": 1e3 * float(np.percentile(t, 90)), "n": len(t),
                "round_p50_ms": [1e3 * m for m in per_round[k]]} for k, t in times.items()}


def agreement(sess, ref: np.ndarray, data: np.ndarray, labels: np.ndarray) -> dict:
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[None]})[0] for x in data])
    noise = float(np.sum((ref - out) ** 2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref**2)) / noise)
    return {"top1_agree": float(np.mean(out.argmax(1) == ref.argmax(1))), "sqnr_db": sqnr,
            "task_acc": float(np.mean(out.argmax(1) == labels))}


def op_profiles(cands: dict, x: np.ndarray, work: Path, runs: int = 40) -> dict:
    """Kernel ms per run by op kind (ORT profiler); candidates interleaved run by run."""
    import onnx

    sess = {n: session(p, 1, cfg, work / f"prof_{n}.onnx", str(work / f"prof_{n}"))
            for n, (p, cfg) in cands.items()}
    for _ in range(10 + runs):
        for s in sess.values():
            s.run(None, {s.get_inputs()[0].name: x})
    out = {}
    for name, s in sess.items():
        events = json.loads(Path(s.end_profiling()).read_text())
        kind = {}
        for n in onnx.load(str(work / f"prof_{name}.onnx")).graph.node:
            a = {at.name: at for at in n.attribute}
            if "group" in a and a["group"].i > 1:
                kind[n.name] = f"{n.op_type} depthwise"
            elif "kernel_shape" in a:
                kind[n.name] = f"{n.op_type} {'1x1' if list(a['kernel_shape'].ints) == [1, 1] else 'stem 3x3'}"
        total = collections.Counter()
        kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        for e in kernels[-runs * (len(kernels) // (10 + runs)):]:  # drop the warm-up runs
            total[kind.get(e["name"][: -len("_kernel_time")], e["args"]["op_name"])] += e["dur"] / 1e3 / runs
        out[name] = {k: round(v, 3) for k, v in total.most_common()}
    return out


def environment() -> dict:
    import onnx
    import onnxruntime
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "cores": os.cpu_count()}
    with contextlib.suppress(OSError, AttributeError):
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
        info["cpu_flags"] = {f: f in flags for f in CPU_FLAGS}
    return info


# ---------------------------------------------------------------- main
def run(args) -> dict:
    import onnx
    import torch
    from onnxruntime.quantization.shape_inference import quant_pre_process

    torch.set_num_threads(1)  # the machine's other core belongs to other people's jobs
    eval_n, rounds = (50, 3) if args.quick else (EVAL_N, args.rounds)
    chosen = [v for v in variants() if v.name == "fp32" or not args.only or re.search(args.only, v.name)]
    by_name = {v.name: v for v in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, init = build_model(args.weights, args.train_steps)
        sources = {"fp32": work / "fp32.onnx", "pre": work / "pre.onnx"}
        export = export_fp32(model, sources["fp32"])
        print(f"model: {init}\nexport: {export}", file=sys.stderr)
        quant_pre_process(str(sources["fp32"]), str(sources["pre"]))
        sources["ortbasic"] = ort_basic(sources["fp32"], work / "ortbasic.onnx")
        calib = structured_images(CALIB_N, seed=1)[0]
        data, labels = structured_images(eval_n, seed=2)

        rows, sessions = {}, {}
        for v in chosen:
            t0 = time.perf_counter()
            path, dump = build_variant(v, sources, calib, work), work / f"{v.name}.opt.onnx"
            sessions[v.name] = session(path, 1, v.session_config, dump)
            rows[v.name] = {"what": v.what, "session_config": v.session_config, "path": path,
                            "build_s": round(time.perf_counter() - t0, 2), "bytes": path.stat().st_size,
                            "ops_file": _count(onnx.load(str(path)).graph.node),
                            "ops_optimized": _count(onnx.load(str(dump)).graph.node)}
            print(f"built {v.name} ({rows[v.name]['build_s']}s): {rows[v.name]['ops_optimized']}", file=sys.stderr)
        ref = np.concatenate([sessions["fp32"].run(None, {"x": x[None]})[0] for x in data])
        with torch.no_grad():
            export["max_abs_diff_vs_torch"] = float(np.abs(ref[:8] - model(torch.from_numpy(data[:8])).numpy()).max())
        for name, s in sessions.items():
            rows[name].update(agreement(s, ref, data, labels))

        x = data[:1]
        lat = interleaved_latency(sessions, x, rounds)
        for name, r in rows.items():
            r.update(lat[name])
            r["speedup_vs_fp32"] = lat["fp32"]["p50_ms"] / r["p50_ms"]
            r["round_speedups"] = [b / m for b, m in zip(lat["fp32"]["round_p50_ms"], r["round_p50_ms"])]
            r["size_ratio"] = r["bytes"] / rows["fp32"]["bytes"]

        # The three fastest int8 variants (plus the recommended one) and fp32 at 1 and 2 threads.
        top = sorted((n for n in rows if n != "fp32"), key=lambda n: rows[n]["p50_ms"])[:3]
        deep = [n for n in dict.fromkeys(["fp32", *top, "qdq_u8s8_pc"]) if n in rows]
        threads = interleaved_latency({f"{n}@{t}t": session(rows[n]["path"], t, by_name[n].session_config)
                                       for n in deep for t in (1, 2)}, x, rounds)
        for k, r in threads.items():
            r["speedup_vs_fp32_same_threads"] = threads[f"fp32@{k.split('@')[1]}"]["p50_ms"] / r["p50_ms"]
        profiled = [n for n in dict.fromkeys(["fp32", "qdq_default", "qdq_u8s8_pc", top[0]]) if n in rows]
        profiles = op_profiles({n: (rows[n]["path"], by_name[n].session_config) for n in profiled}, x, work)
    for r in rows.values():
        r.pop("path")
    return {"environment": environment(), "export": export, "variants": rows, "threads": threads,
            "model": {"name": "mobilenet_v2", "num_classes": NUM_CLASSES, "input": [1, 3, SIZE, SIZE], "weights": init},
            "protocol": {"threads": 1, "rounds": rounds, "runs_per_round": 40, "calib_images": CALIB_N,
                         "eval_images": eval_n, "fp32_distinct_top1": len(set(ref.argmax(1).tolist())),
                         "fp32_task_acc": rows["fp32"]["task_acc"]},
            "profile_ms_per_run": profiles}


def write_markdown(res: dict, dest: Path) -> None:
    """Regenerate only the tables between the markers; the analysis around them is hand-written."""
    env, rows, proto = res["environment"], res["variants"], res["protocol"]
    flags = ", ".join(f for f, on in env.get("cpu_flags", {}).items() if on)
    cols = ("QLinearConv", "Conv", "QLinearAdd", "Add", "QuantizeLinear", "DequantizeLinear", "Transpose")
    lines = [(f"Machine: {env.get('cpu')}, {env['cores']} cores ({flags}); onnxruntime {env['onnxruntime']}, "
              f"onnx {env['onnx']}, torch {env['torch']}, numpy {env['numpy']}. Batch 1, {SIZE} px, 1 intra-op "
              f"thread, {proto['rounds']} interleaved rounds. Weights: {res['model']['weights']}. Agreement over "
              f"{proto['eval_images']} held-out images ({proto['fp32_distinct_top1']} distinct fp32 top-1 "
              f"classes; fp32 task accuracy {proto['fp32_task_acc']:.3f})."), "",
             ("| variant | p50 ms | p90 ms | speedup (per-round min-max) | size | top-1 agree | task acc | SQNR dB "
              "| QLinearConv / Conv / QLinearAdd / Add / Q / DQ / Transpose after ORT optimization |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in sorted(rows.items(), key=lambda kv: kv[1]["p50_ms"]):
        o = r["ops_optimized"]
        other = [f"{k} {v}" for k, v in o.items() if k not in cols and k not in ("ReduceMean", "QGemm", "Gemm")]
        lines.append(f"| `{name}`: {r['what']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['speedup_vs_fp32']:.2f}x "
                     f"({min(r['round_speedups']):.2f}-{max(r['round_speedups']):.2f}) | {r['size_ratio']:.3f} | "
                     f"{r['top1_agree']:.3f} | {r['task_acc']:.3f} | {r['sqnr_db']:.1f} | "
                     + " / ".join(str(o.get(k, 0)) for k in cols) + (f" (+ {', '.join(other)})" if other else "") + " |")
    lines += ["", "Threads (interleaved; speedup vs fp32 at the same thread count):", "",
              "| session | p50 ms | p90 ms | speedup |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['speedup_vs_fp32_same_threads']:.2f}x |"
              for k, r in res["threads"].items()]
    prof = res["profile_ms_per_run"]
    kinds = list(dict.fromkeys(k for p in prof.values() for k in p))
    lines += ["", "ORT profiler: kernel ms per run by op kind (1 thread, interleaved):", "",
              "| op kind | " + " | ".join(f"`{n}`" for n in prof) + " |", "|---" * (len(prof) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{p.get(k, 0):.3f}" for p in prof.values()) + " |" for k in kinds]
    lines.append("| **sum** | " + " | ".join(f"{sum(p.values()):.3f}" for p in prof.values()) + " |")
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    old = dest.read_text() if dest.exists() else f"# Int8 schemes for MobileNetV2\n\n{begin}\n{end}\n"
    table = "\n".join([begin, *lines, end])
    dest.write_text(re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: table, old, flags=re.DOTALL))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", help="state_dict for models/mobilenet_v2.py (1000 classes); else proxy-trained")
    ap.add_argument("--only", help="regex over variant names (fp32 is always kept)")
    ap.add_argument("--quick", action="store_true", help="3 rounds, 50 eval images; writes only with --out")
    ap.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--train-steps", type=int, default=150, help="proxy training steps when no --weights")
    args = ap.parse_args(argv)
    res = run(args)
    for name, r in res["variants"].items():
        print(f"{name:24s} {r['p50_ms']:7.2f} ms {r['speedup_vs_fp32']:5.2f}x {r['sqnr_db']:5.1f} dB", file=sys.stderr)
    out = args.out or (None if args.quick else RESULTS)
    if out is None:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "quant_schemes.json").write_text(json.dumps(res, indent=1) + "\n")
    write_markdown(res, out / "quant_schemes.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
