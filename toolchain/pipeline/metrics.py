"""The run's metrics: the benchmark flattened into the numbers budgets, reports and packages use.

`Metrics` names every key once, with its meaning; `summarize_metrics` fills it from a benchmark
record and `Metrics.document()` is the JSON form the report, the package manifest and
`edgeopt gate` read.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from toolchain.config.target import TargetProfile
from toolchain.stages.benchmark import TORCH_EAGER, headline_batch

PRUNED_FP32 = "pruned_fp32"  # benchmark label of the structured-pruned model left in fp32
INT8_WEIGHTS = "int8_weights"  # the compressed model in fp32 compute, its weights stored as int8

_Stats = dict[str, float]


class Metrics(BaseModel):
    """One target's measured numbers. Headline keys describe the shipped artifact at the first
    batch size of the profile; every ratio is against the fp32 baseline measured in the same run."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    bytes: int = Field(description="shipped artifact size on disk, bytes")
    fp32_bytes: int = Field(description="fp32 baseline artifact size, bytes")
    size_ratio: float = Field(description="bytes / fp32_bytes")
    batch: int = Field(description="batch size of the headline latency numbers")
    p50_ms: float = Field(description="median latency at `batch`, ms")
    p90_ms: float = Field(description="p90 latency at `batch`, ms")
    latency_ms: _Stats = Field(description="p50/p90/p99/std/mean at `batch`, ms")
    fp32_latency_ms: _Stats = Field(description="fp32 baseline p50/p90/p99 at `batch`, ms")
    speedup_vs_fp32: float = Field(description="fp32 p50 / artifact p50, same rounds")
    peak_memory_mb: float = Field(description="peak RSS of a process that loads and runs the artifact, MB")
    fp32_peak_memory_mb: float = Field(description="the same for fp32 under ORT's default session options, MB")
    memory_ratio: float | None = Field(None, description="peak_memory_mb / fp32_peak_memory_mb")
    runtime_floor_mb: float = Field(description="peak RSS of an ORT session before any model loads, MB")
    fp32_runtime_floor_mb: float = Field(description="the same under fp32's session options, MB")
    model_memory_mb: float = Field(description="peak_memory_mb minus the runtime floor: what the model costs")
    fp32_model_memory_mb: float = Field(description="the same for fp32, MB")
    model_memory_ratio: float | None = Field(None, description="model_memory_mb / fp32_model_memory_mb")
    latency_by_batch: dict[str, dict[str, _Stats]] = Field(description="candidate -> batch -> latency stats, ms")
    pruned_fp32: dict[str, Any] | None = Field(None, description="the structured-pruned network left in fp32")
    int8_speedup_vs_pruned_fp32: float | None = Field(None, description="pruned fp32 p50 / int8 p50")
    thread_sweep: dict[str, Any] | None = Field(None, description="p50 per thread count and batch; fastest count")
    optimized_ops: dict[str, int] | None = Field(None, description="op counts of the graph ORT runs on this host")
    torch_eager_latency_ms: _Stats | None = Field(None, description="PyTorch eager p50/p90/p99 at `batch`, ms")
    speedup_vs_torch: float | None = Field(None, description="torch eager p50 / artifact p50, chained via fp32")
    throughput_per_s: float | None = Field(None, description="inferences per second at the best batch size")
    cost_per_million: float | None = Field(None, description="price per 1M inferences at price_per_hour")
    price_per_hour: float | None = Field(None, description="the profile's instance price")
    accuracy: float | None = Field(None, description="top-1 accuracy of the artifact on held-out data")
    fp32_accuracy: float | None = Field(None, description="top-1 accuracy of fp32 on the same data")
    accuracy_drop: float | None = Field(None, description="fp32_accuracy - accuracy")
    min_sqnr_db: float | None = Field(None, description="lowest SQNR vs fp32 over outputs and their slices, dB")
    fidelity: dict[str, Any] | None = Field(None, description="per-output SQNR, max abs diff, cosine, agreement")
    shipped: str | None = Field(None, description="benchmark label of the shipped candidate")
    compression_pays: bool | None = Field(None, description=(
        "false when the shipped artifact is larger than fp32, or slower and not smaller"))
    quantize_format: str | None = Field(None, description='[quantize] format of the "int8" candidate (none: it is fp32)')
    selection: dict[str, Any] | None = Field(None, description="the ship rule and every candidate it weighed")
    transformer_fusion: dict[str, Any] | None = Field(None, description=(
        "per int8 candidate: whether ORT's transformer optimizer fused it, the fused op counts, or why not"))
    fp32_nodes_by_design: list[str] | None = Field(None, description="nodes kept fp32 on purpose")
    measured_on: str | None = Field(None, description="the CPU the numbers were measured on")
    target_platform: str | None = Field(None, description="the profile's platform")
    host_caveat: str | None = Field(None, description="why this host's int8 numbers may not be the target's")
    estimated: dict[str, Any] | None = Field(None, description="mobile estimates, never mixed with measurements")

    def document(self) -> dict[str, Any]:
        """The JSON form: every key that was set, nothing invented."""
        return self.model_dump(mode="json", exclude_unset=True)


def summarize_metrics(results: dict[str, Any], profile: TargetProfile, shipped: str = "int8") -> Metrics:
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
        if "int8" in results:  # absent when the target's engine could not compile it (pipeline/precision.py)
            metrics["int8_speedup_vs_pruned_fp32"] = p_lat["p50"] / results["int8"]["latency_ms"][b]["p50"]
    if art.get("threads"):  # the thread count this artifact runs fastest at, per batch size
        metrics["thread_sweep"] = _thread_summary(art, fp32, profile.runtime.intra_op_threads)
    if art.get("optimized_ops"):  # what ORT runs on this host: unfused fp32 compute = slow int8
        metrics["optimized_ops"] = art["optimized_ops"]
    if eager_lat:
        metrics["torch_eager_latency_ms"] = {k: eager_lat[k] for k in ("p50", "p90", "p99")}
        # eager was timed in its own rounds against fp32: chain the two same-round ratios
        fp32_pair = eager.get("fp32_p50_same_rounds", {}).get(b, fp32_lat["p50"])
        metrics["speedup_vs_torch"] = (eager_lat["p50"] / fp32_pair) * (fp32_lat["p50"] / lat["p50"])
    if profile.price_per_hour is not None:
        metrics.update(cost_estimate(art["latency_ms"], profile.price_per_hour, profile.runtime.intra_op_threads))
    if "fidelity" in art:  # fp32 itself is the reference: it has none
        metrics.update(min_sqnr_db=art["fidelity"]["min_sqnr_db"], fidelity=art["fidelity"])
    if "accuracy" in art and "accuracy" in fp32:
        metrics.update(accuracy=art["accuracy"], fp32_accuracy=fp32["accuracy"],
                       accuracy_drop=fp32["accuracy"] - art["accuracy"])
    return Metrics(**metrics)


def _thread_summary(art: dict[str, Any], fp32: dict[str, Any], profile_threads: int) -> dict[str, Any]:
    from toolchain.bench.threads import fastest_threads

    def p50s(r):
        return {n: {bb: st["p50"] for bb, st in by_batch.items()} for n, by_batch in r.get("threads", {}).items()}

    p50, fp32_p50 = p50s(art), p50s(fp32)
    return {"p50_ms": p50, "fastest": fastest_threads(p50), "fp32_p50_ms": fp32_p50,
            "speedup_vs_fp32": {n: {bb: fp32_p50[n][bb] / v for bb, v in by_batch.items() if bb in fp32_p50.get(n, {})}
                                for n, by_batch in p50.items()},
            "profile_threads": profile_threads}


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
