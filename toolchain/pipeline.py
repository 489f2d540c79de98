"""The main job: recipe + target profiles -> trained, pruned, exported, quantized, converted,
benchmarked, gated and packaged artifacts, one cached stage at a time.

Baselines: the fp32 reference for every target is the *trained, unpruned* model exported and
converted the same way as the compressed one, so every ratio answers "what did compression
buy over shipping the original model in fp32".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.cache import Entry, StageCache
from toolchain.config.recipe import Recipe
from toolchain.config.target import TargetProfile, load_target
from toolchain.errors import ConfigError
from toolchain.fsio import copy_atomic, write_json_atomic
from toolchain.gate import evaluate
from toolchain.hostinfo import host_info
from toolchain.stages.benchmark import TORCH_EAGER, BenchConfig
from toolchain.stages.convert import ConvertConfig
from toolchain.stages.quantize import QuantizeConfig


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    targets: tuple[str, ...] = ()  # empty: the recipe's targets
    targets_dir: Path | None = None
    rebench: bool = False  # re-measure even when a benchmark for these exact artifacts is cached
    sign_key: Path | None = None  # Ed25519 private key: published packages are signed with it


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


@dataclass(frozen=True)
class RunResult:
    recipe: Recipe
    out_dir: Path
    targets: dict[str, TargetResult]
    stages: list[tuple[str, str]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets.values())


def resolve_targets(recipe: Recipe, opts: RunOptions) -> dict[str, TargetProfile]:
    names = opts.targets or tuple(recipe.targets)
    profiles = {name: load_target(name, opts.targets_dir) for name in names}
    unknown = sorted(set(recipe.budgets) - set(profiles) - {"all"})
    if unknown:
        raise ConfigError(f"[budgets.{unknown[0]}] names no target of this run", f"use 'all' or one of: {', '.join(profiles)}")
    return profiles


def _preflight(recipe: Recipe) -> None:
    """Resolve the model and dataset names now, so a typo costs no training and leaves no files."""
    from toolchain.data import DATASETS
    from toolchain.zoo import resolve_factory

    resolve_factory(recipe.model.name)
    if recipe.data.name not in DATASETS:
        raise ConfigError(f"unknown dataset '{recipe.data.name}'", f"known: {', '.join(sorted(DATASETS))}")


def run_pipeline(recipe: Recipe, opts: RunOptions) -> RunResult:
    from toolchain import steps

    profiles = resolve_targets(recipe, opts)  # bad names fail before any work or any output
    _preflight(recipe)
    cache = StageCache(Path(opts.out_dir) / "cache")
    data = steps.dataset(recipe)
    trained = steps.train(cache, recipe, data)
    pruned = steps.prune(cache, recipe, data, trained)
    fp32_onnx = steps.export(cache, recipe, data, trained, label="export[fp32]")
    pruned_onnx = steps.export(cache, recipe, data, pruned, label="export[pruned]")

    results = {}
    for name, profile in profiles.items():
        results[name] = _build_target(cache, recipe, profile, data, trained, fp32_onnx, pruned_onnx, opts)
    baseline = {"torch_accuracy": trained.record["accuracy"], "pruned_torch_accuracy": pruned.record["accuracy"],
                "sparsity": pruned.record.get("sparsity"), "export": fp32_onnx.record, "host": host_info()}
    result = RunResult(recipe, Path(opts.out_dir), results, list(cache.events), baseline)
    from toolchain.report import run_document

    write_json_atomic(Path(opts.out_dir) / "report.json", run_document(result))
    return result


def _build_target(cache: StageCache, recipe: Recipe, profile: TargetProfile, data, trained: Entry,
                  fp32_onnx: Entry, pruned_onnx: Entry, opts: RunOptions) -> TargetResult:
    from toolchain import steps
    from toolchain.package import metadata_props_for

    name = profile.name
    scheme = profile.quantize.model_copy(update=recipe.quantize.scheme_overrides())
    qcfg = QuantizeConfig(scheme=scheme, calibration_samples=recipe.quantize.calibration_samples, seed=recipe.train.seed)
    stamp = metadata_props_for(recipe.name, name, recipe.content_hash(), list(data.labels), data.preprocessing)
    quantized = steps.quantize(cache, qcfg, data, pruned_onnx, stamp, label=f"quantize[{name}]")
    ccfg = ConvertConfig(platform=profile.platform, **profile.artifact.model_dump())
    # The fp32 baseline is never shipped: no provenance stamp, so recipe edits that do not touch
    # the trained model (e.g. calibration) leave its conversion cached.
    fp32_art = steps.convert(cache, ccfg, fp32_onnx, {}, label=f"convert[{name}/fp32]")
    int8_art = steps.convert(cache, ccfg, quantized, stamp, label=f"convert[{name}/int8]")
    bcfg = BenchConfig(runtime=profile.runtime, spec=profile.benchmark)
    bench = steps.benchmark(cache, bcfg, data, recipe, trained, {"fp32": fp32_art, "int8": int8_art},
                            rebench=opts.rebench, label=f"benchmark[{name}]")

    metrics = summarize_metrics(bench.record["results"], profile)
    budgets = recipe.budgets_for(name, profile.budgets)
    verdicts = {k: v.to_dict() for k, v in evaluate(budgets, metrics).items()}

    target_dir = Path(opts.out_dir) / name
    artifact = copy_atomic(steps.artifact_path(int8_art), target_dir / f"{recipe.name}.{profile.artifact.format}")
    fp32_copy = copy_atomic(steps.artifact_path(fp32_art), target_dir / f"{recipe.name}.fp32.{profile.artifact.format}")
    package = steps.package(cache, recipe, profile, data, int8_art, metrics, verdicts, label=f"package[{name}]")
    package_copy = copy_atomic(steps.package_path(package), target_dir / f"{recipe.name}-{name}.zip")
    if opts.sign_key is not None:
        from toolchain.package import sign_package

        sign_package(package_copy, opts.sign_key)
    result = TargetResult(name, artifact.resolve(), fp32_copy.resolve(), package_copy.resolve(), metrics, verdicts)
    return result


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
        "latency_by_batch": {label: r["latency_ms"] for label, r in results.items()},
    }
    if eager_lat:
        metrics["torch_eager_latency_ms"] = {k: eager_lat[k] for k in ("p50", "p90", "p99")}
        metrics["speedup_vs_torch"] = eager_lat["p50"] / lat["p50"]
    if "accuracy" in int8 and "accuracy" in fp32:
        metrics.update(accuracy=int8["accuracy"], fp32_accuracy=fp32["accuracy"],
                       accuracy_drop=fp32["accuracy"] - int8["accuracy"])
    return metrics
