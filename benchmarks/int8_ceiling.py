"""How much faster can *any* int8 graph of MobileNetV2 run than fp32 on ONNX Runtime's CPU EP?

#3 asks for a cpu-server int8 MobileNetV2 artifact 2.5x faster than ORT fp32 (batch 1, 1 thread).
Whole-model timings only say how far a given graph is from that; this script asks whether any
graph built from ORT's int8 kernels could get there. It profiles fp32 and edgeopt's int8 artifact
of the same weights with ORT's node profiler, matches their convolutions in execution order, and
classes each as stem (the RGB input conv), depthwise, pointwise (1x1) or head (Gemm).

From the per-node kernel times (median over the profiled runs) it reports three ceilings, estimates
of the most int8 could give, each more generous than the last:
- kernel sum: fp32 kernel time / int8 kernel time, every node counted (what int8 buys if
  per-node overhead were equal in both graphs);
- convs only: fp32 wall time / the int8 graph's conv + Gemm kernel time (every other int8 node,
  every Q/DQ/Transpose/Add and all per-node dispatch overhead assumed free);
- best per conv: fp32 wall time / sum over convs of min(fp32 kernel, int8 kernel) (a mixed graph
  that picks the faster kernel for every conv, with free conversions between them).
If even the last is below 2.5x, then with these kernels no choice of scheme, calibration or node
exclusion reaches the goal for this network: the int8 kernels themselves are not fast enough.

The profiler itself slows small kernels (it formats every node's shapes between them). The two
wall-time ceilings therefore take the profiler's whole excess (profiled kernel sum over unprofiled
wall time, timed in the same blocks) off the kernels they count, which can only raise them; and
no ceiling is claimed where that inflation exceeds MAX_INFLATION. At 64 px, where nodes take a
few microseconds, the kernel sums exceeded the wall time (fp32 1.33-1.41x, int8 1.68-2.15x), so
there the per-class ratios are indicative only.

Models: the zoo's trained shapes-mobilenet (width 0.5) at 64 px and 224 px, and the paper's
MobileNetV2 (width 1.0, untrained: kernel times do not depend on weight values) at 224 px, all
quantized with the cpu-server profile's scheme exactly as `edgeopt run` builds it.

Usage: python benchmarks/int8_ceiling.py [--runs N]
Writes results/int8_ceiling.{json,md}; the trained model comes from (or is built into) the
compare_baselines cache under runs/benchmarks/shapes-mobilenet.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import compare_baselines  # same directory: the run's int8 build for exports the run never makes
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = ROOT / "models" / "shapes-mobilenet.toml"
TARGET = "cpu-server"
GOAL = 2.5
CONV_OPS = {"Conv", "QLinearConv", "FusedConv"}
HEAD_OPS = {"Gemm", "QGemm", "MatMul", "QLinearMatMul", "FusedGemm"}
# Runs alternate between the models in blocks of BLOCK, so each is timed with warm caches (a small
# model's run right after another model's is not what an app sees).
BLOCK = 20
MAX_INFLATION = 1.25  # profiled kernel sum / unprofiled wall time above which no ceiling is claimed


def conv_classes(fp32: Path) -> list[str]:
    """'stem' / 'depthwise' / 'pointwise' / 'other' per Conv of the fp32 file, in graph order."""
    import onnx

    model = onnx.load(str(fp32))
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    classes = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        dims = weights[node.input[1]]
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        cin = dims[1] * group
        if cin <= 4 and not classes:
            classes.append("stem")
        elif group > 1 and dims[1] == 1:
            classes.append("depthwise")
        elif dims[2:] == [1, 1]:
            classes.append("pointwise")
        else:
            classes.append("other")
    return classes


def profile_kernels(paths: list[Path], x: np.ndarray, runs: int) -> list[tuple[float, list[tuple[str, float]]]]:
    """Per model: (unprofiled wall p50 µs, [(op type, median kernel µs) per executed node, in
    execution order]), at 1 intra-op thread. Each block of BLOCK runs times every model without the
    profiler and then runs it with the profiler, so machine drift hits walls and kernels alike."""
    import onnxruntime as ort

    from toolchain.config.target import RuntimeOptions
    from toolchain.runtime.ort_runtime import session_options

    warmup = 10  # profiled too; dropped below
    clock = time.perf_counter
    with tempfile.TemporaryDirectory() as tmp:
        plain, profiled = [], []
        for i, path in enumerate(paths):
            opts = session_options(RuntimeOptions(intra_op_threads=1))
            plain.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / f"profile{i}")
            profiled.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
        feed = {plain[0].get_inputs()[0].name: x}
        walls: list[list[float]] = [[] for _ in paths]
        for i in range(len(paths)):
            for _ in range(warmup):
                plain[i].run(None, feed)
                profiled[i].run(None, feed)
        for _ in range(runs // BLOCK):
            for i in range(len(paths)):
                for _ in range(BLOCK):
                    t0 = clock()
                    plain[i].run(None, feed)
                    walls[i].append((clock() - t0) * 1e6)
                for _ in range(BLOCK):
                    profiled[i].run(None, feed)
        runs = runs // BLOCK * BLOCK
        profiles = [json.loads(Path(sess.end_profiling()).read_text(encoding="utf-8")) for sess in profiled]
    return [(float(statistics.median(wall)), kernel_medians(events, runs, warmup, path.name))
            for path, events, wall in zip(paths, profiles, walls)]


def kernel_medians(events: list[dict], runs: int, warmup: int, name: str) -> list[tuple[str, float]]:
    """(op type, median kernel µs over the runs after `warmup`) per executed node, in execution
    order, from an ORT profile of `warmup + runs` runs of one model (`name`, for the error)."""
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // (runs + warmup)
    if per_run * (runs + warmup) != len(kernels):
        raise RuntimeError(f"{name}: {len(kernels)} kernel events do not split into {runs + warmup} runs")
    return [(kernels[i]["args"]["op_name"],
             float(statistics.median(kernels[r * per_run + i]["dur"] for r in range(warmup, runs + warmup))))
            for i in range(per_run)]


def ceilings(fp32_nodes, int8_nodes, classes: list[str], fp32_wall_us: float, int8_wall_us: float) -> dict:
    """Kernel time per class in both graphs and the three ceilings (see the module docstring)."""
    fp32_convs = [us for op, us in fp32_nodes if op in CONV_OPS]
    int8_convs = [us for op, us in int8_nodes if op in CONV_OPS]
    if not len(fp32_convs) == len(int8_convs) == len(classes):
        raise RuntimeError(f"conv counts differ: fp32 {len(fp32_convs)}, int8 {len(int8_convs)}, graph {len(classes)}")
    by_class: dict[str, dict[str, float]] = {}
    for cls, f, q in zip(classes, fp32_convs, int8_convs):
        row = by_class.setdefault(cls, {"count": 0, "fp32_us": 0.0, "int8_us": 0.0})
        row["count"] += 1
        row["fp32_us"] += f
        row["int8_us"] += q
    for name, nodes in (("fp32_us", fp32_nodes), ("int8_us", int8_nodes)):
        head = sum(us for op, us in nodes if op in HEAD_OPS)
        rest = sum(us for op, us in nodes if op not in CONV_OPS | HEAD_OPS)
        by_class.setdefault("head", {"count": 0, "fp32_us": 0.0, "int8_us": 0.0})[name] = head
        by_class.setdefault("everything else", {"count": 0, "fp32_us": 0.0, "int8_us": 0.0})[name] = rest
    by_class["head"]["count"] = sum(1 for op, _ in int8_nodes if op in HEAD_OPS)
    by_class["everything else"]["count"] = sum(1 for op, _ in int8_nodes if op not in CONV_OPS | HEAD_OPS)
    for row in by_class.values():
        row["speedup"] = row["fp32_us"] / row["int8_us"] if row["int8_us"] else None
    fp32_kernels = sum(us for _, us in fp32_nodes)
    int8_kernels = sum(us for _, us in int8_nodes)
    inflation = {"fp32": fp32_kernels / fp32_wall_us, "int8": int8_kernels / int8_wall_us}
    # Generous on purpose: the profiler's whole excess over the wall time is taken off the kernels
    # counted in the ceilings (as if it fell on them alone), which can only raise the ceilings.
    sf, sq = (min(1.0, 1 / inflation[g]) for g in ("fp32", "int8"))
    int8_head = by_class["head"]["int8_us"] * sq
    best_mixed = (sum(min(f * sf, q * sq) for f, q in zip(fp32_convs, int8_convs))
                  + min(int8_head, by_class["head"]["fp32_us"] * sf))
    valid = max(inflation.values()) <= MAX_INFLATION
    return {
        "fp32_wall_us": fp32_wall_us, "int8_wall_us": int8_wall_us, "measured_speedup": fp32_wall_us / int8_wall_us,
        "fp32_kernel_us": fp32_kernels, "int8_kernel_us": int8_kernels, "profiler_inflation": inflation,
        "ceilings_valid": valid,
        "ceiling_kernel_sum": fp32_kernels / int8_kernels,
        "ceiling_convs_only": fp32_wall_us / (sum(int8_convs) * sq + int8_head),
        "ceiling_best_per_conv": fp32_wall_us / best_mixed,
        "by_class": by_class,
    }


def measure_pair(name: str, fp32: Path, int8: Path, x: np.ndarray, args) -> dict:
    print(f"[ceiling] {name}", file=sys.stderr)
    (fp32_wall, fp32_nodes), (int8_wall, int8_nodes) = profile_kernels([fp32, int8], x, args.runs)
    doc = ceilings(fp32_nodes, int8_nodes, conv_classes(fp32), fp32_wall, int8_wall)
    return {"name": name, "input_shape": list(x.shape), "fp32_file": fp32.name, "int8_file": int8.name,
            "int8_bytes_ratio": int8.stat().st_size / fp32.stat().st_size, **doc}


def build_pairs(out: Path) -> list[tuple[str, Path, Path, np.ndarray]]:
    """(name, fp32, int8, one input) for the three models, built through edgeopt's own stages."""
    from toolchain.config.recipe import load_recipe
    from toolchain.config.target import load_target
    from toolchain.config.zoo import build_model
    from toolchain.pipeline import steps
    from toolchain.pipeline.cache import StageCache
    from toolchain.pipeline.run import RunOptions, run_pipeline
    from toolchain.search.measure import export_onnx

    recipe = load_recipe(RECIPE).model_copy(update={"targets": [TARGET]})
    run_dir = out / "shapes-mobilenet"
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(recipe, RunOptions(out_dir=run_dir))
    data = steps.dataset(recipe)
    pairs = [("shapes-mobilenet w0.5 trained, 64 px", Path(result.baseline["fp32_onnx"]),
              result.targets[TARGET].candidates["int8"], np.ascontiguousarray(data.x_test[:1]))]

    profile = load_target(TARGET)
    kwargs = {**recipe.data.kwargs, "size": 224, "samples": 400}
    hi = steps.dataset(recipe.model_copy(update={"data": recipe.data.model_copy(update={"kwargs": kwargs})}))
    x224 = np.ascontiguousarray(hi.x_test[:1])
    trained = steps.load_model(recipe, steps.train(StageCache(run_dir / "cache"), recipe, data)).eval()
    full_cfg = recipe.model.model_copy(update={"kwargs": {**recipe.model.kwargs, "width_mult": 1.0}})
    full = build_model(full_cfg, seed=0).eval()
    work = out / "int8_ceiling"
    for name, model, tag in (("shapes-mobilenet w0.5 trained, 224 px", trained, "w05_224"),
                             ("MobileNetV2 w1.0 (paper widths, untrained), 224 px", full, "w10_224")):
        fp32 = export_onnx(model, x224, work / tag / "fp32.onnx")
        pairs.append((name, fp32, compare_baselines.edgeopt_int8(fp32, hi.x_train, recipe, profile, work / tag / TARGET), x224))
    return pairs


def render_markdown(doc: dict) -> str:
    from toolchain.bench.results import machine_line

    lines = [
        "# int8 ceiling of MobileNetV2 on ONNX Runtime's CPU EP",
        "",
        machine_line(doc["host"], doc["versions"])
        + f". Measured {doc['date']}; batch 1, 1 intra-op thread, cpu-server scheme "
        f"({doc['scheme']}). Rerun: `python benchmarks/int8_ceiling.py`.",
        "",
        ("Ceilings estimate the most int8 could give over ORT fp32 (see the script's docstring): *kernel sum* "
        "= fp32 kernels / int8 kernels; *convs only* = fp32 wall / int8 conv+Gemm kernels (everything else free); "
        "*best per conv* = fp32 wall / the faster of the two kernels for every conv (a free mixed graph). "
        "The last two take the profiler's excess off the int8 kernels, which can only raise them. "
        f"The goal is {GOAL}x."),
        "",
        (f"Profiler inflation = profiled kernel sum / unprofiled wall time; above {MAX_INFLATION} the profiler's own "
        "per-node cost distorts the kernel times and no ceiling is claimed (n/a). The same question without the "
        "profiler, by timing the graphs with node classes deleted (and answered at 64 px too): "
        "[int8_ablation.md](int8_ablation.md)."),
        "",
        ("| model | measured | profiler inflation fp32 / int8 | ceiling: kernel sum | ceiling: convs only "
        "| ceiling: best per conv | goal reachable? |"),
        "|---|---|---|---|---|---|---|",
    ]
    for m in doc["models"]:
        inf = m["profiler_inflation"]
        if m["ceilings_valid"]:
            best = m["ceiling_best_per_conv"]
            cells = (f"{m['ceiling_kernel_sum']:.2f}x | {m['ceiling_convs_only']:.2f}x | {best:.2f}x "
                     f"| {'not excluded' if best >= GOAL else 'no'}")
        else:
            cells = "n/a | n/a | n/a | not shown by this method"
        lines.append(f"| {m['name']} | {m['measured_speedup']:.2f}x | {inf['fp32']:.2f} / {inf['int8']:.2f} | {cells} |")
    for m in doc["models"]:
        lines += ["", f"## {m['name']}", "",
                  (f"Wall p50: fp32 {m['fp32_wall_us']:.0f} µs, int8 {m['int8_wall_us']:.0f} µs; "
                  f"kernel sums: fp32 {m['fp32_kernel_us']:.0f} µs, int8 {m['int8_kernel_us']:.0f} µs."), "",
                  "| nodes | count (int8 graph) | fp32 kernel µs | int8 kernel µs | int8 speedup |", "|---|---|---|---|---|"]
        order = ("stem", "depthwise", "pointwise", "other", "head", "everything else")
        for cls, row in sorted(m["by_class"].items(), key=lambda kv: order.index(kv[0])):
            sp = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
            lines.append(f"| {cls} | {row['count']} | {row['fp32_us']:.0f} | {row['int8_us']:.0f} | {sp} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from toolchain.bench.results import publish
    from toolchain.config.target import load_target
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=500, help="timed and profiled runs per model, alternating")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()

    q = load_target(TARGET).quantize
    scheme = f"{q.format.upper()} {'U' if q.activation_type == 'uint8' else 'S'}8{'U' if q.weight_type == 'uint8' else 'S'}8, " \
             f"{'per-channel' if q.per_channel else 'per-tensor'}, {q.calibration_method}, fp32 stem {q.fp32_stem}"
    models = [measure_pair(*pair, args) for pair in build_pairs(args.out)]
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"),
           "scheme": scheme, "goal": GOAL, "models": models}
    publish(args.results, "int8_ceiling", doc, render_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
