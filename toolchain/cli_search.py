"""`edgeopt search`: the best int8 artifact within an accuracy budget, per target.

Thin wrapper: the recipe's train/prune/export stages come from the run's cache (same keys as
`edgeopt run`), then toolchain.search falls back the most harmful parts of the graph to fp32
until the budget holds. Exit 0 budget met, 1 only a best-effort artifact was found, 2 bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from toolchain.errors import EXIT_BUDGET_FAILED, EXIT_OK


@click.command("search")
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Target whose quantization scheme to search with.")
@click.option("--max-drop", type=click.FloatRange(0, 1, max_open=True), default=0.01, show_default=True,
              help="Largest accuracy drop vs fp32 (0.01 = 1 point; with --relative, a fraction of fp32 accuracy).")
@click.option("--relative", is_flag=True, help="Read --max-drop as relative to the fp32 accuracy.")
@click.option("--objective", type=click.Choice(["latency", "bytes"]), default="latency", show_default=True)
@click.option("--prune-amount", "prune_amount", is_flag=True,
              help="Search the structured-pruning amount by bisection instead (uses [prune] criterion, scope, steps, fine-tune).")
@click.option("--drop-blocks", "drop_blocks", is_flag=True,
              help="Search how many whole blocks structured pruning may drop, by bisection ([prune] amount and schedule fixed).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<recipe name>).")
@click.option("--targets-dir", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
def search_cmd(recipe, target, max_drop, relative, objective, prune_amount, drop_blocks, out_dir, targets_dir, as_json):
    """Search int8 fp32-fallbacks (or, with --prune-amount, the largest structured-pruning
    amount; with --drop-blocks, the most blocks to drop) under an accuracy budget; writes candidates, a JSON report and Pareto plots
    (accuracy vs latency / bytes) under <run dir>/search/<target>/."""
    import contextlib

    from toolchain import steps
    from toolchain.build_target import int8_weights_apply
    from toolchain.cache import StageCache
    from toolchain.config.recipe import load_recipe
    from toolchain.config.target import load_target
    from toolchain.search import SearchBudget, search_drop_blocks, search_prune_amount, search_quantization
    from toolchain.stages.quantize import QuantizeConfig, calibration_subset

    if prune_amount and drop_blocks:
        from toolchain.errors import BadInput

        raise BadInput("--prune-amount and --drop-blocks search different knobs", "pass one of them per search")
    rec = load_recipe(recipe)
    profile = load_target(target, targets_dir)
    run_dir = out_dir or Path("runs") / rec.name
    budget = SearchBudget(max_drop=max_drop, drop_kind="relative" if relative else "absolute", objective=objective)
    with contextlib.redirect_stdout(sys.stderr):
        cache = StageCache(run_dir / "cache")
        data = steps.dataset(rec)
        trained = steps.train(cache, rec, data)
        if drop_blocks:
            report = search_drop_blocks(steps.load_model(rec, trained), data, budget, run_dir / "search" / "prune",
                                        prune_cfg=rec.prune.model_copy(update={"kind": "structured"}), train_cfg=rec.train)
        elif prune_amount:
            report = search_prune_amount(steps.load_model(rec, trained), data, budget, run_dir / "search" / "prune",
                                         prune_cfg=rec.prune.model_copy(update={"kind": "structured"}),
                                         train_cfg=rec.train)
        else:
            pruned = steps.prune(cache, rec, data, trained)
            onnx_entry = steps.export(cache, rec, data, pruned, label="export[pruned]")
            scheme = profile.quantize.model_copy(update=rec.quantize.scheme_overrides())
            calib = calibration_subset(data.x_train, QuantizeConfig(calibration_samples=rec.quantize.calibration_samples))
            report = search_quantization(steps.artifact_path(onnx_entry), calib, data.x_test, data.y_test, budget,
                                         run_dir / "search" / target, scheme=scheme,
                                         int8_weights=int8_weights_apply(profile))
    doc = report.to_dict()
    best = next(c for c in report.candidates if c.name == report.best)
    excluded = best.detail.get("excluded_nodes", [])
    if drop_blocks:
        doc["recipe_hint"] = {"prune": {"kind": "structured", "drop_blocks": best.detail.get("drop_blocks", 0)}}
    elif prune_amount:
        doc["recipe_hint"] = {"prune": {"kind": "structured", "amount": best.detail.get("amount")}}
    elif best.detail.get("fp32_compute"):  # not a recipe setting: the target's ship rule picks this form
        doc["recipe_hint"] = {"target_artifact": {"ship": "fastest"}}
    else:
        doc["recipe_hint"] = {"quantize": {"nodes_to_exclude": excluded if isinstance(excluded, list) else []}}
        if best.detail.get("stem_flipped"):
            doc["recipe_hint"]["quantize"]["fp32_stem"] = best.detail["fp32_stem"]
    if report.int8_slower_than_fp32:
        # stderr, so --json output stays one parseable document
        click.echo(f"warning: every int8 variant within budget is slower than fp32 on this machine (best "
                   f"{report.speedup_vs_fp32:.2f}x); consider [quantize] format = \"none\" for target '{target}'",
                   err=True)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))
    else:
        click.echo(f"search for {rec.name} on {target}: best '{report.best}' "
                   f"({'meets' if report.met else 'does NOT meet'} the budget: accuracy {100 * best.accuracy:.2f}% "
                   f">= {100 * report.min_accuracy:.2f}% needed; {best.bytes:,} bytes)")
        for step in report.reverted:
            click.echo(f"  reverted: {step}")
        click.echo(f"  report and plots: {run_dir / 'search' / ('prune' if prune_amount or drop_blocks else target)}")
        hint = doc["recipe_hint"]
        if drop_blocks:
            click.echo(f"  to use it: [prune] kind = \"structured\", drop_blocks = {hint['prune']['drop_blocks']}")
        elif prune_amount:
            click.echo(f"  to use it: [prune] kind = \"structured\", amount = {hint['prune']['amount']}")
        elif "target_artifact" in hint:
            click.echo(f"  to use it: nothing in the recipe; target '{target}' has [artifact] ship = \"fastest\", so "
                       "`edgeopt run` weighs this fp32-compute form with int8-stored weights too")
        else:
            if hint["quantize"]["nodes_to_exclude"]:
                click.echo(f"  to use it: [quantize] nodes_to_exclude = {json.dumps(excluded)}")
            if "fp32_stem" in hint["quantize"]:
                click.echo(f"  to use it: [quantize] fp32_stem = {json.dumps(hint['quantize']['fp32_stem'])}")
    sys.exit(EXIT_OK if report.met else EXIT_BUDGET_FAILED)


COMMANDS = [search_cmd]
