"""`edgeopt search`: the best int8 artifact within an accuracy budget, per target.

Thin wrapper: the recipe's train/prune/export stages come from the run's cache (same keys as
`edgeopt run`), then toolchain.search falls back the most harmful parts of the graph to fp32
until the budget holds. Exit 0 budget met, 1 only a best-effort artifact was found, 2 bad input.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from toolchain.cli.options import (
    cache_option,
    emit_json,
    executor_options,
    json_mode,
    json_option,
    targets_dir_option,
    track_options,
)
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
@click.option("--iterations", type=click.IntRange(1, 20), default=None,
              help="Candidates a bisection may try after the largest one (default 4); each halves the interval.")
@click.option("--sweep", type=click.IntRange(2, 64), default=None,
              help="Instead of bisecting, try N evenly spaced amounts (or block counts) as independent "
                   "candidates, built in parallel on --executor; keeps the best that meets the budget.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<recipe name>).")
@executor_options(default=None)
@cache_option
@targets_dir_option
@json_option
@track_options
def search_cmd(recipe, target, max_drop, relative, objective, prune_amount, drop_blocks, iterations, sweep, out_dir, executor,
               workers, ray_address, cache_dir, targets_dir, as_json, track, track_required):
    """Search int8 fp32-fallbacks (or, with --prune-amount, the largest structured-pruning
    amount; with --drop-blocks, the most blocks to drop; by bisection, or --sweep N points) under an
    accuracy budget; writes candidates, a JSON report and Pareto plots
    (accuracy vs latency / bytes) under <run dir>/search/<target>/. With --track, one MLflow run
    per search with a nested run per candidate (docs/tracking.md). With --executor, the
    search builds and scores its candidates as parallel tasks (the quantization search: the same
    candidates and choice as without; a bisection: as with --workers 1, whose torch also runs one
    thread; latency is still timed here, one candidate at a time; docs/search.md)."""
    from toolchain.config.recipe import load_recipe
    from toolchain.config.target import load_target
    from toolchain.errors import BadInput
    from toolchain.search import SearchBudget
    from toolchain.search.session import render_search, run_search, slower_int8_warning
    from toolchain.tracking.search import track_search

    if prune_amount and drop_blocks:
        raise BadInput("--prune-amount and --drop-blocks search different knobs", "pass one of them per search")
    if iterations is not None and not (prune_amount or drop_blocks):
        raise BadInput("--iterations counts the steps of a bisection", "add --prune-amount or --drop-blocks, or drop it")
    if sweep is not None and not (prune_amount or drop_blocks):
        raise BadInput("--sweep tries evenly spaced pruning amounts or block counts", "add --prune-amount or --drop-blocks")
    if sweep is not None and iterations is not None:
        raise BadInput("--iterations counts a bisection's steps; --sweep replaces the bisection", "pass one of them")
    rec = load_recipe(recipe)
    profile = load_target(target, targets_dir)
    budget = SearchBudget(max_drop=max_drop, drop_kind="relative" if relative else "absolute", objective=objective)
    knob = "drop_blocks" if drop_blocks else "prune_amount" if prune_amount else "quantization"
    run_dir = out_dir or Path("runs") / rec.name
    if (workers or ray_address) and executor is None:
        raise BadInput("--workers and --ray-address choose where --executor runs tasks",
                       "add --executor local (with --workers) or --executor ray (with --ray-address)")
    with json_mode(True), search_executor(executor, workers, ray_address) as pool:  # stdout holds the result only
        outcome = run_search(rec, profile, target, run_dir, budget, knob, executor=pool, cache_dir=cache_dir,
                             iterations=iterations, sweep=sweep)
    warning = slower_int8_warning(outcome)
    if warning:
        click.echo(warning, err=True)
    if as_json:
        emit_json(outcome.document)
    else:
        click.echo(render_search(outcome, rec.name))
    track_search(outcome.document, run_dir, outcome.out_dir, track, track_required, recipe=rec.model_dump(mode="json"),
                 recipe_hash=rec.content_hash(), target=target, knob=knob)
    sys.exit(EXIT_OK if outcome.report.met else EXIT_BUDGET_FAILED)


@contextlib.contextmanager
def search_executor(name: str | None, workers: int | None, ray_address: str | None):
    """The executor the search's tasks run on (None: in this process), closed afterwards. A
    Ray address that does not answer is refused here, before any work."""
    if name is None:
        yield None
        return
    from toolchain.executor import make_executor

    pool = make_executor(name, workers, ray_address)
    try:
        yield pool
    finally:
        pool.close()


COMMANDS = [search_cmd]
