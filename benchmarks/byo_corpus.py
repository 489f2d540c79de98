"""`edgeopt compress` on models nobody here trained: outcome, fidelity, size, speed and tool cost.

The corpus is the one the tests build (tests/compress/corpus): PyTorch re-creations of shipped model
families (YOLO-style detector, CRNN, GRU/LSTM with state, transformer encoder, segmentation net;
dynamic-axes and fixed-shape exports, one with external data) and the graphs shipped inside the
`onnx` package (light CNNs, pytorch-converted, pytorch-operator). Each case runs through
`edgeopt compress --data random` for each target in a fresh process; the row records the exit
code, min SQNR vs fp32 (report.json), bytes ratio, speedup over ORT fp32 at 1 thread (the
thread sweep's, else the profile's thread count, named), wall time beyond benchmarking and the
peak RSS of the whole process tree.

    PYTHONPATH=$PWD python benchmarks/byo_corpus.py --out /tmp/byo [--only torch|onnx] [--jobs 2] [--fast]

`--fast` benchmarks with the tests' short profiles (outcome and fidelity only: their timings are
not a speed claim); `--jobs` > 1 runs cases side by side (again: no speed claims then).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "compress"))
sys.path.insert(0, str(ROOT))

from corpus import build

TARGETS = ("cpu-server", "arm-mobile")
MIN_SQNR_DB = 20.0
_STAGE_DONE = re.compile(r"edgeopt: (benchmark\[[^\]]+\]): done in ([0-9.]+) s")


def torch_cases(folder: Path) -> list[build.Case]:
    specs, cases = build.torch_specs(), []
    for name, spec in specs.items():
        for fixed in (False, True):
            path = build.export_torch(name + ("_fixed" if fixed else ""), spec, folder, dynamic=not fixed)
            args = build.fixed_args(spec) if fixed else spec.args
            cases.append(build.Case(path.stem, path, args))
    ext = build.export_torch("segnet_external", specs["segnet"], folder / "segnet_external", dynamic=True, external=True)
    cases.append(build.Case("segnet_external", ext, specs["segnet"].args))
    return cases


def _peak_tree_rss(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    """Wait for `proc` (killed after `timeout` s), sampling the RSS of it and its children;
    (peak bytes, stdout, stderr)."""
    import psutil

    peak, parent, deadline = 0, psutil.Process(proc.pid), time.perf_counter() + timeout
    while proc.poll() is None:
        if time.perf_counter() > deadline:
            for child in parent.children(recursive=True):
                child.kill()
            proc.kill()
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    return peak, out, err


def run_case(case: build.Case, target: str, out: Path, targets_dir: Path | None, timeout: float) -> dict:
    run_dir = out / "runs" / target / case.name.replace("/", "-")
    cmd = [sys.executable, "-m", "toolchain.cli", "compress", str(case.path), "--target", target, "--data", "random",
           *case.args, "--out", str(run_dir), "--name", re.sub(r"[^A-Za-z0-9._-]", "-", case.name), "--json"]
    if targets_dir is not None:
        cmd += ["--targets-dir", str(targets_dir)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak, _, err = _peak_tree_rss(proc, timeout)
    wall = time.perf_counter() - start
    bench_s = sum(float(s) for _, s in _STAGE_DONE.findall(err))
    row = {"case": case.name, "target": target, "exit": proc.returncode, "wall_s": round(wall, 1),
           "beyond_benchmark_s": round(wall - bench_s, 1), "peak_rss_mb": round(peak / 2**20, 1),
           "traceback": "Traceback (most recent call last)" in err or proc.returncode == 3,
           "inputs": _inputs(case.path), "ops": _op_count(case.path)}
    errors = [ln for ln in err.splitlines() if ln.startswith("edgeopt: error:") or "internal error" in ln]
    if errors:
        row["message"] = errors[-1][:240]
    row.update(_from_report(run_dir / "report.json", target))
    return row


def _inputs(path: Path) -> str:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    parts = []
    for i in g.input:
        if i.name in inits:
            continue
        t = i.type.tensor_type
        dims = ",".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim)
        parts.append(f"{i.name}:{onnx.TensorProto.DataType.Name(t.elem_type).lower()}[{dims}]")
    return " ".join(parts)


def _op_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def _from_report(report: Path, target: str) -> dict:
    if not report.is_file():
        return {}
    t = json.loads(report.read_text()).get("targets", {}).get(target, {})
    sweep = t.get("thread_sweep") or {}
    one = (sweep.get("speedup_vs_fp32") or {}).get("1", {})
    batch = str(t.get("batch", 1))
    speedup, threads = (one[batch], 1) if batch in one else (t.get("speedup_vs_fp32"), sweep.get("profile_threads"))
    return {"min_sqnr_db": t.get("min_sqnr_db"), "size_ratio": t.get("size_ratio"), "speedup": speedup,
            "speedup_threads": threads, "shipped": t.get("shipped"), "compression_pays": t.get("compression_pays"),
            "failed_budgets": sorted(k for k, v in t.get("budgets", {}).items() if not v.get("pass"))}


def fast_targets(folder: Path) -> Path:
    from toolchain.config.base import to_toml
    from toolchain.resources import bundled_dir

    folder.mkdir(parents=True, exist_ok=True)
    for name in TARGETS:
        data = tomllib.loads((bundled_dir("targets") / f"{name}.toml").read_text())
        data["benchmark"].update(warmup_runs=2, runs=20, rounds=2, max_seconds=2.0)
        (folder / f"{name}.toml").write_text(to_toml(data))
    return folder


def _outcome(r: dict) -> str:
    if r["traceback"]:
        return "traceback"
    if r["exit"] == 2:
        return "refused"
    if r["exit"] in (0, 1):
        sqnr = r.get("min_sqnr_db")
        return "compressed" if sqnr is not None and sqnr >= MIN_SQNR_DB else "low fidelity"
    return f"exit {r['exit']}"


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def summarize(rows: list[dict], results: Path) -> None:
    """benchmarks/results/byo_corpus.{json,md}: the table, the tallies and the goals."""
    from toolchain.bench.results import machine_line, publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    tally: dict[str, dict[str, int]] = {}
    for r in rows:
        tally.setdefault(r["target"], {}).setdefault(_outcome(r), 0)
        tally[r["target"]][_outcome(r)] += 1
    lines = ["# `edgeopt compress` on models nobody here trained (the tests' corpus)", "",
             machine_line(host_info(), library_versions()), "",
             ("Rerun: `PYTHONPATH=$PWD python benchmarks/byo_corpus.py --out /tmp/byo --only torch` (full profiles, "
             "one case at a time) and `... --only onnx --fast --jobs 2` (short profiles: outcome and fidelity only), "
             "then `python benchmarks/byo_corpus.py --summarize /tmp/byo*/rows.jsonl`."), "",
             ("Outcome: *compressed* = exit 0/1 with min SQNR >= 20 dB over every output and slice (exit 1 = a budget "
             "failed, usually size on tiny graphs); *refused* = exit 2 with one line; *traceback* = any traceback or "
             "exit 3. Speedups of arm-mobile `.ort` files are timed on this x86 host: not a device number."), "",
             "| target | " + " | ".join(sorted({o for t in tally.values() for o in t})) + " | total |", ""]
    outcomes = sorted({o for t in tally.values() for o in t})
    lines[-1] = "|---|" + "---|" * (len(outcomes) + 1)
    for target, counts in sorted(tally.items()):
        lines.append(f"| {target} | " + " | ".join(str(counts.get(o, 0)) for o in outcomes) + f" | {sum(counts.values())} |")
    lines += ["", ("| case | target | inputs | ops | outcome | min SQNR dB | bytes ratio | speedup (threads) | shipped | "
              "failed budgets | beyond bench s | peak RSS MB | note |"), "|---|" * 13 + ""]
    lines[-1] = "|" + "---|" * 13
    for r in rows:
        speed = f"{r['speedup']:.2f}x ({r.get('speedup_threads') or 'profile'} t)" if r.get("speedup") else ""
        lines.append(f"| {r['case']} | {r['target']} | {r.get('inputs', '')} | {r.get('ops', '')} | {_outcome(r)} | "
                     f"{_fmt(r.get('min_sqnr_db'), '.1f')} | {_fmt(r.get('size_ratio'), '.3f')} | {speed} | "
                     f"{r.get('shipped') or ''} | {', '.join(r.get('failed_budgets') or [])} | {r['beyond_benchmark_s']} | "
                     f"{r['peak_rss_mb']} | {(r.get('message') or '').replace('|', '/')[:120]} |")
    publish(results, "byo_corpus", {"rows": rows, "tally": tally, "host": host_info()}, "\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--summarize", type=Path, nargs="+", default=None, help="rows.jsonl files -> results/byo_corpus.md")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", choices=["torch", "onnx", "extra"], default=None)
    ap.add_argument("--extra", type=Path, nargs="*", default=[], help="more .onnx files (e.g. a 10 MB model for tool cost)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--jsonl", type=Path, default=None, help="append rows here (default OUT/rows.jsonl)")
    args = ap.parse_args()
    if args.summarize:
        rows = [json.loads(line) for f in args.summarize for line in f.read_text().splitlines() if line.strip()]
        summarize(rows, Path(__file__).resolve().parent / "results")
        return 0
    if args.out is None:
        ap.error("--out is required to run the corpus")
    args.out.mkdir(parents=True, exist_ok=True)
    cases = []
    if args.only in (None, "torch"):
        cases += torch_cases(args.out / "models")
    if args.only in (None, "onnx"):
        cases += build.onnx_cases()
    cases += [build.Case(f"extra/{p.stem}", p.resolve()) for p in args.extra]
    targets_dir = fast_targets(args.out / "fast-targets") if args.fast else None
    jsonl = args.jsonl or args.out / "rows.jsonl"
    work = [(c, t) for c in cases for t in TARGETS]
    with jsonl.open("a") as log, ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(lambda ct: run_case(ct[0], ct[1], args.out, targets_dir, args.timeout), work):
            row["fast_profiles"] = args.fast
            log.write(json.dumps(row) + "\n")
            log.flush()
            print(f"{row['case']:<50} {row['target']:<11} exit {row['exit']} sqnr {row.get('min_sqnr_db')} "
                  f"{row['wall_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
