"""CLI command `drift`: a thin wrapper over toolchain.drift (docs/drift.md).

Exit codes: 0 no drift, 1 drift, 2 bad input (missing input, wrong shape, no drift reference).
"""

from __future__ import annotations

import sys

import click

from toolchain.cli.options import PATH, emit, json_mode, json_option
from toolchain.errors import EXIT_BUDGET_FAILED, EXIT_OK


@click.command("drift")
@click.argument("package", type=PATH)
@click.option("--data", "data", type=PATH, required=True,
              help="Live inputs: .npz with one array per model input name (single-input models: that name or `x`).")
@click.option("--budgets", "--thresholds", "budgets_file", type=PATH, default=None,
              help="Budgets file (schema_version = 1) whose [drift] table (psi, ks_pvalue) overrides the thresholds "
              "of the target profile recorded in PACKAGE (docs/drift.md).")
@click.option("--psi", type=click.FloatRange(0, min_open=True), default=None,
              help="A channel drifts at PSI >= this (overrides the profile and --budgets).")
@click.option("--ks-pvalue", "ks_pvalue", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Family-wise KS significance (overrides the profile and --budgets).")
@click.option("--markdown", "markdown_file", type=PATH, default=None, help="Write a Markdown summary here.")
@json_option
def drift_cmd(package, data, budgets_file, psi, ks_pvalue, markdown_file, as_json):
    """Compare live inputs (and the model's outputs on them) with PACKAGE's drift reference.

    Per input channel and output: PSI and the two-sample KS statistic. Thresholds: the target
    profile's [drift] recorded in PACKAGE, then --budgets FILE, then --psi/--ks-pvalue. Exit 0 no
    drift, 1 drift.
    """
    from toolchain.drift.compare import compare, resolve_thresholds
    from toolchain.drift.live import load_live, load_package, run_outputs
    from toolchain.drift.render import render_markdown, render_text
    from toolchain.fsio import write_text_atomic
    from toolchain.gating.budgets_file import load_drift_table

    overrides = [("budgets", load_drift_table(budgets_file))] if budgets_file else []
    overrides.append(("flag", {"psi": psi, "ks_pvalue": ks_pvalue}))
    manifest, reference, model = load_package(package)
    thresholds, sources = resolve_thresholds(manifest.target_profile, *overrides, source=str(package))
    inputs = load_live(data, manifest, reference)
    with json_mode(as_json):
        outputs, why_not = run_outputs(model, inputs, reference, manifest)
    doc = {"package": str(package), "data": str(data), **compare(reference, inputs, outputs, thresholds, why_not)}
    doc["thresholds"]["sources"] = sources
    if markdown_file:
        write_text_atomic(markdown_file, render_markdown(doc))
    emit(doc, as_json, render_text)
    sys.exit(EXIT_BUDGET_FAILED if doc["drift"] else EXIT_OK)


COMMANDS = [drift_cmd]
