"""How many blocks can structured pruning drop, and what does each drop buy at batch 1?

Channel pruning alone flattened out on MobileNetV2 (width 0.5, 64 px): cutting 45% -> 70% -> 75%
of the channels gave int8 1.64x -> 1.96x -> 2.01x over ORT fp32, because every one of the ~56
remaining nodes still costs a few microseconds. `[prune] drop_blocks` removes whole blocks. This
script builds models/shapes-mobilenet-structured.toml with drop_blocks = 0, 6, 8, 10 (same trained
weights, same channel schedule), then times ORT fp32 and every variant's pruned-fp32 and int8
artifact interleaved in the same rounds, 1 thread, batch 1, in several timing blocks (the machine
drifts for minutes at a time), and reports accuracy from the runs.

Usage: python benchmarks/depth_pruning.py [--drops 0 6 8 10] [--repeats N] [--rounds N] [--runs N]
Writes results/depth_pruning.{json,md}; builds are cached under runs/benchmarks/depth_pruning/.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = ROOT / "models" / "shapes-mobilenet-structured.toml"
CANDIDATES = {"pruned fp32": "pruned_fp32", "int8": "int8"}  # table name -> the run's candidate label


def build(drops: int, out: Path):
    """The recipe with `drop_blocks = drops`, run for cpu-server in a shared cache (same training)."""
    from toolchain.config.recipe import load_recipe
    from toolchain.pipeline.run import RunOptions, run_pipeline

    base = load_recipe(RECIPE)
    recipe = base.model_copy(update={"name": f"{base.name}-drop{drops}", "targets": ["cpu-server"],
                                     "prune": base.prune.model_copy(update={"drop_blocks": drops})})
    with contextlib.redirect_stdout(sys.stderr):
        return run_pipeline(recipe, RunOptions(out_dir=out))


def main() -> int:
    from toolchain.bench.latency import interleaved
    from toolchain.bench.results import publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions
    from toolchain.search.measure import session  # ORT defaults at the given thread count

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--drops", type=int, nargs="+", default=[0, 6, 8, 10])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3000, help="timed runs per candidate in each block")
    ap.add_argument("--repeats", type=int, default=5, help="timing blocks, one after another")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()

    out = ROOT / "runs" / "benchmarks" / "depth_pruning"
    runs = {n: build(n, out) for n in args.drops}

    first = next(iter(runs.values()))
    x = np.ascontiguousarray(_first_test_sample(first))
    files = {"ort-fp32": first.targets["cpu-server"].candidates["fp32"]}
    for n, r in runs.items():
        for label in CANDIDATES.values():
            files[f"drop{n}/{label}"] = r.targets["cpu-server"].candidates[label]
    fns = {}
    for label, path in files.items():
        s = session(Path(path), threads=1)
        name = s.get_inputs()[0].name
        fns[label] = lambda s=s, name=name: s.run(None, {name: x})
    # The machine's speed drifts for minutes at a time (the same ratio read 4.8x and 3.7x a quarter
    # of an hour apart), so the timing is repeated in blocks spread over the run: each block gives
    # its own ratios, and the table reports the median block with the range of all blocks.
    blocks = [interleaved(fns, warmup=200, runs=args.runs, rounds=args.rounds, max_seconds=90) for _ in range(args.repeats)]
    ratios = {label: [b["ort-fp32"].p50 / b[label].p50 for b in blocks] for label in files}
    stats = {label: min(blocks, key=lambda b: abs(b["ort-fp32"].p50 / b[label].p50 - float(np.median(ratios[label]))))[label]
             for label in files}
    ref = float(np.median([b["ort-fp32"].p50 for b in blocks]))

    rows = []
    for n, r in runs.items():
        t = r.targets["cpu-server"]
        st, res = r.baseline["structure"], t.metrics["selection"]["candidates"]
        for kind, label in CANDIDATES.items():
            s, block_ratios = stats[f"drop{n}/{label}"], ratios[f"drop{n}/{label}"]
            rows.append({"drop_blocks": n, "candidate": kind, "p50_ms": s.p50, "p90_ms": s.p90,
                         "speedup_1t": float(np.median(block_ratios)), "speedup_1t_blocks": block_ratios,
                         "bytes": res[label]["bytes"], "size_ratio": res[label]["bytes"] / t.metrics["fp32_bytes"],
                         "accuracy": res[label]["accuracy"], "drop_pt": 100 * (t.metrics["fp32_accuracy"] - res[label]["accuracy"]),
                         "params": st["params_after"], "macs": st["macs_after"],
                         "blocks_dropped": st.get("blocks_dropped", [])})
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"),
           "recipe": RECIPE.name, "schedule": first.recipe.prune.model_dump(include={"amount", "steps", "finetune_epochs", "round_to"}),
           "ort_fp32_p50_ms": ref, "fp32_accuracy": first.targets["cpu-server"].metrics["fp32_accuracy"],
           "protocol": (f"batch 1, 1 thread; {args.repeats} timing blocks one after another, each {args.rounds} interleaved "
                        f"rounds of {args.runs} runs per candidate"), "rows": rows}
    publish(args.results, "depth_pruning", doc, render(doc))
    return 0


def _first_test_sample(run) -> np.ndarray:
    from toolchain.pipeline import steps

    return steps.dataset(run.recipe).x_test[:1]


def render(doc: dict) -> str:
    h, sc = doc["host"], doc["schedule"]
    lines = ["# Depth pruning: dropped blocks vs speed and accuracy", "",
             (f"Machine: {h['cpu']} ({h['cores']} cores, {', '.join(h['isa'])}); onnxruntime {doc['versions'].get('onnxruntime')}, "
              f"torch {doc['versions'].get('torch')}. Measured {doc['date']}; `{doc['recipe']}` (MobileNetV2 width 0.5, 64 px, "
              f"{100 * sc['amount']:.0f}% of channels cut in {sc['steps']} steps of {sc['finetune_epochs']} fine-tune epochs, "
              f"multiples of {sc['round_to']}) with `drop_blocks` varied; {doc['protocol']}; "
              f"speedup = median over the blocks of (ORT fp32 p50 / candidate p50), ORT fp32 being the unpruned model "
              f"({doc['ort_fp32_p50_ms']:.4f} ms median, accuracy {100 * doc['fp32_accuracy']:.2f}%), with the range over blocks; "
              "p50/p90 are from the median block. "
              "Rerun: `python benchmarks/depth_pruning.py`."), "",
             "| drop_blocks | candidate | p50 ms | p90 ms | speedup (range) | bytes | size | accuracy | drop pt | params | MACs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lo, hi = min(r["speedup_1t_blocks"]), max(r["speedup_1t_blocks"])
        lines.append(f"| {r['drop_blocks']} | {r['candidate']} | {r['p50_ms']:.4f} | {r['p90_ms']:.4f} | "
                     f"{r['speedup_1t']:.2f}x ({lo:.2f}-{hi:.2f}) | "
                     f"{r['bytes']:,} | {r['size_ratio']:.3f}x | {100 * r['accuracy']:.2f}% | {r['drop_pt']:.2f} | "
                     f"{r['params']:,} | {r['macs']:,} |")
    lines += ["", "Blocks dropped (the N whose removal raised the training loss least, in network order):", ""]
    seen = set()
    for r in doc["rows"]:
        if r["drop_blocks"] not in seen:
            seen.add(r["drop_blocks"])
            lines.append(f"- {r['drop_blocks']}: {', '.join(r['blocks_dropped']) or 'none'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
