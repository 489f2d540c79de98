"""edgeopt's artifacts against what a user would try first, side by side in one run.

For each zoo recipe (models/*.toml): PyTorch eager fp32, ORT fp32 (the plain export), ORT
`quantize_dynamic` with defaults, ORT `quantize_static` with defaults (QDQ, per-tensor), and
edgeopt's artifact per target. Latency at batch 1 with 1 and 2 threads in interleaved rounds
(candidates alternate within every round so machine drift hits all), bytes, peak memory and
held-out accuracy; ratios are against ORT fp32 measured in the same rounds.

For MobileNetV2-style recipes the same trained weights are also exported at 224x224 and every
ONNX candidate is rebuilt and measured there (agreement and SQNR vs fp32 instead of accuracy).

The arm-mobile `.ort` is timed on this x86 host only to show it runs; its latency says nothing
about a phone (it is converted for ARM).

Usage: python benchmarks/compare_baselines.py [--models NAME ...] [--rounds N] [--out DIR]
Writes results/compare_baselines.{json,md}. Trains each zoo model once (cached under --out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
    """ORT default session options at `threads` intra-op threads (the searches' loader)."""
    from toolchain.search.measure import session

    return session(path, threads)


def _memory_runtime(candidate: str):
    """Baselines run with ORT's default session options; edgeopt artifacts with their profile's
    [runtime] (candidate names are 'edgeopt-<target>[<suffix>]', see SUFFIXES); one thread for all."""
    from toolchain.config.target import RuntimeOptions, load_target

    target = None
    if candidate.startswith("edgeopt-"):
        target = candidate.removeprefix("edgeopt-")
        for suffix in SUFFIXES.values():
            target = target.removesuffix(suffix)
    runtime = load_target(target).runtime if target else RuntimeOptions()
    return runtime.model_copy(update={"intra_op_threads": 1})


# run candidate label -> row name suffix; the quantized artifact is 'edgeopt-<target>' itself
SUFFIXES = {"pruned_fp32": "-pruned-fp32", "int8_weights": "-int8-weights"}


def _add_ratios(rows: dict[str, dict]) -> None:
    """Size and memory ratios of every row against the ORT fp32 row."""
    base = rows["ort-fp32"]
    for r in rows.values():
        if r["bytes"]:
            r["size_ratio"] = r["bytes"] / base["bytes"]
        if "peak_memory_mb" in r:
            r["memory_ratio"] = r["peak_memory_mb"] / max(base["peak_memory_mb"], 1e-9)
        if "model_memory_mb" in r:
            r["model_memory_ratio"] = r["model_memory_mb"] / max(base["model_memory_mb"], 1e-9)


def _fp32_compute_artifacts(model_onnx: Path, targets, work: Path, pruned: bool) -> dict[str, Path]:
    """The run's fp32-compute candidates rebuilt from `model_onnx` for each .onnx target: the
    pruned network converted like its int8 (when `pruned`), and the same with int8-stored weights
    (for profiles that weigh that candidate)."""
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import convert_config
    from toolchain.pipeline.ship import int8_weights_apply
    from toolchain.stages.convert import convert
    from toolchain.stages.int8_weights import Int8WeightsConfig, int8_weights

    files = {}
    for name in targets:
        profile = load_target(name)
        if profile.artifact.format != "onnx":  # the .ort is for ARM: its x86 latency would say nothing
            continue
        fdir = work / name
        fdir.mkdir(parents=True, exist_ok=True)
        convert(model_onnx, convert_config(profile), fdir, {})
        if pruned:
            files[f"edgeopt-{name}{SUFFIXES['pruned_fp32']}"] = fdir / "model.onnx"
        if int8_weights_apply(profile):
            int8_weights(fdir / "model.onnx", Int8WeightsConfig(), fdir / "int8_weights.onnx")
            files[f"edgeopt-{name}{SUFFIXES['int8_weights']}"] = fdir / "int8_weights.onnx"
    return files


def _time_rows(rows: dict, files: dict[str, Path], input_name: str, x1: np.ndarray, model, t1, rounds: int,
               runs: int, repeats: int) -> None:
    """p50/p90 at 1 and 2 threads for every file, interleaved; speedups vs ORT fp32.

    The interleaved timing is repeated `repeats` times, one block after another: this machine
    drifts for minutes at a time (ORT fp32 of the 64 px MobileNet took 0.38 ms in one minute and
    0.57 ms in the next, 2026-11-27, and the int8 ratio read 1.37x then 1.56x). Each row keeps the
    median over the blocks and the min-max range of its per-block ratio.

    torch eager is timed in its own interleaved rounds against ORT fp32, not among the ORT
    candidates: with its ~5 ms calls between theirs, the pruned MobileNet's ratio read 5.1-5.8x
    instead of 3.6-4.2x (four alternating runs, 2026-11-27), so it would distort every other row."""
    import statistics

    import torch

    from toolchain.bench.latency import interleaved

    def eager():
        with torch.no_grad():
            model(t1)

    for threads in (1, 2):
        sessions = {n: _session(p, threads) for n, p in files.items()}
        fns = {n: (lambda s=s: s.run(None, {input_name: x1})) for n, s in sessions.items()}
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        blocks: dict[str, list[tuple[float, float, float]]] = {n: [] for n in [*files, "torch-eager"]}  # p50, p90, ratio
        try:
            for _ in range(repeats):
                stats = interleaved(fns, warmup=10, runs=runs, rounds=rounds, max_seconds=60)
                pair = interleaved({"ort-fp32": fns["ort-fp32"], "torch-eager": eager},
                                   warmup=10, runs=runs, rounds=rounds, max_seconds=60)
                base = stats["ort-fp32"].p50
                for n, st in stats.items():
                    blocks[n].append((st.p50, st.p90, base / st.p50))
                eager_st = pair["torch-eager"]
                blocks["torch-eager"].append((eager_st.p50, eager_st.p90, pair["ort-fp32"].p50 / eager_st.p50))
        finally:
            torch.set_num_threads(previous)
        for n, measured in blocks.items():
            p50s, p90s, ratios = zip(*measured)
            rows[n][f"p50_ms_{threads}t"] = statistics.median(p50s)
            rows[n][f"p90_ms_{threads}t"] = statistics.median(p90s)
            rows[n][f"speedup_vs_ort_fp32_{threads}t"] = statistics.median(ratios)
            rows[n][f"speedup_vs_ort_fp32_{threads}t_range"] = [min(ratios), max(ratios)]


def measure_model(recipe_path: Path, out: Path, rounds: int, runs: int, repeats: int) -> dict:
    import torch

    from toolchain.bench.memory import memory_breakdown
    from toolchain.config.recipe import load_recipe
    from toolchain.pipeline import steps
    from toolchain.pipeline.cache import StageCache
    from toolchain.pipeline.run import RunOptions, run_pipeline
    from toolchain.search.measure import onnx_accuracy

    recipe = load_recipe(recipe_path)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(recipe, RunOptions(out_dir=out / recipe.name))
    data = steps.dataset(recipe)
    fp32 = Path(result.baseline["fp32_onnx"])
    input_name = _session(fp32, 1).get_inputs()[0].name
    work = Path(tempfile.mkdtemp(prefix="baselines-"))
    calib = data.x_train[np.random.default_rng(0).choice(len(data.x_train), 128, replace=False)]
    files = {"ort-fp32": fp32, **_quantize_defaults(fp32, calib, input_name, work)}
    for name, t in result.targets.items():  # every compressed candidate the run weighed, whichever it shipped
        files[f"edgeopt-{name}"] = t.candidates["int8"]
        for label, suffix in SUFFIXES.items():
            if label in t.candidates and t.candidates[label].suffix == ".onnx":  # .ort: ARM only
                files[f"edgeopt-{name}{suffix}"] = t.candidates[label]

    # The trained (and pruned) models come from the run's cache: the same weights as its exports.
    cache = StageCache(out / recipe.name / "cache")
    trained = steps.train(cache, recipe, data)
    model = steps.load_model(recipe, trained).eval()
    pruned = steps.prune(cache, recipe, data, trained)
    x1 = np.ascontiguousarray(data.x_test[:1])

    rows: dict[str, dict] = {n: {"bytes": p.stat().st_size, "file": p.name} for n, p in files.items()}
    rows["torch-eager"] = {"bytes": None}
    for n, p in files.items():
        rows[n]["accuracy"] = onnx_accuracy(p, data.x_test, data.y_test)
        rows[n].update(memory_breakdown(p, _memory_runtime(n)))
    with torch.no_grad():
        rows["torch-eager"]["accuracy"] = float((model(torch.as_tensor(data.x_test)).argmax(1).numpy() == data.y_test).mean())

    _time_rows(rows, files, input_name, x1, model, torch.as_tensor(x1), rounds, runs, repeats)
    _add_ratios(rows)
    for r in rows.values():
        r["accuracy_drop_pt"] = 100 * (rows["ort-fp32"]["accuracy"] - r["accuracy"])
    doc = {"recipe": recipe.name, "model": recipe.model.name, "input_shape": list(data.input_shape), "rows": rows,
           "shipped": {name: {"candidate": t.metrics["shipped"], "rule": t.metrics["selection"]["rule"]}
                       for name, t in result.targets.items()}}
    if recipe.model.name in HIGH_RES_MODELS:
        compressed = None if pruned.record["sha256"] == trained.record["sha256"] else steps.load_model(recipe, pruned).eval()
        doc["high_res"] = measure_high_res(recipe, model, compressed, out, rounds, max(runs // 4, 40), repeats)
    return doc


# The headline numbers are MobileNetV2 at 224x224. The zoo trains it at 64 px to stay within
# minutes on 2 cores; the network is fully convolutional with global pooling, so the same trained
# weights run at 224 px. There, accuracy is not the point (the model never saw 224 px shapes):
# agreement with fp32 and SQNR are, with latency and memory at a realistic resolution.
HIGH_RES_MODELS = ("mobilenet_v2",)
HIGH_RES = 224


def _sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    noise = float(((ref - out) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10(float((ref ** 2).sum()) / noise))


def edgeopt_int8(fp32: Path, calib_x: np.ndarray, recipe, profile, tdir: Path) -> Path:
    """`fp32` quantized and converted the way `edgeopt run` builds `profile`'s artifact (the
    profile's scheme, the recipe's overrides), outside the run's cache: for exports the run never makes."""
    from toolchain.pipeline.build_target import convert_config, quantize_config
    from toolchain.stages.convert import convert
    from toolchain.stages.quantize import quantize

    tdir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        quantize(fp32, calib_x, quantize_config(profile, recipe.quantize, recipe.train.seed), tdir / "int8.onnx", {})
    convert(tdir / "int8.onnx", convert_config(profile), tdir, {})
    return tdir / "model.onnx"


def measure_high_res(recipe, base_model, pruned_model, out: Path, rounds: int, runs: int, repeats: int) -> dict:
    """The recipe's trained (and pruned, when `pruned_model` is given) weights exported at 224 px;
    each artifact built the way the 64 px run builds it (same stages, the target profile's
    scheme), calibrated on 224 px data."""
    import torch

    from toolchain.bench.memory import memory_breakdown
    from toolchain.config.target import load_target
    from toolchain.pipeline import steps
    from toolchain.search.measure import export_onnx

    kwargs = {**recipe.data.kwargs, "size": HIGH_RES, "samples": 400}
    hi = steps.dataset(recipe.model_copy(update={"data": recipe.data.model_copy(update={"kwargs": kwargs})}))
    work = out / recipe.name / f"at{HIGH_RES}"
    fp32 = export_onnx(base_model, hi.x_test[:1], work / "fp32.onnx")
    input_name = _session(fp32, 1).get_inputs()[0].name
    calib = hi.x_train[np.random.default_rng(0).choice(len(hi.x_train), 128, replace=False)]
    files = {"ort-fp32": fp32, **_quantize_defaults(fp32, calib, input_name, work)}
    compressed = fp32 if pruned_model is None else export_onnx(pruned_model, hi.x_test[:1], work / "pruned.fp32.onnx")
    for target in recipe.targets:
        profile = load_target(target)
        if profile.artifact.format != "onnx":
            continue  # the .ort is for ARM: its x86 latency would say nothing
        files[f"edgeopt-{target}"] = edgeopt_int8(compressed, hi.x_train, recipe, profile, work / target)
    # structured-pruned but not quantized (does int8 still pay at this width?), and int8-stored weights;
    # a magnitude-pruned network is the same graph as fp32, so the run weighs no pruned-fp32 candidate
    structured = recipe.prune.kind == "structured"
    files.update(_fp32_compute_artifacts(compressed, recipe.targets, work / "fp32-compute", structured))

    x_eval = hi.x_test[:200]
    refs = {"ort-fp32": _session(fp32, 2).run(None, {input_name: x_eval})[0]}
    if compressed is not fp32:  # a pruned artifact is a different model: its int8 error is measured vs its own fp32
        refs["pruned-fp32"] = _session(compressed, 2).run(None, {input_name: x_eval})[0]
    rows: dict[str, dict] = {n: {"bytes": p.stat().st_size, "file": p.name} for n, p in files.items()}
    rows["torch-eager"] = {"bytes": None}
    for n, p in files.items():
        logits = _session(p, 2).run(None, {input_name: x_eval})[0]
        ref_name = "pruned-fp32" if n.startswith("edgeopt-") and "pruned-fp32" in refs else "ort-fp32"
        ref = refs[ref_name]
        rows[n].update(reference=ref_name, sqnr_db=_sqnr_db(ref, logits),
                       top1_agreement=float((logits.argmax(1) == ref.argmax(1)).mean()),
                       accuracy=float((logits.argmax(1) == hi.y_test[:200]).mean()))
        runtime = _memory_runtime(n)
        rows[n].update(memory_breakdown(p, runtime))
        rows[n]["session_options"] = {"enable_cpu_mem_arena": runtime.enable_cpu_mem_arena,
                                      "enable_mem_pattern": runtime.enable_mem_pattern}
    x1 = np.ascontiguousarray(hi.x_test[:1])
    _time_rows(rows, files, input_name, x1, base_model, torch.as_tensor(x1), rounds, runs, repeats)
    _add_ratios(rows)
    return {"input_shape": list(hi.input_shape), "rows": rows}


def _mem(r: dict) -> str:
    if "peak_memory_mb" not in r:
        return "-"
    text = f"{r['peak_memory_mb']:.1f} ({r['memory_ratio']:.2f}x)"
    if "model_memory_mb" in r:
        text += f" / {r['model_memory_mb']:.1f} ({r['model_memory_ratio']:.2f}x)"
    return text


def _ordered(rows: dict[str, dict]) -> list[tuple[str, dict]]:
    """Baselines first, then edgeopt's artifacts, then torch eager: the same order after a JSON round trip."""
    rank = {"ort-fp32": 0, "ort-dynamic-default": 1, "ort-static-default": 2, "torch-eager": 9}
    return sorted(rows.items(), key=lambda kv: (rank.get(kv[0], 5), kv[0]))


def _speedup(r: dict, threads: int) -> str:
    """'1.23x', with the min-max over timing blocks when there were several: '1.23x (1.10-1.40)'."""
    text = f"{r[f'speedup_vs_ort_fp32_{threads}t']:.2f}x"
    lo, hi = r.get(f"speedup_vs_ort_fp32_{threads}t_range", (None, None))
    return text if lo is None or lo == hi else f"{text} ({lo:.2f}-{hi:.2f})"


SHIPPED_NAMES = {"int8": "the int8 artifact", "pruned_fp32": "the pruned fp32 model",
                 "int8_weights": "the fp32-compute model with int8-stored weights (row `-int8-weights`)"}


def render_markdown(doc: dict) -> str:
    from toolchain.bench.results import machine_line

    lines = [
        "# edgeopt vs what users try first",
        "",
        machine_line(doc["host"], doc["versions"], only=("onnxruntime", "torch", "onnx", "edgeopt")),
        (f"Measured {doc['date']}; batch 1, interleaved rounds; ratios vs ORT fp32 in the same rounds. "
        f"Timing repeated in {doc.get('repeats', 1)} blocks one after another: p50s and speedups are medians over "
        "the blocks, the speedup's min-max over blocks in brackets (the machine drifts for minutes at a time). "
        "Rerun: `python benchmarks/compare_baselines.py`."),
        "",
        ("The arm-mobile `.ort` is converted for ARM and timed here only to show it runs; "
        "its x86 latency says nothing about a phone."),
        "",
        ("Peak memory: MB above an idle Python+onnxruntime process (ratio vs ORT fp32); after the slash, the same "
        "minus the floor of an ORT session on a one-node model (what the model itself adds). Baselines run with "
        "ORT's default session options, edgeopt artifacts with their target profile's `[runtime]`."),
        "",
        ("The goals are at 1 thread. Read the 2-thread columns with care on this 2-core shared machine: several "
        "live 2-thread sessions contend (ORT's pool threads spin after each run), and the int8 2t figures swing "
        "most; timed alone (2026-11-26, MobileNetV2 224 px) int8 ran 1.6-2.0 ms at 2 threads vs 1.9-2.2 ms at 1."),
        "",
        ("torch eager is timed in rounds of its own paired with ORT fp32 (its ratio is against that fp32): interleaved "
         "with the ORT candidates, its multi-ms calls moved the structured MobileNet's pruned-fp32 ratio from 3.6-4.2x "
         "to 5.1-5.8x (four alternating runs, 2026-11-27)."),
    ]
    for m in doc["models"]:
        when = f" — measured {m['measured']}" if m.get("measured") else ""
        lines += ["", f"## {m['recipe']} (`{m['model']}`, input {m['input_shape']}){when}", "",
                  "| candidate | bytes | size | p50 1t ms | speedup 1t | p50 2t ms | speedup 2t | peak MB / model MB | accuracy | drop pt |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for n, r in _ordered(m["rows"]):
            size = f"{r['size_ratio']:.3f}x" if "size_ratio" in r else "-"
            lines.append(
                f"| {n} | {r['bytes'] or '-'} | {size} | {r['p50_ms_1t']:.4f} | {_speedup(r, 1)} | "
                f"{r['p50_ms_2t']:.4f} | {_speedup(r, 2)} | {_mem(r)} | {100 * r['accuracy']:.2f}% | "
                f"{r['accuracy_drop_pt']:.2f} |")
        shipped = [f"{t} ships {SHIPPED_NAMES.get(s['candidate'], s['candidate'])} "
                   f"(`ship = \"{s['rule']}\"`)" for t, s in m.get("shipped", {}).items()]
        if shipped:
            lines += ["", "`edgeopt run`: " + "; ".join(shipped) + "."]
        if "high_res" in m:
            hr = m["high_res"]
            lines += ["", (f"### {m['recipe']} at {hr['input_shape'][-1]}x{hr['input_shape'][-1]} "
                      "(same trained weights; top-1 agreement and SQNR on 200 images vs the fp32 model of the "
                      "same weights: ORT fp32, or the pruned fp32 for pruned artifacts)"), "",
                      ("| candidate | bytes | size | p50 1t ms | speedup 1t | p90 1t ms | p50 2t ms | speedup 2t | "
                       "peak MB / model MB | top-1 agree | SQNR dB | vs |"),
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for n, r in _ordered(hr["rows"]):
                size = f"{r['size_ratio']:.3f}x" if "size_ratio" in r else "-"
                agree = f"{r['top1_agreement']:.3f}" if "top1_agreement" in r else "-"
                sq = f"{r['sqnr_db']:.1f}" if "sqnr_db" in r else "-"
                lines.append(
                    f"| {n} | {r['bytes'] or '-'} | {size} | {r['p50_ms_1t']:.3f} | {_speedup(r, 1)} | "
                    f"{r['p90_ms_1t']:.3f} | {r['p50_ms_2t']:.3f} | {_speedup(r, 2)} | {_mem(r)} | "
                    f"{agree} | {sq} | {r.get('reference', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from toolchain.bench.results import publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", help="recipe names (file stems in models/); default all")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing blocks per thread count (median, range)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    recipes = sorted((ROOT / "models").glob("*.toml"))
    if args.models:
        recipes = [r for r in recipes if r.stem in args.models]
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"),
           "repeats": args.repeats, "models": []}
    for r in recipes:
        print(f"[compare] {r.stem}", file=sys.stderr)
        doc["models"].append(measure_model(r, args.out, args.rounds, args.runs, args.repeats))
    previous = args.results / "compare_baselines.json"
    if args.models and previous.is_file():
        # A partial rerun replaces only its models; the others keep their (dated) earlier results.
        old = json.loads(previous.read_text(encoding="utf-8"))
        fresh = {m["recipe"] for m in doc["models"]}
        kept = [dict(m, measured=old.get("date")) for m in old.get("models", []) if m["recipe"] not in fresh]
        doc["models"] = sorted(kept + doc["models"], key=lambda m: m["recipe"])
    publish(args.results, "compare_baselines", doc, render_markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
