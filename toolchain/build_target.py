"""Per-target stages: quantize -> convert -> benchmark -> gate -> package -> publish.

They start from a `ModelSource`: an fp32 ONNX reference and the ONNX model to compress, with
the data to calibrate and evaluate on. `edgeopt run` makes one from a recipe (train, prune,
export); `edgeopt compress` makes one from a user's own model file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.cache import Entry, StageCache
from toolchain.config.budgets import Budgets
from toolchain.config.recipe import QuantizeOverrides
from toolchain.config.target import TargetProfile
from toolchain.data import Dataset
from toolchain.fsio import copy_atomic
from toolchain.gate import evaluate
from toolchain.stages.benchmark import TORCH_EAGER, BenchConfig, headline_batch, ort_default_memory
from toolchain.stages.convert import ConvertConfig
from toolchain.stages.int8_weights import Int8WeightsConfig
from toolchain.stages.quantize import QuantizeConfig

PRUNED_FP32 = "pruned_fp32"  # benchmark label of the structured-pruned model left in fp32
INT8_WEIGHTS = "int8_weights"  # the compressed model in fp32 compute, its weights stored as int8
# Which of equally fast, equally small candidates ships: the profile's int8 scheme, then the
# plain pruned fp32 graph, then int8-stored weights (fast only while the app keeps ORT's graph
# optimization on, which folds them back to fp32 at load).
PREFERENCE = ("int8", PRUNED_FP32, INT8_WEIGHTS)


@dataclass(frozen=True)
class ModelSource:
    name: str
    recipe_hash: str
    fp32_onnx: Entry  # the reference every ratio is measured against
    compressed_onnx: Entry  # what gets quantized: the pruned model, or fp32_onnx itself
    data: Dataset  # calibration (x_train) and evaluation (x_test, y_test) arrays, labels, preprocessing
    quantize: QuantizeOverrides
    budgets: Callable[[str, Budgets], Budgets]  # (target name, profile budgets) -> budgets in force
    seed: int = 0
    torch_model: Callable[[], Any] | None = None  # loads the eager reference, when there is one
    torch_sha: str | None = None
    # Structured pruning made compressed_onnx a smaller network: its fp32 form is benchmarked too,
    # because on narrow layers int8 kernels can lose to fp32 (see the report's note).
    structured: bool = False


@dataclass(frozen=True)
class TargetResult:
    name: str
    artifact: Path
    fp32_artifact: Path
    package: Path
    metrics: dict[str, Any]
    verdicts: dict[str, Any]
    # benchmark label -> the measured file (cache entry) it was; `artifact` is the copy of the shipped one
    candidates: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(v["pass"] for v in self.verdicts.values())


def quantize_config(profile: TargetProfile, overrides: QuantizeOverrides, seed: int) -> QuantizeConfig:
    """The profile's [quantize] scheme with the recipe's overrides and calibration settings."""
    scheme = profile.quantize.model_copy(update=overrides.scheme_overrides())
    return QuantizeConfig(scheme=scheme, calibration_samples=overrides.calibration_samples,
                          nodes_to_exclude=overrides.nodes_to_exclude, seed=seed)


def convert_config(profile: TargetProfile) -> ConvertConfig:
    """The [artifact] keys the converter takes; the others (ship, ship_tie) choose among candidates."""
    return ConvertConfig(platform=profile.platform, **profile.artifact.model_dump(include=set(ConvertConfig.model_fields)))


def build_target(cache: StageCache, src: ModelSource, profile: TargetProfile, out_dir: Path,
                 rebench: bool = False, sign_key: Path | None = None) -> TargetResult:
    from toolchain import steps
    from toolchain.package import metadata_props_for

    name = profile.name
    qcfg = quantize_config(profile, src.quantize, src.seed)
    stamp = metadata_props_for(src.name, name, src.recipe_hash, list(src.data.labels), src.data.preprocessing)
    quantized = steps.quantize(cache, qcfg, src.data, src.compressed_onnx, stamp, label=f"quantize[{name}]")
    ccfg = convert_config(profile)
    # The fp32 baseline is never shipped: no provenance stamp, so recipe edits that do not touch
    # the trained model (e.g. calibration) leave its conversion cached.
    fp32_art = steps.convert(cache, ccfg, src.fp32_onnx, {}, label=f"convert[{name}/fp32]")
    int8_art = steps.convert(cache, ccfg, quantized, stamp, label=f"convert[{name}/int8]")
    candidates = {"fp32": fp32_art, "int8": int8_art}
    if src.structured:  # stamped: it may be the artifact that ships (see [artifact] ship)
        candidates[PRUNED_FP32] = steps.convert(cache, ccfg, src.compressed_onnx, stamp, label=f"convert[{name}/pruned-fp32]")
    if int8_weights_apply(profile):  # where int8 kernels lose, fp32 compute need not cost fp32 bytes
        fp32_compute = candidates.get(PRUNED_FP32) or steps.convert(cache, ccfg, src.compressed_onnx, stamp,
                                                                    label=f"convert[{name}/fp32-compute]")
        candidates[INT8_WEIGHTS] = steps.int8_weights(cache, Int8WeightsConfig(), fp32_compute, label=f"int8-weights[{name}]")
    bench = steps.benchmark(cache, bench_config(profile), src, candidates, rebench=rebench, label=f"benchmark[{name}]")

    results = bench.record["results"]
    budgets = src.budgets(name, profile.budgets)
    shipped, selection = choose_artifact(results, profile, budgets)
    metrics = summarize_metrics(results, profile, shipped)
    metrics["shipped"] = shipped
    metrics["selection"] = selection
    if shipped == "int8":  # nodes left fp32 on purpose, so the report can tell them from unfused ones
        metrics["fp32_nodes_by_design"] = list(quantized.record.get("fp32_nodes", []))
    metrics["measured_on"] = bench.record["host"]["machine"]
    metrics["target_platform"] = profile.platform
    verdicts = {k: v.to_dict() for k, v in evaluate(budgets, metrics).items()}

    target_dir = Path(out_dir) / name
    fmt = profile.artifact.format
    extra: dict[str, Path] = {}
    if fmt == "ort":  # mobile: EP coverage + static estimates of the graph the .ort was made from
        from toolchain.fsio import write_json_atomic
        from toolchain.mobile.report import mobile_report

        analysed = quantized if shipped == "int8" else src.compressed_onnx
        # No machine paths in a shipped file: name the artifact, not the cache entry analysed.
        report = mobile_report(steps.artifact_path(analysed), profile,
                               shown_as=f"{src.name}.{fmt} (analysed from its fixed-shape ONNX)")
        extra["mobile_report.json"] = write_json_atomic(target_dir / "mobile_report.json", report)
        metrics["estimated"] = summarize_mobile(report)
    artifact = copy_atomic(steps.artifact_path(candidates[shipped]), target_dir / f"{src.name}.{fmt}")
    fp32_copy = copy_atomic(steps.artifact_path(fp32_art), target_dir / f"{src.name}.fp32.{fmt}")
    package = steps.package(cache, src, profile, candidates[shipped], metrics, verdicts, extra, label=f"package[{name}]")
    package_copy = copy_atomic(steps.artifact_path(package), target_dir / f"{src.name}-{name}.zip")
    if sign_key is not None:
        from toolchain.package import sign_package

        sign_package(package_copy, sign_key)
    measured = {label: steps.artifact_path(entry).resolve() for label, entry in candidates.items()}
    return TargetResult(name, artifact.resolve(), fp32_copy.resolve(), package_copy.resolve(), metrics, verdicts, measured)


def int8_weights_apply(profile: TargetProfile) -> bool:
    """Whether `profile` gets an int8-weights candidate: only a "fastest" rule can ship it, only a
    .onnx keeps the stored form (the .ort converter folds it back to fp32 bytes), and ORT folds
    it back into fp32 weights at load time only when graph optimization is on."""
    return (profile.artifact.ship == "fastest" and profile.artifact.format == "onnx"
            and profile.runtime.graph_optimization_level != "disable")


def bench_config(profile: TargetProfile) -> BenchConfig:
    """The memory goal compares the artifact under the profile's session options with fp32 under
    ORT's defaults (what a user gets without tuning); latency uses the profile's for both."""
    return BenchConfig(runtime=profile.runtime, spec=profile.benchmark,
                       memory_runtime={"fp32": ort_default_memory(profile.runtime)})


def choose_artifact(results: dict[str, Any], profile: TargetProfile, budgets: Budgets) -> tuple[str, dict[str, Any]]:
    """The benchmark label to ship, and what was weighed. `ship = "fastest"` weighs the compressed
    candidates that pass every budget (with none passing, those failing the fewest: the best
    effort ships and its verdicts say what failed; measured: the tabular MLP's int8 and
    int8-weights forms both missed the 0.30x size budget, at 0.66x and 1.01x of fp32's speed).
    Each is timed at the thread count it runs fastest at when the profile sweeps threads (the
    count its package will name). Every candidate within `ship_tie` of the lowest batch-1 p50
    counts as equally fast; of those, the ones within `ship_tie` of the smallest in bytes remain,
    and the first in PREFERENCE ships. So timing noise between two forms of equal speed and size
    (digits: int8 and int8-weights, 0.5% apart in bytes) does not change the shipped file from one
    run to the next; only a gap wider than `ship_tie` can. The choice is cached with the benchmark:
    a rerun on the same cache ships the same file.
    `ship = "quantized"` always ships int8."""
    options = [label for label in PREFERENCE if label in results]
    batch = headline_batch(results, profile.benchmark.batch_sizes)
    weighed: dict[str, Any] = {}
    for label in options:
        m = summarize_metrics(results, profile, label)
        failed = sorted(k for k, v in evaluate(budgets, m).items() if not v.passed)
        p50, threads = _fastest_p50(results[label], batch)
        weighed[label] = {"p50_ms": m["p50_ms"], "selection_p50_ms": p50, "selection_threads": threads,
                          "bytes": m["bytes"], "accuracy": m.get("accuracy"), "failed_budgets": failed}
    tie = profile.artifact.ship_tie
    shipped = pick_fastest(weighed, tie) if profile.artifact.ship == "fastest" else "int8"
    return shipped, {"rule": profile.artifact.ship, "tie": tie, "candidates": weighed}


def pick_fastest(weighed: dict[str, dict[str, Any]], tie: float) -> str:
    """The `ship = "fastest"` choice among weighed candidates (choose_artifact's "candidates"):
    of those failing the fewest budgets, the ones within `tie` of the lowest selection p50, of
    those the ones within `tie` of the smallest bytes, and of those the first in PREFERENCE."""
    fewest = min(len(c["failed_budgets"]) for c in weighed.values())
    pool = [label for label in PREFERENCE if label in weighed and len(weighed[label]["failed_budgets"]) == fewest]
    fast = min(weighed[label]["selection_p50_ms"] for label in pool)
    fast_enough = [label for label in pool if weighed[label]["selection_p50_ms"] <= fast * (1 + tie)]
    small = min(weighed[label]["bytes"] for label in fast_enough)
    return next(label for label in fast_enough if weighed[label]["bytes"] <= small * (1 + tie))


def _fastest_p50(result: dict[str, Any], batch: str) -> tuple[float, int | None]:
    """`batch`'s p50 at the swept thread count where it is lowest, and that count; without a
    thread sweep, the p50 at the profile's count (and None)."""
    swept = {int(n): by_batch[batch]["p50"] for n, by_batch in result.get("threads", {}).items() if batch in by_batch}
    if not swept:
        return result["latency_ms"][batch]["p50"], None
    best = min(swept, key=lambda n: swept[n])
    return swept[best], best


def summarize_metrics(results: dict[str, Any], profile: TargetProfile, shipped: str = "int8") -> dict[str, Any]:
    """Flatten the benchmark into the numbers budgets and reports use (batch 1 = first batch size).
    The headline keys (bytes, p50_ms, accuracy, ...) describe `shipped`, every ratio is against fp32."""
    b = headline_batch(results, profile.benchmark.batch_sizes)
    fp32, art, eager = results["fp32"], results[shipped], results.get(TORCH_EAGER, {})
    lat, fp32_lat = art["latency_ms"][b], fp32["latency_ms"][b]
    eager_lat = eager.get("latency_ms", {}).get(b)
    metrics = {
        "bytes": art["bytes"],
        "fp32_bytes": fp32["bytes"],
        "size_ratio": art["bytes"] / fp32["bytes"],
        "batch": int(b),
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "latency_ms": {k: lat[k] for k in ("p50", "p90", "p99", "std", "mean")},
        "fp32_latency_ms": {k: fp32_lat[k] for k in ("p50", "p90", "p99")},
        "speedup_vs_fp32": fp32_lat["p50"] / lat["p50"],
        "peak_memory_mb": art["peak_memory_mb"],
        "fp32_peak_memory_mb": fp32["peak_memory_mb"],
        "memory_ratio": _ratio(art["peak_memory_mb"], fp32["peak_memory_mb"]),
        # the same minus ORT's per-session floor: what the model itself costs
        "runtime_floor_mb": art["runtime_floor_mb"],
        "fp32_runtime_floor_mb": fp32["runtime_floor_mb"],
        "model_memory_mb": art["model_memory_mb"],
        "fp32_model_memory_mb": fp32["model_memory_mb"],
        "model_memory_ratio": _ratio(art["model_memory_mb"], fp32["model_memory_mb"]),
        "latency_by_batch": {label: r["latency_ms"] for label, r in results.items()},
    }
    pruned = results.get(PRUNED_FP32)
    if pruned:  # the pruned network without int8: does quantizing it still pay on this host?
        p_lat = pruned["latency_ms"][b]
        metrics["pruned_fp32"] = {"bytes": pruned["bytes"], "p50_ms": p_lat["p50"], "p90_ms": p_lat["p90"],
                                  "accuracy": pruned.get("accuracy"), "peak_memory_mb": pruned["peak_memory_mb"],
                                  "speedup_vs_fp32": fp32_lat["p50"] / p_lat["p50"]}
        metrics["int8_speedup_vs_pruned_fp32"] = p_lat["p50"] / results["int8"]["latency_ms"][b]["p50"]
    if art.get("threads"):  # the thread count this artifact runs fastest at, per batch size
        from toolchain.bench.threads import fastest_threads

        def p50s(r):
            return {n: {bb: st["p50"] for bb, st in by_batch.items()} for n, by_batch in r.get("threads", {}).items()}

        p50, fp32_p50 = p50s(art), p50s(fp32)
        metrics["thread_sweep"] = {"p50_ms": p50, "fastest": fastest_threads(p50), "fp32_p50_ms": fp32_p50,
                                   "speedup_vs_fp32": {n: {bb: fp32_p50[n][bb] / v for bb, v in by_batch.items()
                                                           if bb in fp32_p50.get(n, {})}
                                                       for n, by_batch in p50.items()},
                                   "profile_threads": profile.runtime.intra_op_threads}
    if art.get("optimized_ops"):  # what ORT runs on this host: unfused fp32 compute = slow int8
        metrics["optimized_ops"] = art["optimized_ops"]
    if eager_lat:
        metrics["torch_eager_latency_ms"] = {k: eager_lat[k] for k in ("p50", "p90", "p99")}
        # eager was timed in its own rounds against fp32: chain the two same-round ratios
        fp32_pair = eager.get("fp32_p50_same_rounds", {}).get(b, fp32_lat["p50"])
        metrics["speedup_vs_torch"] = (eager_lat["p50"] / fp32_pair) * (fp32_lat["p50"] / lat["p50"])
    if profile.price_per_hour is not None:
        metrics.update(cost_estimate(art["latency_ms"], profile.price_per_hour, profile.runtime.intra_op_threads))
    if "accuracy" in art and "accuracy" in fp32:
        metrics.update(accuracy=art["accuracy"], fp32_accuracy=fp32["accuracy"],
                       accuracy_drop=fp32["accuracy"] - art["accuracy"])
    return metrics


def _ratio(value: float, reference: float) -> float | None:
    """value / reference; None when the reference measured zero (the child stayed under the
    import-only baseline), so no ratio is invented."""
    return value / reference if reference > 0 else None


def cost_estimate(latency_by_batch: dict[str, dict[str, float]], price_per_hour: float, threads: int) -> dict[str, float]:
    """Cost per million inferences from measured throughput: the best batch size's p50, one
    stream using the profile's threads on one instance (an upper bound on what it costs)."""
    throughput = max(int(b) / (st["p50"] / 1e3) for b, st in latency_by_batch.items())
    return {
        "throughput_per_s": throughput,
        "cost_per_million": price_per_hour / 3600.0 / throughput * 1e6,
        "price_per_hour": price_per_hour,
    }


def summarize_mobile(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a mobile report; kept under metrics["estimated"], never mixed
    with measured metrics."""
    cov = (report["ep_coverage"] or {}).get("eps", {})  # an analysis that failed is null, with a note
    return {
        "label": "estimated",
        "ep_nodes_covered": {ep: f"{c['nodes_covered']}/{c['nodes_total']}" for ep, c in cov.items()},
        "static_memory_bytes": (report["memory"] or {}).get("total_bytes"),
        "latency_ms": (report["latency"] or {}).get("latency_ms"),
        **({"notes": report["notes"]} if report.get("notes") else {}),
    }
