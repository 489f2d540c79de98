"""Does distillation in pruning's fine-tune let structured pruning go deeper within the budget?

Builds models/shapes-mobilenet-structured.toml for cpu-server with each (drop_blocks, distill)
pair (same trained weights, same channel schedule) and reports held-out accuracy against the
unpruned fp32 model, the accuracy budget verdict, and what the run shipped. Accuracy is on the
recipe's 600-image test split, so one image is 0.17 points: read single differences with care.

Usage: python benchmarks/distill_sweep.py [--pairs 11:0 11:0.7 ...]  (drop_blocks:distill)
Writes results/distill_sweep.{json,md}; builds are cached under runs/benchmarks/kd/.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = ROOT / "models" / "shapes-mobilenet-structured.toml"
TARGET = "cpu-server"


def build(drops: int, distill: float, out: Path) -> dict:
    from toolchain.config.recipe import load_recipe
    from toolchain.pipeline.run import RunOptions, run_pipeline

    base = load_recipe(RECIPE)
    recipe = base.model_copy(update={
        "name": f"kd-d{drops}-k{distill}", "targets": [TARGET],
        "prune": base.prune.model_copy(update={"drop_blocks": drops, "distill": distill})})
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(recipe, RunOptions(out_dir=out))
    t = result.targets[TARGET]
    pruned = t.metrics.get("pruned_fp32", {})
    return {"drop_blocks": drops, "distill": distill, "fp32_accuracy": t.metrics["fp32_accuracy"],
            "pruned_accuracy": pruned.get("accuracy"), "shipped": t.metrics["shipped"],
            "shipped_accuracy": t.metrics["accuracy"], "budget_met": all(v["pass"] for v in t.verdicts.values())}


def render(doc: dict) -> str:
    from toolchain.bench.results import machine_line

    lines = ["# Distillation in pruning's fine-tune (shapes-mobilenet-structured)", "",
             machine_line(doc["host"], doc["versions"], only=("edgeopt", "torch", "torch-pruning")), "",
             (f"Measured {doc['date']} with `python benchmarks/distill_sweep.py`; recipe "
             "`models/shapes-mobilenet-structured.toml` with `drop_blocks` and `[prune] distill` varied (temperature 4), "
             f"fp32 accuracy {100 * doc['rows'][0]['fp32_accuracy']:.2f}%, "
             "75% of channels cut in two steps of 15 fine-tune epochs. Accuracy on the 600-image test split "
             "(0.17 pt per image); the budget is a 1-point drop from the unpruned fp32 model."), "",
             "| blocks dropped | distill | pruned fp32 accuracy | drop vs fp32 (pt) | shipped (accuracy) | budgets |",
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        acc = r["pruned_accuracy"]
        lines.append(f"| {r['drop_blocks']} | {r['distill']:g} | {100 * acc:.2f}% | {100 * (r['fp32_accuracy'] - acc):.2f} "
                     f"| {r['shipped']} ({100 * r['shipped_accuracy']:.2f}%) | {'met' if r['budget_met'] else 'FAILED'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from toolchain.bench.results import publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", nargs="+", default=["10:0", "10:0.7", "11:0", "11:0.5", "11:0.7", "11:0.9", "12:0.7"],
                    help="drop_blocks:distill pairs to build")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    out = ROOT / "runs" / "benchmarks" / "kd"
    pairs = [(int(d), float(k)) for d, k in (p.split(":") for p in args.pairs)]
    rows = [build(d, k, out) for d, k in pairs]
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    publish(args.results, "distill_sweep", doc, render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
