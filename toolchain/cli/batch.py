"""`edgeopt batch`: many recipes and user models x several targets, as tasks on a process pool
or a Ray cluster, with one exit code for the whole batch (docs/batch.md)."""

from __future__ import annotations

import sys

import click

from toolchain.cli.options import (
    PATH,
    cache_option,
    emit,
    executor_options,
    json_mode,
    json_option,
    log_into,
    targets_dir_option,
)
from toolchain.errors import EXIT_BUDGET_FAILED, EXIT_OK


def _targets(ctx, param, value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())


@click.command("batch")
@click.argument("specs", nargs=-1, required=True, type=click.Path())
@click.option(
    "--targets", "targets", required=True, callback=_targets, help="Comma-separated target names: T1,T2."
)
@click.option(
    "--out", "out_dir", type=PATH, required=True, help="Batch directory: runs/, cache/, batch.json."
)
@executor_options(default="local")
@cache_option
@click.option(
    "--gate",
    "gate",
    type=PATH,
    default=None,
    help="Budgets TOML (docs/gating.md) judging every run: exit 1 if any fails.",
)
@click.option("--junit", type=PATH, default=None, help="Write every run's budgets as JUnit XML here.")
@click.option("--rebench", is_flag=True, help="Measure again even where this host's benchmark is cached.")
@targets_dir_option
@json_option
def batch_cmd(
    specs,
    targets,
    out_dir,
    executor,
    workers,
    ray_address,
    cache_dir,
    gate,
    junit,
    rebench,
    targets_dir,
    as_json,
):
    """Run every SPEC for every target: SPEC is a recipe file, MODEL.onnx@DATA.npz, or a TOML
    listing them (`specs = [...]`).

    Exit 0 every budget met, 1 a budget failed, 2 bad input (bad SPECs are all named before any work).
    """
    from toolchain.batch.run import BatchOptions, junit_document, render_summary, run_batch
    from toolchain.batch.spec import parse_specs
    from toolchain.fsio import write_text_atomic
    from toolchain.gating.junit import junit_xml

    parsed = parse_specs(specs)
    opts = BatchOptions(
        out_dir=out_dir,
        targets=targets,
        targets_dir=targets_dir,
        executor=executor,
        workers=workers,
        ray_address=ray_address,
        cache_dir=cache_dir,
        rebench=rebench,
        gate=gate,
    )
    log_into(out_dir)
    with json_mode(as_json):
        doc = run_batch(parsed, opts)
    if junit:
        write_text_atomic(junit, junit_xml(junit_document(doc)))
    emit(doc, as_json, render_summary)
    sys.exit(EXIT_OK if doc["passed"] else EXIT_BUDGET_FAILED)


COMMANDS = [batch_cmd]
