"""edgeopt's artifacts against what a user would try first, side by side in one run.

For each zoo recipe (models/*.toml): PyTorch eager fp32, ORT fp32 (the plain export), ORT
`quantize_dynamic` with defaults, ORT `quantize_static` with defaults (QDQ, per-tensor), and
edgeopt's artifact per target. Latency at batch 1 with 1 and 2 threads in interleaved rounds
(candidates alternate within every round so machine drift hits all), bytes, peak memory and
held-out accuracy; ratios are against ORT fp32 measured in the same rounds.

The arm-mobile `.ort` is timed on this x86 host only to show it runs; its latency says nothing
about a phone (it is converted for ARM).

Usage: python benchmarks/compare_baselines.py [--models NAME ...] [--rounds N] [--out DIR]
Writes results/compare_baselines.{json,md}. Trains each zoo model once (cached under --out).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _quantize_defaults(fp32: Path, calib: np.ndarray, input_name: str, workdir: Path) -> dict[str, Path]:
    """Exactly what the ONNX Runtime docs show first: defaults, no pre-processing."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_dynamic, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    dyn, sta = workdir / "dynamic.onnx", workdir / "static.onnx"
    with contextlib.redirect_stdout(sys.stderr):
        quantize_dynamic(str(fp32), str(dyn))
        quantize_static(str(fp32), str(sta), Reader())
    return {"ort-dynamic-default": dyn, "ort-static-default": sta}


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from toolchain.bench.session import predict

    return float((predict(_session(path, 2), x).argmax(1) == y).mean())


def measure_model(recipe_path: Path, out: Path, rounds: int, runs: int) -> dict:
    import torch

    from toolchain import steps
    from toolchain.bench.latency import interleaved
    from toolchain.bench.memory import peak_memory_mb
    from toolchain.config.recipe import load_recipe
    from toolchain.config.target import RuntimeOptions
    from toolchain.pipeline import RunOptions, run_pipeline

    recipe = load_recipe(recipe_path)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(recipe, RunOptions(out_dir=out / recipe.name))
    data = steps.dataset(recipe)
    fp32 = Path(result.baseline["fp32_onnx"])
    sess0 = _session(fp32, 1)
    input_name = sess0.get_inputs()[0].name
    work = Path(tempfile.mkdtemp(prefix="baselines-"))
    calib = data.x_train[np.random.default_rng(0).choice(len(data.x_train), 128, replace=False)]
    files = {"ort-fp32": fp32, **_quantize_defaults(fp32, calib, input_name, work)}
    for name, t in result.targets.items():
        files[f"edgeopt-{name}"] = t.artifact

    # Rebuild the trained eager model from the run's cache (same weights as the fp32 export).
    from toolchain.cache import StageCache

    trained = steps.train(StageCache(out / recipe.name / "cache"), recipe, data)
    model = steps.load_model(recipe, trained).eval()
    x1 = np.ascontiguousarray(data.x_test[:1])
    t1 = torch.as_tensor(x1)

    rows: dict[str, dict] = {n: {"bytes": p.stat().st_size, "file": p.name} for n, p in files.items()}
    rows["torch-eager"] = {"bytes": None}
    for n, p in files.items():
        rows[n]["accuracy"] = _accuracy(p, data.x_test, data.y_test)
        rows[n].update({k: v for k, v in peak_memory_mb(p, RuntimeOptions(intra_op_threads=1)).items()})
    with torch.no_grad():
        rows["torch-eager"]["accuracy"] = float((model(torch.as_tensor(data.x_test)).argmax(1).numpy() == data.y_test).mean())

    for threads in (1, 2):
        sessions = {n: _session(p, threads) for n, p in files.items()}
        fns = {n: (lambda s=s: s.run(None, {input_name: x1})) for n, s in sessions.items()}

        def eager():
            with torch.no_grad():
                model(t1)

        fns["torch-eager"] = eager
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            stats = interleaved(fns, warmup=10, runs=runs, rounds=rounds, max_seconds=60)
        finally:
            torch.set_num_threads(previous)
        for n, st in stats.items():
            rows[n][f"p50_ms_{threads}t"] = st.p50
            rows[n][f"p90_ms_{threads}t"] = st.p90
        base = stats["ort-fp32"].p50
        for n, st in stats.items():
            rows[n][f"speedup_vs_ort_fp32_{threads}t"] = base / st.p50
    fp32_bytes = rows["ort-fp32"]["bytes"]
    for n, r in rows.items():
        if r["bytes"]:
            r["size_ratio"] = r["bytes"] / fp32_bytes
        r["accuracy_drop_pt"] = 100 * (rows["ort-fp32"]["accuracy"] - r["accuracy"])
        if "peak_memory_mb" in r:
            r["memory_ratio"] = r["peak_memory_mb"] / max(rows["ort-fp32"]["peak_memory_mb"], 1e-9)
    return {"recipe": recipe.name, "model": recipe.model.name, "input_shape": list(data.input_shape), "rows": rows}


def render_markdown(doc: dict) -> str:
    h = doc["host"]
    lines = [
        "# edgeopt vs what users try first",
        "",
        f"Machine: {h['cpu']} ({h['cores']} cores, {', '.join(h['isa'])}); "
        + ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if k in ("onnxruntime", "torch", "onnx", "edgeopt")),
        f"Measured {doc['date']}; batch 1, interleaved rounds; ratios vs ORT fp32 in the same rounds. "
        "Rerun: `python benchmarks/compare_baselines.py`.",
        "",
        "The arm-mobile `.ort` is converted for ARM and timed here only to show it runs; "
        "its x86 latency says nothing about a phone.",
    ]
    for m in doc["models"]:
        lines += ["", f"## {m['recipe']} (`{m['model']}`, input {m['input_shape']})", "",
                  "| candidate | bytes | size | p50 1t ms | speedup 1t | p50 2t ms | speedup 2t | peak MB | accuracy | drop pt |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for n, r in m["rows"].items():
            size = f"{r['size_ratio']:.3f}x" if "size_ratio" in r else "-"
            mem = f"{r['peak_memory_mb']:.1f}" if "peak_memory_mb" in r else "-"
            lines.append(
                f"| {n} | {r['bytes'] or '-'} | {size} | {r['p50_ms_1t']:.4f} | {r['speedup_vs_ort_fp32_1t']:.2f}x | "
                f"{r['p50_ms_2t']:.4f} | {r['speedup_vs_ort_fp32_2t']:.2f}x | {mem} | {100 * r['accuracy']:.2f}% | "
                f"{r['accuracy_drop_pt']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from toolchain.cache import library_versions
    from toolchain.fsio import write_json_atomic, write_text_atomic
    from toolchain.hostinfo import host_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", help="recipe names (file stems in models/); default all")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    recipes = sorted((ROOT / "models").glob("*.toml"))
    if args.models:
        recipes = [r for r in recipes if r.stem in args.models]
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"), "models": []}
    for r in recipes:
        print(f"[compare] {r.stem}", file=sys.stderr)
        doc["models"].append(measure_model(r, args.out, args.rounds, args.runs))
    write_json_atomic(args.results / "compare_baselines.json", doc)
    write_text_atomic(args.results / "compare_baselines.md", render_markdown(doc))
    print(render_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
