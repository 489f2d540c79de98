"""`edgeopt run`: the whole pipeline on a recipe (default: the embedded digits CNN)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from toolchain.cli.options import (
    PATH,
    cache_option,
    emit_json,
    json_mode,
    json_option,
    log_into,
    targets_dir_option,
    track_options,
)
from toolchain.errors import EXIT_BUDGET_FAILED, EXIT_OK


@click.command()
@click.argument("recipe", required=False, type=PATH)
@click.option("--target", "targets", multiple=True, help="Build only this target (repeatable). Default: the recipe's.")
@click.option("--out", "out_dir", type=PATH, default=None, help="Run directory (default runs/<recipe name>).")
@targets_dir_option
@click.option("--rebench", is_flag=True, help="Measure again even if these exact artifacts were benchmarked on this host.")
@click.option("--sign-key", type=PATH, default=None, help="Ed25519 private key: sign each package.")
@cache_option
@json_option
@track_options
def run(recipe, targets, out_dir, targets_dir, rebench, sign_key, cache_dir, as_json, track, track_required):
    """Train, prune, export, quantize, convert, benchmark, gate and package.

    With no RECIPE, runs the embedded default: a small CNN on scikit-learn's digits, for the
    cpu-server and arm-mobile targets.
    """
    from toolchain.config.recipe import load_recipe
    from toolchain.pipeline.report import render_run, run_document
    from toolchain.pipeline.run import RunOptions, run_pipeline
    from toolchain.pipeline.store import STAGING
    from toolchain.tracking import track_run

    rec = load_recipe(recipe)
    out_dir = out_dir or Path("runs") / rec.name
    opts = RunOptions(out_dir=out_dir, targets=tuple(targets), targets_dir=targets_dir, rebench=rebench,
                      sign_key=sign_key, cache_dir=cache_dir, cache_staging=Path(out_dir) / STAGING)
    log_into(opts.out_dir)
    with json_mode(as_json):
        result = run_pipeline(rec, opts)
    if as_json:
        emit_json(run_document(result))
    else:
        click.echo(render_run(result))
    track_run(run_document(result), opts.out_dir, track, track_required, params={"recipe": rec.model_dump(mode="json")})
    sys.exit(EXIT_OK if result.passed else EXIT_BUDGET_FAILED)


COMMANDS = [run]
