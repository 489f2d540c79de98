"""Could *any* depthwise kernel bring int8 MobileNetV2 to 2.5x over fp32? Measured by deleting nodes.

`int8_ceiling.py` answers from the profiler's per-node kernel times, and at 64 px it cannot: the
profiler's own per-node cost inflates small kernels (int8 kernel sum 2.27x the wall time), so no
ceiling was claimed there. This script needs no profiler. It takes the graphs ORT actually runs
(saved after ORT's level-"all" optimization on this host) and times, in interleaved rounds at
1 thread, copies with classes of nodes made free:

- *free depthwise*: every depthwise conv removed (stride 1: its consumers read its input; stride 2:
  a 1x1 max pool with the same stride and layout keeps the shapes right; its time is reported);
- *free depthwise + adds*: also every residual add removed (consumers read its first input).

The outputs of those copies are garbage; only their time means anything. A copy runs exactly the
remaining kernels, with their real per-node overhead, so its wall time is a lower bound for any
int8 graph that keeps them. Hence:

- ceiling with free depthwise = fp32 wall / int8 wall without depthwise convs. Below the 2.5x
  goal, no depthwise kernel however fast (int8, fp32, or none at all) gets this network there on
  these pointwise kernels and this runtime.
- best ORT depthwise kernel = fp32 wall / (int8 without depthwise convs and adds + the cheaper of
  what the depthwise convs cost in fp32 (fp32 wall - fp32 without them) and in int8), conversions
  and adds free:
  the measured counterpart of int8_ceiling's "best per conv". Below 2.5x, neither of ORT's
  depthwise kernels, nor any mix of them, reaches the goal.
- depthwise budget = fp32 wall / 2.5 - int8 without depthwise: what all depthwise convs together
  may cost for the goal, next to what they cost now.

Both graphs are loaded with graph optimization disabled (they are already optimized); the
unmodified saved graphs are timed beside them as the reference.

Models and the int8 build are those of int8_ceiling.py (cpu-server scheme, as `edgeopt run`).

Usage: python benchmarks/int8_ablation.py [--repeats N] [--runs N]
Writes results/int8_ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import int8_ceiling  # same directory: the same three models, built through edgeopt's stages
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GOAL = 2.5


def save_optimized(src: Path, dest: Path) -> Path:
    """The graph ORT runs for `src` on this host (level "all", 1 thread), written to `dest`."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    return dest


def _attr(node, name: str, default=None):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def is_depthwise(node, weights: dict[str, list[int]]) -> bool:
    """A conv whose every group has one input channel: fp32 Conv / NCHWc Conv / FusedConv
    (weight is input 1) or QLinearConv (weight is input 3)."""
    if node.op_type not in ("Conv", "FusedConv", "QLinearConv"):
        return False
    dims = weights.get(node.input[3 if node.op_type == "QLinearConv" else 1])
    return dims is not None and (_attr(node, "group", 1) or 1) > 1 and dims[1] == 1


def is_residual_add(node) -> bool:
    return node.op_type in ("QLinearAdd", "Add", "Sum")


def _subsample(node, data_in: str, strides: list[int]):
    """A 1x1 max pool with the conv's strides, in the conv's own layout: it reads one element in
    four and computes nothing. (A strided Slice was tried first: ORT's generic strided copy took
    776 µs where the fp32 conv it replaced took 316 µs.)"""
    from onnx import helper

    pool = {"kernel_shape": [1, 1], "strides": list(strides)}
    if _attr(node, "channels_last", 0):  # int8 QLinearConv after ORT's NHWC transform
        return helper.make_node("NhwcMaxPool", [data_in], [node.output[0]], domain="com.microsoft", **pool)
    if node.domain == "com.microsoft.nchwc":  # fp32 conv in ORT's blocked NCHWc layout
        return helper.make_node("MaxPool", [data_in], [node.output[0]], domain="com.microsoft.nchwc", **pool)
    return helper.make_node("MaxPool", [data_in], [node.output[0]], **pool)


def free_nodes(src: Path, dest: Path, doomed) -> int:
    """Copy `src` to `dest` without the nodes `doomed(node, weights)` picks; returns how many.
    A removed node's consumers read its first data input; a strided one becomes a 1x1 max pool."""
    import onnx
    model = onnx.load(str(src))
    graph = model.graph
    weights = {t.name: list(t.dims) for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept, removed = [], 0
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if not doomed(node, weights):
            kept.append(node)
            continue
        removed += 1
        data_in = node.input[0]
        strides = _attr(node, "strides", [1, 1]) or [1, 1]
        if any(s != 1 for s in strides) or node.output[0] in outputs:
            kept.append(_subsample(node, data_in, strides))
        else:
            rename[node.output[0]] = data_in
    del graph.node[:]
    graph.node.extend(kept)
    used = {i for n in kept for i in n.input}  # drop the removed nodes' weights: a leaner file, no load warnings
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    onnx.save(model, str(dest))
    return removed


def time_variants(files: dict[str, Path], x: np.ndarray, runs: int, rounds: int, repeats: int) -> dict[str, dict]:
    """p50 µs per file, interleaved rounds at 1 thread, repeated `repeats` blocks: median and
    min-max of the per-block p50s. Saved graphs load with optimization off (already optimized)."""
    import onnxruntime as ort

    from toolchain.bench.latency import interleaved

    sessions = {}
    for name, path in files.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        if name.startswith("opt"):
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sessions[name] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed_name = next(iter(sessions.values())).get_inputs()[0].name
    fns = {n: (lambda s=s: s.run(None, {feed_name: x})) for n, s in sessions.items()}
    blocks: dict[str, list[float]] = {n: [] for n in files}
    for _ in range(repeats):
        stats = interleaved(fns, warmup=20, runs=runs, rounds=rounds, max_seconds=60)
        for n, st in stats.items():
            blocks[n].append(st.p50 * 1e3)
    return {n: {"p50_us": float(statistics.median(v)), "blocks_us": v} for n, v in blocks.items()}


def replacement_us(path: Path, x: np.ndarray, runs: int = 60) -> float:
    """Profiled kernel time (median per node, summed) of the 1x1 pools standing in for strided
    convs in `path`. The profiler overstates small kernels, so subtracting this from the ablated
    graph's wall time can only raise the ceilings: a "no" stays safe."""
    import json
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text(encoding="utf-8"))
    warmup = runs // 3
    return sum(us for op, us in int8_ceiling.kernel_medians(events, runs - warmup, warmup, path.name) if op in POOLS)


POOLS = ("MaxPool", "NhwcMaxPool")


def ablate(name: str, fp32: Path, int8: Path, x: np.ndarray, work: Path, args) -> dict:
    print(f"[ablation] {name}", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    opt32, opt8 = save_optimized(fp32, work / "opt_fp32.onnx"), save_optimized(int8, work / "opt_int8.onnx")
    counts = {
        "fp32_depthwise": free_nodes(opt32, work / "opt_fp32_no_dw.onnx", is_depthwise),
        "int8_depthwise": free_nodes(opt8, work / "opt_int8_no_dw.onnx", is_depthwise),
        "int8_depthwise_and_adds": free_nodes(opt8, work / "opt_int8_no_dw_add.onnx",
                                              lambda n, w: is_depthwise(n, w) or is_residual_add(n)),
    }
    files = {"fp32": fp32, "int8": int8, "opt_fp32": opt32, "opt_int8": opt8,
             "opt_fp32_no_dw": work / "opt_fp32_no_dw.onnx", "opt_int8_no_dw": work / "opt_int8_no_dw.onnx",
             "opt_int8_no_dw_add": work / "opt_int8_no_dw_add.onnx"}
    t = time_variants(files, x, args.runs, args.rounds, args.repeats)
    pools = {n: replacement_us(files[n], x) for n in files if "_no_" in n}
    return {"name": name, "input_shape": list(x.shape), "removed": counts, "timings": t,
            "replacement_us": pools, **ceilings(t, pools)}


def ceilings(timings: dict[str, dict], pools: dict[str, float]) -> dict:
    """The speedups over fp32 (saved graphs, same rounds) that the ablated int8 graphs bound.
    Every estimate errs upward, so a ceiling below the goal is a safe "no": the stand-in pools'
    (overstated) time comes off the ablated int8 graphs, while fp32's depthwise cost is taken
    with its pools left in (an understatement)."""
    raw = {n: v["p50_us"] for n, v in timings.items()}
    p = {n: v - pools.get(n, 0.0) if n.startswith("opt_int8_no") else v for n, v in raw.items()}
    fp32_dw_cost = p["opt_fp32"] - p["opt_fp32_no_dw"]
    int8_dw_cost = p["opt_int8"] - p["opt_int8_no_dw"]
    return {
        "measured_speedup": p["opt_fp32"] / p["opt_int8"],
        "saved_graph_drift": {"fp32": p["opt_fp32"] / p["fp32"], "int8": p["opt_int8"] / p["int8"]},
        "ceiling_free_depthwise": p["opt_fp32"] / p["opt_int8_no_dw"],
        "ceiling_free_depthwise_and_adds": p["opt_fp32"] / p["opt_int8_no_dw_add"],
        "fp32_depthwise_us": fp32_dw_cost,
        "int8_depthwise_us": int8_dw_cost,
        # the faster of ORT's two depthwise kernels in every block, converting between them for free,
        # and the residual adds free too: the most generous estimate here, the one the verdict uses
        "ceiling_best_depthwise": p["opt_fp32"] / (p["opt_int8_no_dw_add"] + min(fp32_dw_cost, int8_dw_cost)),
        # what all depthwise convs together may cost for the goal, the rest of the int8 graph as it is
        "depthwise_budget_us": p["opt_fp32"] / GOAL - p["opt_int8_no_dw"],
    }


def verdict(ceiling: float) -> str:
    return "not excluded" if ceiling >= GOAL else "no"


def render_markdown(doc: dict) -> str:
    from toolchain.bench.results import machine_line

    lines = [
        "# int8 MobileNetV2 with node classes made free (ablation, no profiler)",
        "",
        machine_line(doc["host"], doc["versions"]) + f". Measured {doc['date']}; batch 1, 1 intra-op thread, "
        f"{doc['repeats']} interleaved timing blocks (p50 per block; median of blocks, min-max in brackets). "
        "Rerun: `python benchmarks/int8_ablation.py`.",
        "",
        ("Graphs are the ones ORT runs here (saved after level-\"all\" optimization), timed with optimization off. "
         "*free depthwise*: the int8 graph without its depthwise convs (outputs meaningless, time a lower bound for "
         "any graph that keeps the other kernels); strided ones are replaced by 1x1 max pools whose profiled time is "
         "taken off. *best ORT depthwise kernel*: the int8 graph without depthwise convs and adds, plus the cheaper of "
         "what the depthwise convs cost in fp32 (fp32 minus fp32 without them) and in int8; conversions and adds free. *budget*: what all "
         "depthwise convs together may cost for the goal. Every estimate errs toward a higher ceiling, so a \"no\" "
         f"is safe. The goal is {GOAL}x over fp32."),
        "",
        ("| model | measured int8 | ceiling: free depthwise | ceiling: free depthwise + adds | ceiling: best ORT "
         "depthwise kernel, adds free | all depthwise convs µs: fp32 / int8 / budget for the goal | goal reachable with ORT's kernels? |"),
        "|---|---|---|---|---|---|---|",
    ]
    for m in doc["models"]:
        rng = m["timings"]

        def ratio_range(num: str, den: str, m=m, rng=rng) -> str:
            off = m["replacement_us"].get(den, 0.0)  # as in ceilings(): the pools come off int8's ablated graphs
            r = [a / (b - off) for a, b in zip(rng[num]["blocks_us"], rng[den]["blocks_us"])]
            return f"({min(r):.2f}-{max(r):.2f})"

        lines.append(
            f"| {m['name']} | {m['measured_speedup']:.2f}x {ratio_range('opt_fp32', 'opt_int8')} | "
            f"{m['ceiling_free_depthwise']:.2f}x {ratio_range('opt_fp32', 'opt_int8_no_dw')} | "
            f"{m['ceiling_free_depthwise_and_adds']:.2f}x {ratio_range('opt_fp32', 'opt_int8_no_dw_add')} | "
            f"{m['ceiling_best_depthwise']:.2f}x | {m['fp32_depthwise_us']:.0f} / {m['int8_depthwise_us']:.0f} / "
            f"{m['depthwise_budget_us']:.0f} | {verdict(m['ceiling_best_depthwise'])} |")
    lines += ["", "p50 µs per graph (median of blocks):", "",
              ("| model | fp32 | int8 | saved fp32 | saved int8 | fp32 no dw | int8 no dw | int8 no dw, no adds "
               "| stand-in pools µs (profiled; same columns) | nodes removed (fp32 dw / int8 dw / int8 dw+adds) |"),
              "|---|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        t, c, pools = m["timings"], m["removed"], m["replacement_us"]
        cells = " | ".join(f"{t[k]['p50_us']:.0f}" for k in ("fp32", "int8", "opt_fp32", "opt_int8", "opt_fp32_no_dw",
                                                              "opt_int8_no_dw", "opt_int8_no_dw_add"))
        pool_cells = " / ".join(f"{pools[k]:.0f}" for k in ("opt_fp32_no_dw", "opt_int8_no_dw", "opt_int8_no_dw_add"))
        lines.append(f"| {m['name']} | {cells} | {pool_cells} | "
                     f"{c['fp32_depthwise']} / {c['int8_depthwise']} / {c['int8_depthwise_and_adds']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from toolchain.bench.results import publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=600, help="timed runs per graph per block")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing blocks (median, range)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()

    models = []
    for i, (name, fp32, int8, x) in enumerate(int8_ceiling.build_pairs(args.out)):
        models.append(ablate(name, fp32, int8, x, args.out / "int8_ablation" / f"m{i}", args))
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"),
           "repeats": args.repeats, "goal": GOAL, "models": models}
    publish(args.results, "int8_ablation", doc, render_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
