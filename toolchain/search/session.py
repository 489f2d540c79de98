"""One `edgeopt search`: the recipe's cached train/prune/export stages (same cache keys as
`edgeopt run`), then the search the user picked, its recipe hint and its text rendering."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from toolchain.search.budget import SearchBudget, SearchReport

Knob = Literal["quantization", "prune_amount", "drop_blocks"]


@dataclass(frozen=True)
class SearchOutcome:
    knob: Knob
    target: str
    out_dir: Path
    report: SearchReport
    document: dict[str, Any]


def run_search(recipe, profile, target: str, run_dir: Path, budget: SearchBudget, knob: Knob,
               executor=None, cache_dir: Path | str | None = None, iterations: int | None = None,
               sweep: int | None = None) -> SearchOutcome:
    """`executor` (toolchain.executor) builds and scores the search's candidates as tasks (the
    bisections: the next point and speculative successors, toolchain.search.prune).
    `cache_dir`: the stage cache `edgeopt run --cache` used (default <run_dir>/cache). `iterations`:
    how many candidates a bisection may try after its first (None: prune.ITERATIONS); `sweep`: try
    that many evenly spaced points instead, all at once."""
    from toolchain.data.calibration import calibration_inputs
    from toolchain.pipeline import steps
    from toolchain.pipeline.cache import StageCache
    from toolchain.pipeline.ship import int8_weights_apply
    from toolchain.pipeline.store import STAGING, check_cache
    from toolchain.search import (
        prune_tasks,
        search_drop_blocks,
        search_prune_amount,
        search_quantization,
        tasks,
    )
    from toolchain.search.prune import ITERATIONS, Parallel
    from toolchain.search.tasks import Runner
    from toolchain.stages.quantize import QuantizeConfig, calibration_subset

    if recipe.train.privacy is not None and knob != "quantization":
        from toolchain.errors import BadInput

        # every candidate is another DP fine-tune on the same rows: the recipe's one budget would not cover them
        raise BadInput(f"searching {knob} fine-tunes the model once per candidate, which [train.privacy]'s "
                       "budget does not cover", "search quantization only, or remove [train.privacy] for the search")
    if cache_dir is not None:  # the cache `edgeopt run --cache` filled; unwritable: refused before any work
        check_cache(cache_dir, run_dir)
    # the workers start and import while this process loads the data and the cached stages
    Runner(executor).warm_up(prune_tasks.warm if knob != "quantization" else tasks.warm)
    cache = StageCache(cache_dir if cache_dir is not None else run_dir / "cache", staging=run_dir / STAGING)
    data = steps.dataset(recipe, cache)
    trained = steps.train(cache, recipe, data)
    structured = recipe.prune.model_copy(update={"kind": "structured"})
    out_dir = run_dir / "search" / ("prune" if knob != "quantization" else target)
    if knob != "quantization":
        search = search_drop_blocks if knob == "drop_blocks" else search_prune_amount
        fp32 = steps.export(cache, recipe, data, trained, label="export[fp32]")  # `edgeopt run`'s: often a hit
        how = Parallel(executor, variant_dir(cache, run_dir), prune_tasks.RecipeWeights(recipe, steps.artifact_path(trained)),
                       recipe.export, steps.artifact_path(fp32))
        report = search(steps.load_model(recipe, trained), data, budget, out_dir, prune_cfg=structured,
                        train_cfg=recipe.train, iterations=iterations or ITERATIONS, sweep=sweep, parallel=how)
    else:
        pruned = steps.prune(cache, recipe, data, trained)
        onnx_entry = steps.export(cache, recipe, data, pruned, label="export[pruned]")
        scheme = profile.quantize.model_copy(update=recipe.quantize.scheme_overrides())
        q = recipe.quantize  # the data `edgeopt run` would calibrate on ([quantize] calibration_data)
        x_calib = calibration_inputs(q.calibration_data, data.x_train, q.calibration_samples, data.input_name)
        calib = calibration_subset(x_calib, QuantizeConfig(calibration_samples=q.calibration_samples))
        report = search_quantization(steps.artifact_path(onnx_entry), calib, data.x_test, data.y_test, budget,
                                     out_dir, scheme=scheme, int8_weights=int8_weights_apply(profile),
                                     executor=executor, cache_dir=variant_dir(cache, run_dir))
    doc = report.to_dict()
    doc["recipe_hint"] = recipe_hint(report, knob)
    return SearchOutcome(knob=knob, target=target, out_dir=out_dir, report=report, document=doc)


def variant_dir(cache, run_dir: Path) -> Path:
    """Where the quantization search publishes its variants: the stage cache when it is a directory
    (workers on every node that mounts it find them), else the run's local copies of a URL cache
    (then the workers must share this machine's disk)."""
    from toolchain.pipeline.store import STAGING, LocalStore

    return cache.store.root if isinstance(cache.store, LocalStore) else run_dir / STAGING


def best_candidate(report: SearchReport):
    return next(c for c in report.candidates if c.name == report.best)


def recipe_hint(report: SearchReport, knob: Knob) -> dict[str, Any]:
    """What to write into the recipe (or nothing) to get the best candidate from `edgeopt run`."""
    best = best_candidate(report)
    if knob == "drop_blocks":
        return {"prune": {"kind": "structured", "drop_blocks": best.detail.get("drop_blocks", 0)}}
    if knob == "prune_amount":
        return {"prune": {"kind": "structured", "amount": best.detail.get("amount")}}
    if best.detail.get("fp32_compute"):  # not a recipe setting: the target's ship rule picks this form
        return {"target_artifact": {"ship": "fastest"}}
    excluded = best.detail.get("excluded_nodes", [])
    hint: dict[str, Any] = {"quantize": {"nodes_to_exclude": excluded if isinstance(excluded, list) else []}}
    if best.detail.get("stem_flipped"):
        hint["quantize"]["fp32_stem"] = best.detail["fp32_stem"]
    return hint


def slower_int8_warning(outcome: SearchOutcome) -> str | None:
    report = outcome.report
    if not report.int8_slower_than_fp32:
        return None
    return (f"warning: every int8 variant within budget is slower than fp32 on this machine (best "
            f"{report.speedup_vs_fp32:.2f}x); consider [quantize] format = \"none\" for target '{outcome.target}'")


def render_search(outcome: SearchOutcome, recipe_name: str) -> str:
    report, hint = outcome.report, outcome.document["recipe_hint"]
    best = best_candidate(report)
    verdict = "meets" if report.met else "does NOT meet"
    lines = [(f"search for {recipe_name} on {outcome.target}: best '{report.best}' ({verdict} the budget: "
             f"accuracy {100 * best.accuracy:.2f}% >= {100 * report.min_accuracy:.2f}% needed; {best.bytes:,} bytes)")]
    lines += [f"  reverted: {step}" for step in report.reverted]
    lines.append(f"  report and plots: {outcome.out_dir}")
    if "prune" in hint:
        key = "drop_blocks" if outcome.knob == "drop_blocks" else "amount"
        lines.append(f"  to use it: [prune] kind = \"structured\", {key} = {hint['prune'][key]}")
    elif "target_artifact" in hint:
        lines.append(f"  to use it: nothing in the recipe; target '{outcome.target}' has [artifact] ship = "
                     "\"fastest\", so `edgeopt run` weighs this fp32-compute form with int8-stored weights too")
    else:
        if hint["quantize"]["nodes_to_exclude"]:
            lines.append(f"  to use it: [quantize] nodes_to_exclude = {json.dumps(hint['quantize']['nodes_to_exclude'])}")
        if "fp32_stem" in hint["quantize"]:
            lines.append(f"  to use it: [quantize] fp32_stem = {json.dumps(hint['quantize']['fp32_stem'])}")
    return "\n".join(lines)
