"""The tasks of a batch: module-level functions (pickled by reference to any worker) that take
paths and configs, read and write the shared stage cache (a directory or URL, plus the local
folder its entries are copied to), and return small summaries: artifacts go from task to task
through the cache, never through the driver.

Per training: `train_stage` once, however many recipes train the same model; per recipe
`shared_stages` (prune, export; training is a cache hit by then); per recipe x target `target_stages`
(quantize, convert, fidelity) on any worker, then `finish_recipe_run` (benchmark, package,
the run directory) as a timing task. Everything `finish_recipe_run` needs besides the
benchmark is a cache hit by then. A user model (`MODEL.onnx@DATA.npz`) is one `compress_run`
timing task per target: its stages live inside `edgeopt compress`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.config.recipe import Recipe
from toolchain.config.target import TargetProfile


def _events(cache) -> list[list[str]]:
    return [list(e) for e in cache.events]


def train_stage(recipe: Recipe, cache_dir: str, staging: Path) -> dict[str, Any]:
    """The recipe's training alone: recipes that train the same model share this task."""
    from toolchain.pipeline.cache import StageCache
    from toolchain.pipeline.run import training

    cache = StageCache(cache_dir, staging=staging)
    training(cache, recipe)
    return {"stages": _events(cache)}


def shared_stages(recipe: Recipe, cache_dir: str, staging: Path) -> dict[str, Any]:
    from toolchain.pipeline.cache import StageCache
    from toolchain.pipeline.run import model_source

    cache = StageCache(cache_dir, staging=staging)
    model_source(cache, recipe)
    return {"stages": _events(cache)}


def target_stages(recipe: Recipe, profile: TargetProfile, cache_dir: str, staging: Path) -> dict[str, Any]:
    from toolchain.pipeline.build_target import prepare_target
    from toolchain.pipeline.cache import StageCache
    from toolchain.pipeline.run import model_source

    cache = StageCache(cache_dir, staging=staging)
    source, _ = model_source(cache, recipe)
    candidates = prepare_target(cache, source, profile).candidates
    return {"stages": _events(cache), "candidates": {k: e.record["sha256"] for k, e in candidates.items()}}


def _summary(doc: dict[str, Any], target: str, metrics: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    t = doc["targets"][target]
    return {
        "passed": t["passed"],
        "budgets": t["budgets"],
        "metrics": metrics,
        "artifact": t["artifact"],
        "shipped": t.get("shipped"),
        "report": str(Path(run_dir) / "report.json"),
        "stages": doc.get("stages", []),
    }


def finish_recipe_run(
    recipe: Recipe,
    target: str,
    targets_dir: Path | None,
    run_dir: Path,
    cache_dir: str,
    staging: Path,
    rebench: bool,
) -> dict[str, Any]:
    """`edgeopt run` for one target into `run_dir`, on the shared cache: the benchmark runs here."""
    from toolchain.pipeline.report import run_document
    from toolchain.pipeline.run import RunOptions, run_pipeline

    opts = RunOptions(
        out_dir=Path(run_dir),
        targets=(target,),
        targets_dir=targets_dir,
        rebench=rebench,
        cache_dir=cache_dir,
        cache_staging=staging,
    )
    result = run_pipeline(recipe, opts)
    return _summary(run_document(result), target, result.targets[target].metrics, run_dir)


def compress_run(
    model: Path, data: Path, name: str, target: str, targets_dir: Path | None, run_dir: Path, rebench: bool
) -> dict[str, Any]:
    """`edgeopt compress MODEL --data DATA --target TARGET --out run_dir` (its own cache)."""
    from toolchain.compress.run import CompressOptions, compress, compress_document
    from toolchain.fsio import run_lock

    opts = CompressOptions(
        model=str(model),
        targets=(target,),
        data=str(data),
        name=name,
        out_dir=Path(run_dir),
        targets_dir=targets_dir,
        rebench=rebench,
    )
    with run_lock(run_dir):
        result = compress(opts, warn=lambda _m: None)
    return _summary(compress_document(result), target, result.targets[target].metrics, run_dir)
