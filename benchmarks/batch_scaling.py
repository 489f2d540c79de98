"""`edgeopt batch` on the default zoo batch: sequential vs the local process pool vs Ray.

Modes, interleaved round by round, each on a cold cache (a fresh --out):
  sequential  --executor local --workers 1 (everything in the driver)
  local       --executor local (a process pool, one worker per CPU)
  ray         --executor ray on a throwaway cluster: a head that only schedules and 2
              single-CPU worker nodes on this machine (toolchain/executor/ray_local.py)

Per run: wall time; the parallel part's wall (until the last non-benchmark task ended: the
benchmarks take a node each and run after it locally); the slot utilisation of the parallel part
(task seconds / (its wall x slots)); the machine's CPU busy fraction over the run (all
processes: on a shared machine it includes other users). Per executor: the scheduling overhead
of a task, measured on a chain of 0.2 s sleeps (each submitted when the previous ended, so no
queueing): result wall seen by the driver minus the task's own time.

    PYTHONPATH=$PWD python benchmarks/batch_scaling.py [--rounds 2] [--modes sequential,local,ray]
    PYTHONPATH=$PWD python benchmarks/batch_scaling.py --smoke   # 2 tiny recipes, short profiles: proves it runs
    PYTHONPATH=$PWD python benchmarks/batch_scaling.py --rounds 1 --append   # more rounds, same CPU class only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "batch"))

from batch_fixtures import subprocess_env, tiny_recipe

from toolchain.bench.results import machine_line
from toolchain.executor import Task, make_executor, run_graph
from toolchain.fsio import write_json_atomic, write_text_atomic
from toolchain.hostinfo import host_info
from toolchain.resources import bundled_dir

TARGETS = "cpu-server,arm-mobile"
RESULTS = ROOT / "benchmarks" / "results"


def _cpu_busy() -> tuple[float, float]:
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


def run_mode(mode: str, specs: list[Path], out: Path, targets_dir: Path | None, address: str | None) -> dict:
    extra = {
        "sequential": ["--workers", "1"],
        "local": [],
        "ray": ["--executor", "ray", "--ray-address", address or ""],
    }
    argv = [
        sys.executable,
        "-m",
        "toolchain.cli",
        "batch",
        *map(str, specs),
        "--targets",
        TARGETS,
        "--out",
        str(out),
        "--json",
        *extra[mode],
    ]
    if targets_dir is not None:
        argv += ["--targets-dir", str(targets_dir)]
    busy0, total0 = _cpu_busy()
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=subprocess_env(), check=False)
    wall = time.perf_counter() - started
    busy1, total1 = _cpu_busy()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{mode}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    doc = json.loads(proc.stdout)
    compute = [t for t in doc["tasks"] if not t["task"].startswith("run:")]
    parallel_wall = max(t["done_at"] for t in compute)
    slots = {"sequential": 1, "local": os.cpu_count() or 1, "ray": 2}[mode]
    return {
        "mode": mode,
        "wall_s": round(wall, 2),
        "parallel_part_s": round(parallel_wall, 2),
        "benchmark_part_s": round(doc["wall_seconds"] - parallel_wall, 2),
        "slot_utilisation": round(sum(t["seconds"] for t in compute) / (parallel_wall * slots), 3),
        "machine_cpu_busy": round((busy1 - busy0) / max(total1 - total0, 1e-9), 3),
        "tasks": len(doc["tasks"]),
        "task_seconds": {t["task"]: round(t["seconds"], 2) for t in doc["tasks"]},
        "retried": sum(t["attempts"] > 1 for t in doc["tasks"]),
    }


def task_overhead(executor_name: str, address: str | None, n: int = 10) -> dict:
    """Scheduling overhead per task: first one 0.5 s sleep per slot side by side (each starts a
    worker process: the worker start, reported apart), then a chain of 0.2 s sleeps, each
    submitted when the previous ended, so no queueing: the steady-state overhead."""
    executor = make_executor(executor_name, 2, address)
    try:
        starts = run_graph(executor, [Task(f"start{i}", time.sleep, (0.5,)) for i in range(2)])
        chain = [Task(f"t{i}", time.sleep, (0.2,), deps=(f"t{i - 1}",) if i else ()) for i in range(n)]
        outcomes = run_graph(executor, chain)
    finally:
        executor.close()
    overheads = sorted(o.wall - o.seconds for o in outcomes.values())
    return {
        "executor": executor_name,
        "tasks": n,
        "median_s": round(statistics.median(overheads), 4),
        "max_s": round(overheads[-1], 4),
        "worker_start_s": round(max(o.wall - o.seconds for o in starts.values()), 4),
        "start_hosts": sorted({str(o.host.get("node") or o.host["pid"]) for o in starts.values()}),
    }


def _specs(smoke: bool, folder: Path) -> tuple[list[Path], Path | None]:
    if not smoke:
        return sorted(bundled_dir("models").glob("*.toml")), None
    from conftest import _fast_profile

    targets = folder / "targets"
    targets.mkdir()
    for name in TARGETS.split(","):
        (targets / f"{name}.toml").write_text(_fast_profile(bundled_dir("targets") / f"{name}.toml"))
    return [tiny_recipe(n, folder) for n in ("tabular-mlp", "digits-cnn")], targets


def _spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def summarize(rows: list[dict], overhead: list[dict]) -> dict:
    by_mode = {m: [r for r in rows if r["mode"] == m] for m in dict.fromkeys(r["mode"] for r in rows)}
    seq = [r["parallel_part_s"] for r in by_mode.get("sequential", [])]
    ratios = {}
    for mode, runs in by_mode.items():
        if mode != "sequential" and seq:  # round by round: each round's modes ran side by side
            ratios[mode] = [r["parallel_part_s"] / s for r, s in zip(runs, seq, strict=False)]
    walls = {
        mode: [r["wall_s"] / q["wall_s"] for r, q in zip(runs, by_mode["sequential"], strict=False)]
        for mode, runs in by_mode.items()
        if mode != "sequential" and "sequential" in by_mode
    }
    return {"by_mode": by_mode, "parallel_vs_sequential": ratios, "wall_vs_sequential": walls, "overhead": overhead}


def render(doc: dict) -> str:
    s = doc["summary"]
    lines = [
        f"# edgeopt batch scaling ({doc['batch']})",
        "",
        f"{machine_line(doc['host'], {})}. Command: `{doc['command']}`",
        "",
        *([doc["note"], ""] if doc.get("note") else []),
        "| mode | wall s | parallel part s | benchmark part s | slot utilisation | machine CPU busy | retried |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, runs in s["by_mode"].items():
        lines.append(
            f"| {mode} | {_spread([r['wall_s'] for r in runs])} | {_spread([r['parallel_part_s'] for r in runs])} | "
            f"{_spread([r['benchmark_part_s'] for r in runs])} | {_spread([r['slot_utilisation'] for r in runs], 2)} | "
            f"{_spread([r['machine_cpu_busy'] for r in runs], 2)} | {sum(r['retried'] for r in runs)} |"
        )
    lines += [
        "",
        "Median [min, max] over rounds. Parallel part / sequential parallel part, per round (goal <= 0.65):",
        "",
    ]
    for mode, ratios in s["parallel_vs_sequential"].items():
        lines.append(f"- {mode}: " + ", ".join(f"{r:.3f}" for r in ratios))
    lines += ["", "Whole wall (benchmarks included) / sequential whole wall, per round:", ""]
    for mode, ratios in s.get("wall_vs_sequential", {}).items():
        lines.append(f"- {mode}: " + ", ".join(f"{r:.3f}" for r in ratios))
    lines += ["", "Per-task scheduling overhead (0.2 s sleeps in a chain; goal for Ray < 0.5 s):", ""]
    for o in s["overhead"]:
        lines.append(
            f"- {o['executor']}: median {o['median_s']:.3f} s, max {o['max_s']:.3f} s over {o['tasks']} tasks; "
            f"a worker's start (its first task, once per worker): {o['worker_start_s']:.3f} s"
        )
    return "\n".join(lines) + "\n"


def _stem(args) -> str:
    return "batch_scaling.smoke" if args.smoke else "batch_scaling"


def earlier_results(args) -> dict:
    """With --append, the committed results this run adds rounds to: refused unless they were
    measured on this CPU class (ratios are taken within a round, so rounds of two sessions on the
    same class of CPU can stand side by side; another CPU's cannot)."""
    if not args.append:
        return {"rows": [], "overhead": [], "commands": []}
    doc = json.loads((RESULTS / f"{_stem(args)}.json").read_text())
    if doc["host"] != host_info():
        raise SystemExit(f"--append: the results were measured on {doc['host']}, this is {host_info()}")
    return {"rows": doc["rows"], "overhead": doc["summary"]["overhead"], "commands": doc["command"].split(" ; ")}


def write_results(rows: list[dict], overhead: list[dict], specs: list[Path], args, earlier: dict) -> dict:
    """The results so far: written after every round, so a long run stopped early keeps its rounds."""
    batch = f"{len(specs)} recipes x {TARGETS}" + (" (smoke: tiny recipes, short profiles)" if args.smoke else "")
    rows = earlier["rows"] + rows
    rounds = len({r["round"] for r in rows})
    doc = {
        "batch": batch,
        "host": host_info(),
        "command": " ; ".join([*earlier["commands"], " ".join(["python", *sys.argv])]),
        "rows": rows,
        "summary": summarize(rows, earlier["overhead"] + overhead),
        "note": f"{rounds} round(s); 1-minute load average {os.getloadavg()[0]:.1f} when written.",
    }
    if earlier["rows"]:
        doc["note"] += (f" Rounds {len({r['round'] for r in earlier['rows']})} and on were appended by a later "
                        "session on the same CPU class (--append); overhead lines: one per session and executor.")
    if args.smoke:
        doc["note"] += " Smoke run: 2 tiny recipes, short benchmark profiles: not the goal's batch (the default zoo)."
    stem = _stem(args)
    write_json_atomic(RESULTS / f"{stem}.json", doc)
    write_text_atomic(RESULTS / f"{stem}.md", render(doc))
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="sequential,local,ray")
    parser.add_argument(
        "--smoke", action="store_true", help="2 tiny recipes, short profiles; writes *.smoke.{md,json}"
    )
    parser.add_argument("--append", action="store_true", help="add rounds to the committed results")
    args = parser.parse_args()
    earlier = earlier_results(args)
    first_round = 1 + max((r["round"] for r in earlier["rows"]), default=-1)
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="batch-scaling-") as tmp:
        folder = Path(tmp)
        specs, targets_dir = _specs(args.smoke, folder)
        cluster = None
        if "ray" in modes:
            from toolchain.executor.ray_local import LocalRayCluster

            cluster = LocalRayCluster(subprocess_env(), cpus_per_node=1, head_cpus=0).start(workers=2)
        try:
            overhead = [
                task_overhead(m, cluster and cluster.address if m == "ray" else None)
                for m in ("local", "ray")
                if m in modes
            ]
            rows = []
            for r in range(first_round, first_round + args.rounds):
                for mode in modes:
                    row = run_mode(mode, specs, folder / f"{mode}-{r}", targets_dir, cluster and cluster.address)
                    rows.append({**row, "round": r})
                doc = write_results(rows, overhead, specs, args, earlier)
        finally:
            if cluster is not None:
                cluster.stop()
    print(render(doc))


if __name__ == "__main__":
    main()
