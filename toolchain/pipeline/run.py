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

from toolchain.config.recipe import Recipe
from toolchain.config.target import TargetProfile, available_targets, load_target
from toolchain.data.types import Dataset
from toolchain.errors import ConfigError
from toolchain.fsio import run_lock, write_json_atomic
from toolchain.hostinfo import host_info
from toolchain.pipeline.build_target import ModelSource, TargetResult, build_target
from toolchain.pipeline.cache import Entry, StageCache


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    targets: tuple[str, ...] = ()  # empty: the recipe's targets
    targets_dir: Path | None = None
    rebench: bool = False  # re-measure even when a benchmark for these exact artifacts is cached
    sign_key: Path | None = None  # Ed25519 private key: published packages are signed with it
    cache_dir: Path | str | None = None  # None: <out_dir>/cache; `edgeopt batch` shares one (a dir or URL)
    cache_staging: Path | None = None  # local copies of a URL cache's entries (pipeline/store.py)


@dataclass(frozen=True)
class RunResult:
    recipe: Recipe
    out_dir: Path
    targets: dict[str, TargetResult]
    stages: list[tuple[str, str]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] | None = None  # DP-SGD ledger record (privacy/budget.py), None when not private

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets.values())


def resolve_targets(recipe: Recipe, opts: RunOptions) -> dict[str, TargetProfile]:
    names = opts.targets or tuple(recipe.targets)
    profiles = {name: load_target(name, opts.targets_dir) for name in names}
    # Budgets for any target a run could build stay valid (a batch's --targets, a --target subset);
    # a name no profile has is a typo.
    known = [*recipe.targets, *(n for n in profiles if n not in recipe.targets)]
    unknown = sorted(set(recipe.budgets) - set(known) - set(available_targets(opts.targets_dir)) - {"all"})
    if unknown:
        raise ConfigError(f"[budgets.{unknown[0]}] names no target of this run", f"use 'all' or one of: {', '.join(known)}")
    from toolchain.runtime import require_engines

    require_engines(profiles.values())
    return profiles


def preflight(recipe: Recipe, opts: RunOptions) -> None:
    """Resolve the model and dataset names and read the signing key now, so a typo costs no
    training and leaves no files."""
    from toolchain.config.zoo import resolve_factory
    from toolchain.data import DATASETS

    if opts.sign_key is not None:
        from toolchain.package.keys import load_private_key

        load_private_key(opts.sign_key)

    from toolchain.data.calibration import check_calibration_path

    check_calibration_path(recipe.quantize.calibration_data)
    if opts.cache_dir is not None:  # a shared cache (a folder or URL) that cannot be written costs no training
        from toolchain.pipeline.store import check_cache

        check_cache(opts.cache_dir, opts.out_dir)
    resolve_factory(recipe.model.name)
    if recipe.data.name not in DATASETS:
        raise ConfigError(f"unknown dataset '{recipe.data.name}'", f"known: {', '.join(sorted(DATASETS))}")
    if recipe.train.privacy is not None:  # budget, delta vs the data size, layers: all before any work
        from toolchain.pipeline import steps
        from toolchain.privacy.dpsgd import dp_trainable

        steps.privacy_plan(recipe, steps.dataset(recipe))
        dp_trainable(steps.build_recipe_model(recipe), recipe.train.privacy)


_STRUCTURE_KEYS = ("params_before", "params_after", "macs_before", "macs_after", "channels_removed",
                   "blocks_dropped", "accuracy_per_step")


def run_pipeline(recipe: Recipe, opts: RunOptions) -> RunResult:
    profiles = resolve_targets(recipe, opts)  # bad names fail before any work or any output
    preflight(recipe, opts)
    with run_lock(opts.out_dir):
        return _run(recipe, opts, profiles)


def training(cache: StageCache, recipe: Recipe) -> tuple[Dataset, Entry]:
    """The recipe's data and trained model (cached): the first of the shared stages."""
    from toolchain.pipeline import steps

    data = steps.dataset(recipe, cache)
    if recipe.quantize.calibration_data not in ("train", "synthetic"):  # a wrong file fails before training
        from toolchain.data.calibration import calibration_inputs

        calibration_inputs(recipe.quantize.calibration_data, data.x_train, 1, data.input_name)
    return data, steps.train(cache, recipe, data)


def model_source(cache: StageCache, recipe: Recipe) -> tuple[ModelSource, dict[str, Any]]:
    """The recipe's shared stages (train, prune, export fp32 and pruned), cached: the per-target
    stages start from what this returns. Also the run's baseline facts."""
    from toolchain.pipeline import steps

    data, trained = training(cache, recipe)
    pruned = steps.prune(cache, recipe, data, trained)
    fp32_onnx = steps.export(cache, recipe, data, trained, label="export[fp32]")
    pruned_onnx = steps.export(cache, recipe, data, pruned, label="export[pruned]")

    source = ModelSource(
        name=recipe.name,
        recipe_hash=recipe.content_hash(),
        fp32_onnx=fp32_onnx,
        compressed_onnx=pruned_onnx,
        data=data,
        quantize=recipe.quantize,
        budgets=recipe.budgets_for,
        seed=recipe.train.seed,
        torch_model=lambda: steps.load_model(recipe, trained),
        torch_sha=trained.record["sha256"],
        structured=bool(pruned.record.get("plan")),
        package=recipe.package,
        privacy=pruned.record.get("privacy"),  # after the fine-tunes: the whole recipe's spend
    )
    baseline = {"fp32_onnx": str(steps.artifact_path(fp32_onnx).resolve()),
                "torch_accuracy": trained.record["accuracy"], "pruned_torch_accuracy": pruned.record["accuracy"],
                "sparsity": pruned.record.get("sparsity"), "export": fp32_onnx.record, "host": host_info()}
    if pruned.record.get("plan"):  # structured: what the network lost, before any latency is measured
        baseline["structure"] = {k: pruned.record[k] for k in _STRUCTURE_KEYS if k in pruned.record}
    return source, baseline


def run_cache(opts: RunOptions) -> StageCache:
    root = opts.cache_dir if opts.cache_dir is not None else Path(opts.out_dir) / "cache"
    return StageCache(root, staging=opts.cache_staging)


def _run(recipe: Recipe, opts: RunOptions, profiles: dict[str, TargetProfile]) -> RunResult:
    cache = run_cache(opts)
    source, baseline = model_source(cache, recipe)
    results = {name: build_target(cache, source, profile, Path(opts.out_dir), opts.rebench, opts.sign_key)
               for name, profile in profiles.items()}
    result = RunResult(recipe, Path(opts.out_dir), results, list(cache.events), baseline, source.privacy)
    from toolchain.pipeline.page import write_page
    from toolchain.pipeline.report import run_document

    doc = run_document(result)
    write_json_atomic(Path(opts.out_dir) / "report.json", doc)
    write_page(doc, Path(opts.out_dir) / "report.html")
    return result
