"""How often does `[artifact] ship = "fastest"` ship a different file from one run to the next?

The shipped artifact of a "fastest" target is chosen by timing, so on a noisy machine two runs of
the same recipe can ship different candidates. CI once did exactly that: a kill-and-rerun test
compared two runs of the test recipe and the shipped cpu-server file differed (one run picked
int8, the other int8-weights: the digits model's two forms are 0.5% apart in bytes).

This script builds a recipe once (cached), then re-times the cpu-server candidates `--repeats`
times (`rebench`: every run is a fresh measurement of the very same files) under two benchmark
settings, alternating: the bundled cpu-server profile, and the short benchmark the test suite
uses (tests/conftest.py: 2 warm-up runs, 20 runs over 2 rounds, at most 2 s per candidate).
For each measurement it records what ships under the profile's rule (`ship_tie`, equal forms go
to the preferred one) and under "the lowest p50 wins" (`ship_tie = 0`, the rule before
2026-11-27 whenever no candidate is 5% smaller), and each candidate's p50 relative to int8.

Usage: python benchmarks/ship_stability.py [--recipe PATH] [--repeats 12]
Writes results/ship_stability.{json,md}. About 10 minutes for the default recipe.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TARGET = "cpu-server"
# tests/conftest.py's _fast_profile: the benchmark every end-to-end test (and CI) runs
SHORT = {"warmup_runs": 2, "runs": 20, "rounds": 2, "max_seconds": 2.0}


def write_profiles(tmp: Path) -> dict[str, Path]:
    """A targets directory per setting, each holding only cpu-server."""
    from toolchain.config.base import to_toml
    from toolchain.resources import bundled_dir

    bundled = tomllib.loads((bundled_dir("targets") / f"{TARGET}.toml").read_text())
    short = {**bundled, "benchmark": {**bundled["benchmark"], **SHORT}}
    dirs = {}
    for name, data in (("profile", bundled), ("short", short)):
        d = tmp / name
        d.mkdir()
        (d / f"{TARGET}.toml").write_text(to_toml(data))
        dirs[name] = d
    return dirs


def measure(recipe, out_dir: Path, targets_dir: Path) -> dict[str, Any]:
    """One fresh benchmark of the (cached) candidates and what each rule ships from it."""
    from toolchain.pipeline.run import RunOptions, run_pipeline
    from toolchain.pipeline.ship import pick_fastest

    result = run_pipeline(recipe, RunOptions(out_dir=out_dir, targets=(TARGET,), targets_dir=targets_dir, rebench=True))
    m = result.targets[TARGET].metrics
    weighed = m["selection"]["candidates"]
    return {
        "shipped": m["shipped"],
        "lowest_p50": pick_fastest(weighed, 0.0),
        "candidates": {label: {k: c[k] for k in ("selection_p50_ms", "selection_threads", "bytes", "failed_budgets")}
                       for label, c in weighed.items()},
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    labels = list(runs[0]["candidates"])
    ratios = {label: [r["candidates"][label]["selection_p50_ms"] / r["candidates"]["int8"]["selection_p50_ms"] for r in runs]
              for label in labels if label != "int8"}
    out: dict[str, Any] = {"runs": len(runs)}
    for rule in ("shipped", "lowest_p50"):
        counts = collections.Counter(r[rule] for r in runs)
        out[rule] = {"counts": dict(counts), "differs_from_majority": len(runs) - counts.most_common(1)[0][1]}
    out["p50_vs_int8"] = {label: {"median": statistics.median(v), "min": min(v), "max": max(v)} for label, v in ratios.items()}
    out["bytes"] = {label: runs[0]["candidates"][label]["bytes"] for label in labels}
    return out


def render(doc: dict[str, Any]) -> str:
    from toolchain.bench.results import machine_line

    lines = [
        "# Does `ship = \"fastest\"` ship the same file every run?", "",
        machine_line(doc["host"], doc["versions"], ("onnxruntime", "torch", "edgeopt")),
        (f"Measured {doc['date']}; recipe `{doc['recipe']}`, target {TARGET}; {doc['repeats']} fresh benchmarks of the same "
        "cached candidates per setting, the two settings alternating. Rerun: `python benchmarks/ship_stability.py`."), "",
        ("`ship_tie` rule: candidates within 5% of the lowest p50 count as equally fast, those within 5% of the smallest "
        "of them in bytes as equally small, and of these int8 ships first, then pruned fp32, then int8-weights "
        "(pipeline/ship.py pick_fastest). Lowest p50: the same with `ship_tie = 0`, i.e. the fastest measured ships."), "",
        ("| benchmark setting | runs | ships (`ship_tie` rule) | runs unlike the majority | ships (lowest p50) "
        "| runs unlike the majority | p50 / int8 p50: median (min-max) |"),
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in doc["settings"].items():
        ratio = "; ".join(f"{label} {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})" for label, r in s["p50_vs_int8"].items())
        counts = {rule: ", ".join(f"{k} {v}" for k, v in sorted(s[rule]["counts"].items())) for rule in ("shipped", "lowest_p50")}
        lines.append(f"| {name} ({doc['spec'][name]}) | {s['runs']} | {counts['shipped']} | {s['shipped']['differs_from_majority']} "
                     f"| {counts['lowest_p50']} | {s['lowest_p50']['differs_from_majority']} | {ratio} |")
    first = next(iter(doc["settings"].values()))
    lines += ["", "Bytes: " + ", ".join(f"{label} {b:,}" for label, b in first["bytes"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=None, help="recipe file (default: the embedded default)")
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from toolchain.config.recipe import load_recipe
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    recipe = load_recipe(args.recipe)
    started = time.perf_counter()
    run_dir = ROOT / "runs" / "benchmarks" / "ship_stability" / recipe.name
    runs: dict[str, list[dict[str, Any]]] = {"profile": [], "short": []}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = write_profiles(Path(tmp))
        spec = {name: {k: v for k, v in tomllib.loads((d / f"{TARGET}.toml").read_text())["benchmark"].items()
                       if k in SHORT} for name, d in dirs.items()}
        for i in range(args.repeats):
            for name in (list(dirs) if i % 2 == 0 else list(dirs)[::-1]):  # alternate which setting goes first
                runs[name].append(measure(recipe, run_dir, dirs[name]))
                print(f"{name} {i + 1}/{args.repeats}: ships {runs[name][-1]['shipped']}, lowest p50 {runs[name][-1]['lowest_p50']}",
                      file=sys.stderr)
    doc = {
        "recipe": recipe.name, "repeats": args.repeats, "date": time.strftime("%Y-%m-%d"),
        "spec": {name: ", ".join(f"{k} {v}" for k, v in s.items()) for name, s in spec.items()},
        "settings": {name: summarize(r) for name, r in runs.items()}, "runs": runs,
        "host": host_info(), "versions": library_versions(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    from toolchain.bench.results import publish

    publish(args.out, "ship_stability", doc, render(doc) + f"\nTotal benchmark time: {doc['total_seconds']:.0f} s.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
