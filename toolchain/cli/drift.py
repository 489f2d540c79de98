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
@click.option("--thresholds", "thresholds_file", type=PATH, default=None,
              help="TOML file with a [drift] table (psi, ks_pvalue) overriding the defaults (docs/drift.md).")
@click.option("--markdown", "markdown_file", type=PATH, default=None, help="Write a Markdown summary here.")
@json_option
def drift_cmd(package, data, thresholds_file, markdown_file, as_json):
    """Compare live inputs (and the model's outputs on them) with PACKAGE's drift reference.

    Per input channel and output: PSI and the two-sample KS statistic. Exit 0 no drift, 1 drift.
    """
    from toolchain.drift.compare import compare, load_thresholds
    from toolchain.drift.live import load_live, load_package, run_outputs
    from toolchain.drift.render import render_markdown, render_text
    from toolchain.fsio import write_text_atomic

    thresholds = load_thresholds(thresholds_file)
    manifest, reference, model = load_package(package)
    inputs = load_live(data, manifest)
    with json_mode(as_json):
        outputs = run_outputs(model, inputs, manifest)
    doc = {"package": str(package), "data": str(data), **compare(reference, inputs, outputs, thresholds)}
    if markdown_file:
        write_text_atomic(markdown_file, render_markdown(doc))
    emit(doc, as_json, render_text)
    sys.exit(EXIT_BUDGET_FAILED if doc["drift"] else EXIT_OK)


COMMANDS = [drift_cmd]
