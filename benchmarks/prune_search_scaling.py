"""`edgeopt search --prune-amount` on 2 workers vs 1: wall time of the same bisection (or sweep).

Each candidate is a structured prune + fine-tune of the recipe's trained model, an export and an
accuracy pass: torch work a pool task runs on one thread. On 2 workers each round builds the point
the bisection needs and the one it would need next if the predicted outcome holds
(toolchain/search/prune.py), so a right prediction saves a round. With `--sweep N` the search
tries N evenly spaced amounts instead, independent candidates the workers share out.

Modes, interleaved round by round, each a fresh `edgeopt search` process on a copy of one trained
cache (the search's own candidates are rebuilt every time):
  workers-1   --executor local --workers 1: the sequential search, torch on one thread as in a task
  local-2     --executor local --workers 2 (pool start-up included)
  default     no --executor: in the CLI process, torch on its own thread count (another result)

Per round: wall seconds, candidates decided and built, the chosen candidate and the sha256 of
best/model.onnx (workers-1 and local-2 must agree).

    PYTHONPATH=$PWD python benchmarks/prune_search_scaling.py [--rounds 3] [--recipe resnet-small] [--sweep 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain.bench.results import machine_line
from toolchain.fsio import write_json_atomic, write_text_atomic
from toolchain.hostinfo import host_info
from toolchain.resources import bundled_dir

RESULTS = ROOT / "benchmarks" / "results"
GOAL = 0.6  # issue 16: a search on 2 workers takes at most 0.6x its sequential time
MODES = {"workers-1": ["--executor", "local", "--workers", "1"],
         "local-2": ["--executor", "local", "--workers", "2"], "default": []}


def search(recipe: Path, out: Path, extra: list[str], strategy: list[str]) -> tuple[float, dict]:
    argv = [sys.executable, "-m", "toolchain.cli", "search", str(recipe), "--target", "cpu-server", "--prune-amount",
            *strategy, "--objective", "bytes", "--out", str(out), "--json", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout)


def one_round(mode: str, recipe: Path, trained_cache: Path, folder: Path, strategy: list[str]) -> dict:
    shutil.copytree(trained_cache, folder / "cache")
    wall, doc = search(recipe, folder, MODES[mode], strategy)
    best = folder / "search" / "prune" / doc["best_path"]
    built = [p for p in (folder / "cache" / "search-variants").iterdir() if p.name.startswith("prune-")]
    return {"mode": mode, "wall_s": round(wall, 2), "decided": len(doc["tried"]), "built": len(built),
            "best": doc["best"], "best_sha256": hashlib.sha256(best.read_bytes()).hexdigest()}


def summarize(rows: list[dict]) -> dict:
    """Ratios of walls taken in the same round, and whether 1 and 2 workers chose the same bytes."""
    walls: dict[int, dict[str, float]] = {}
    for row in rows:
        walls.setdefault(row["round"], {})[row["mode"]] = row["wall_s"]
    return {"rows": rows, "ratios": [round(w["local-2"] / w["workers-1"], 3) for w in walls.values()],
            "ratios_vs_default": [round(w["local-2"] / w["default"], 3) for w in walls.values() if "default" in w],
            "same_artifact": len({row["best_sha256"] for row in rows if row["mode"] != "default"}) == 1}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def render(doc: dict) -> str:
    lines = [f"# edgeopt prune-amount search scaling ({doc['search']})", "",
             f"{machine_line(doc['host'], {})}; load average before: {doc['load_before']}. Command: `{doc['command']}`",
             "", "| round | mode | wall s | candidates decided | candidates built | best | best/model.onnx sha256 |",
             "|---:|---|---:|---:|---:|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {r['round']} | {r['mode']} | {r['wall_s']:.2f} | {r['decided']} | {r['built']} | {r['best']} | "
                     f"{r['best_sha256'][:16]} |")
    per_round = ", ".join(f"{x:.3f}" for x in doc["ratios"])
    lines += ["", (f"local-2 / workers-1 wall, per round: {per_round}; median [min, max] {_spread(doc['ratios'])} "
              f"(goal <= {GOAL}).")]
    if doc["ratios_vs_default"]:
        vs_default = ", ".join(f"{x:.3f}" for x in doc["ratios_vs_default"])
        lines.append(f"local-2 / default (no executor, torch on all threads), per round: {vs_default}; median "
                     f"[min, max] {_spread(doc['ratios_vs_default'])}.")
    lines.append(f"Same chosen artifact on 1 and 2 workers in every round: {doc['same_artifact']}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipe", default="digits-cnn", help="a bundled zoo recipe")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    parser.add_argument("--iterations", type=int, default=7, help="bisection steps after the first: 8 candidates")
    parser.add_argument("--sweep", type=int, default=None, help="a sweep of N amounts instead of the bisection")
    args = parser.parse_args()
    strategy = ["--sweep", str(args.sweep)] if args.sweep else ["--iterations", str(args.iterations)]
    load_before = round(os.getloadavg()[0], 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="prune-scaling-") as tmp:
        recipe = Path(tmp) / f"{args.recipe}.toml"
        recipe.write_text((bundled_dir("models") / f"{args.recipe}.toml").read_text())
        # trains and exports once; every mode reuses that cache (not its candidates)
        search(recipe, Path(tmp) / "warm", MODES["workers-1"], ["--iterations", "1"])
        shutil.copytree(Path(tmp) / "warm" / "cache", Path(tmp) / "trained",
                        ignore=shutil.ignore_patterns("search-variants"))
        for r in range(args.rounds):
            for mode in args.modes.split(","):
                rows.append({"round": r, **one_round(mode, recipe, Path(tmp) / "trained", Path(tmp) / f"{mode}-{r}",
                                                     strategy)})
    doc = {"search": f"zoo recipe {args.recipe}, cpu-server, {' '.join(strategy)} --max-drop 0.01 "
                     "--objective bytes, 2 workers",
           "host": host_info(), "load_before": load_before, "command": " ".join(["python", *sys.argv]),
           **summarize(rows)}
    stem = "prune_search_scaling" + ("" if args.recipe == "digits-cnn" else f".{args.recipe}") + \
        (".sweep" if args.sweep else "")
    write_json_atomic(RESULTS / f"{stem}.json", doc)
    write_text_atomic(RESULTS / f"{stem}.md", render(doc))
    print(render(doc))


if __name__ == "__main__":
    main()
