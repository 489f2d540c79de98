"""Per-target stages: quantize -> convert -> benchmark -> gate -> package -> publish.

They start from a `ModelSource`: an fp32 ONNX reference and the ONNX model to compress, with
the data to calibrate and evaluate on. `edgeopt run` makes one from a recipe (train, prune,
export); `edgeopt compress` makes one from a user's own model file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from toolchain.cache import Entry, StageCache
from toolchain.config.budgets import Budgets
from toolchain.config.recipe import QuantizeOverrides
from toolchain.config.target import TargetProfile
from toolchain.data import Dataset
from toolchain.fsio import copy_atomic
from toolchain.gate import evaluate
from toolchain.stages.benchmark import TORCH_EAGER, BenchConfig, ort_default_memory

PRUNED_FP32 = "pruned_fp32"  # benchmark label of the structured-pruned model left in fp32
from toolchain.stages.convert import ConvertConfig
from toolchain.stages.quantize import QuantizeConfig


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

    @property
    def passed(self) -> bool:
        return all(v["pass"] for v in self.verdicts.values())


def quantize_config(profile: TargetProfile, overrides: QuantizeOverrides, seed: int) -> QuantizeConfig:
    """The profile's [quantize] scheme with the recipe's overrides and calibration settings."""
    scheme = profile.quantize.model_copy(update=overrides.scheme_overrides())
    return QuantizeConfig(scheme=scheme, calibration_samples=overrides.calibration_samples,
                          nodes_to_exclude=overrides.nodes_to_exclude, seed=seed)


def convert_config(profile: TargetProfile) -> ConvertConfig:
    return ConvertConfig(platform=profile.platform, **profile.artifact.model_dump())


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
    if src.structured:
        candidates[PRUNED_FP32] = steps.convert(cache, ccfg, src.compressed_onnx, {}, label=f"convert[{name}/pruned-fp32]")
    bench = steps.benchmark(cache, bench_config(profile), src, candidates, rebench=rebench, label=f"benchmark[{name}]")

    metrics = summarize_metrics(bench.record["results"], profile)
    # Nodes left fp32 on purpose (fp32_stem, nodes_to_exclude), so the report can tell them from unfused ones.
    metrics["fp32_nodes_by_design"] = list(quantized.record.get("fp32_nodes", []))
    metrics["measured_on"] = bench.record["host"]["machine"]
    metrics["target_platform"] = profile.platform
    verdicts = {k: v.to_dict() for k, v in evaluate(src.budgets(name, profile.budgets), metrics).items()}

    target_dir = Path(out_dir) / name
    fmt = profile.artifact.format
    extra: dict[str, Path] = {}
    if fmt == "ort":  # mobile: EP coverage + static estimates of the graph the .ort was made from
        from toolchain.fsio import write_json_atomic
        from toolchain.mobile.report import mobile_report

        report = mobile_report(steps.artifact_path(quantized), profile)
        # No machine paths in a shipped file: name the artifact, not the cache entry analysed.
        report["model"] = report["ep_coverage"]["model"] = f"{src.name}.{fmt} (analysed from its fixed-shape ONNX)"
        extra["mobile_report.json"] = write_json_atomic(target_dir / "mobile_report.json", report)
        metrics["estimated"] = summarize_mobile(report)
    artifact = copy_atomic(steps.artifact_path(int8_art), target_dir / f"{src.name}.{fmt}")
    fp32_copy = copy_atomic(steps.artifact_path(fp32_art), target_dir / f"{src.name}.fp32.{fmt}")
    package = steps.package(cache, src, profile, int8_art, metrics, verdicts, extra, label=f"package[{name}]")
    package_copy = copy_atomic(steps.artifact_path(package), target_dir / f"{src.name}-{name}.zip")
    if sign_key is not None:
        from toolchain.package import sign_package

        sign_package(package_copy, sign_key)
    return TargetResult(name, artifact.resolve(), fp32_copy.resolve(), package_copy.resolve(), metrics, verdicts)


def bench_config(profile: TargetProfile) -> BenchConfig:
    """The memory goal compares the artifact under the profile's session options with fp32 under
    ORT's defaults (what a user gets without tuning); latency uses the profile's for both."""
    return BenchConfig(runtime=profile.runtime, spec=profile.benchmark,
                       memory_runtime={"fp32": ort_default_memory(profile.runtime)})


def summarize_metrics(results: dict[str, Any], profile: TargetProfile) -> dict[str, Any]:
    """Flatten the benchmark into the numbers budgets and reports use (batch 1 = first batch size)."""
    b = str(profile.benchmark.batch_sizes[0])
    fp32, int8, eager = results["fp32"], results["int8"], results.get(TORCH_EAGER, {})
    lat, fp32_lat = int8["latency_ms"][b], fp32["latency_ms"][b]
    eager_lat = eager.get("latency_ms", {}).get(b)
    metrics = {
        "bytes": int8["bytes"],
        "fp32_bytes": fp32["bytes"],
        "size_ratio": int8["bytes"] / fp32["bytes"],
        "batch": int(b),
        "p50_ms": lat["p50"],
        "p90_ms": lat["p90"],
        "latency_ms": {k: lat[k] for k in ("p50", "p90", "p99", "std", "mean")},
        "fp32_latency_ms": {k: fp32_lat[k] for k in ("p50", "p90", "p99")},
        "speedup_vs_fp32": fp32_lat["p50"] / lat["p50"],
        "peak_memory_mb": int8["peak_memory_mb"],
        "fp32_peak_memory_mb": fp32["peak_memory_mb"],
        "memory_ratio": _ratio(int8["peak_memory_mb"], fp32["peak_memory_mb"]),
        # the same minus ORT's per-session floor: what the model itself costs
        "runtime_floor_mb": int8["runtime_floor_mb"],
        "fp32_runtime_floor_mb": fp32["runtime_floor_mb"],
        "model_memory_mb": int8["model_memory_mb"],
        "fp32_model_memory_mb": fp32["model_memory_mb"],
        "model_memory_ratio": _ratio(int8["model_memory_mb"], fp32["model_memory_mb"]),
        "latency_by_batch": {label: r["latency_ms"] for label, r in results.items()},
    }
    pruned = results.get(PRUNED_FP32)
    if pruned:  # the pruned network without int8: does quantizing it still pay on this host?
        p_lat = pruned["latency_ms"][b]
        metrics["pruned_fp32"] = {"bytes": pruned["bytes"], "p50_ms": p_lat["p50"], "p90_ms": p_lat["p90"],
                                  "accuracy": pruned.get("accuracy"), "peak_memory_mb": pruned["peak_memory_mb"],
                                  "speedup_vs_fp32": fp32_lat["p50"] / p_lat["p50"]}
        metrics["int8_speedup_vs_pruned_fp32"] = p_lat["p50"] / lat["p50"]
    if int8.get("optimized_ops"):  # what ORT runs on this host: unfused fp32 compute = slow int8
        metrics["optimized_ops"] = int8["optimized_ops"]
    if eager_lat:
        metrics["torch_eager_latency_ms"] = {k: eager_lat[k] for k in ("p50", "p90", "p99")}
        metrics["speedup_vs_torch"] = eager_lat["p50"] / lat["p50"]
    if profile.price_per_hour is not None:
        metrics.update(cost_estimate(int8["latency_ms"], profile.price_per_hour, profile.runtime.intra_op_threads))
    if "accuracy" in int8 and "accuracy" in fp32:
        metrics.update(accuracy=int8["accuracy"], fp32_accuracy=fp32["accuracy"],
                       accuracy_drop=fp32["accuracy"] - int8["accuracy"])
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
    cov = report["ep_coverage"]["eps"]
    return {
        "label": "estimated",
        "ep_nodes_covered": {ep: f"{c['nodes_covered']}/{c['nodes_total']}" for ep, c in cov.items()},
        "static_memory_bytes": report["memory"].get("total_bytes"),
        "latency_ms": report["latency"].get("latency_ms"),
    }
