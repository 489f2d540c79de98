"""CLI commands `gate` and `baseline save`: thin wrappers over toolchain.gating.

Exit codes: 0 every budget met, 1 a budget failed (reports are still written), 2 bad input.
"""

from __future__ import annotations

import sys

import click

from toolchain.cli.options import PATH, emit, json_option, targets_dir_option
from toolchain.errors import EXIT_BUDGET_FAILED, EXIT_OK

_path = PATH


@click.command("gate")
@click.argument("path", type=_path)
@click.option("--target", "targets", multiple=True,
              help="Target to gate (repeatable). Default: every target of the run that the budgets file names.")
@click.option("--budgets", "budgets_file", type=_path, required=True, help="TOML budgets file (docs/gating.md).")
@click.option("--baseline", "baseline_file", type=_path, default=None, help="JSON from `edgeopt baseline save`.")
@click.option("--junit", type=_path, default=None, help="Write JUnit XML here.")
@click.option("--markdown", "markdown_file", type=_path, default=None, help="Write a Markdown summary here.")
@json_option
@click.option("--max-seconds", type=click.FloatRange(min=1.0), default=None,
              help="Cap on latency measurement per target, seconds (default 20).")
@click.option("--on-straddle", type=click.Choice(["recheck", "pass", "fail", "estimate"]), default="recheck",
              show_default=True, help="Verdict when a latency interval still straddles its limit at the cap "
              "(recheck: decide on an 80% interval, pass if it still straddles; docs/gating.md).")
@targets_dir_option
def gate_cmd(path, targets, budgets_file, baseline_file, junit, markdown_file, as_json, max_seconds, on_straddle,
             targets_dir):
    """Gate PATH (a run directory, a .onnx/.ort artifact or a package .zip) on budgets.

    Latency is measured in interleaved rounds until its confidence interval clears the limit.
    """
    from dataclasses import replace

    from toolchain.fsio import write_text_atomic
    from toolchain.gating import gate_run
    from toolchain.gating.baseline import load_baseline
    from toolchain.gating.budgets_file import load_budgets
    from toolchain.gating.gate_run import GateInputs, gate_path
    from toolchain.gating.junit import junit_xml
    from toolchain.gating.markdown import markdown
    from toolchain.gating.render import render_text

    inputs = GateInputs(budgets=load_budgets(budgets_file, targets_dir), budgets_source=str(budgets_file),
                        targets=tuple(targets), targets_dir=targets_dir,
                        baseline=load_baseline(baseline_file) if baseline_file else None, baseline_file=baseline_file)
    spec = replace(gate_run.DEFAULT_SPEC, straddle=on_straddle)
    inputs = replace(inputs, spec=replace(spec, max_seconds=max_seconds) if max_seconds is not None else spec)
    doc = gate_path(path, inputs)
    if junit:
        write_text_atomic(junit, junit_xml(doc))
    if markdown_file:
        write_text_atomic(markdown_file, markdown(doc))
    emit(doc, as_json, render_text)
    sys.exit(EXIT_OK if doc["passed"] else EXIT_BUDGET_FAILED)


@click.group("baseline")
def baseline_group():
    """Record what a later `edgeopt gate --baseline` compares against."""


@baseline_group.command("save")
@click.argument("path", type=_path)
@click.option("--target", required=True, help="Target profile (runtime options) to measure with.")
@click.option("--out", "out", type=_path, required=True, help="Baseline JSON file to write.")
@click.option("--copy-artifact", is_flag=True,
              help="Copy the artifact beside OUT so later gates can time old against new.")
@targets_dir_option
def baseline_save_cmd(path, target, out, copy_artifact, targets_dir):
    """Measure PATH (run directory, artifact or package) and write a baseline JSON."""
    from toolchain.gating.baseline_save import save_baseline

    b = save_baseline(path, target, out, targets_dir=targets_dir, copy_artifact=copy_artifact)
    m = b.metrics
    ratio = f", {b.fp32_ratio.p50.value:.3f}x fp32 p50" if b.fp32_ratio else ""
    click.echo(f"{out}: {target} {m.bytes:,} bytes, p50 {m.p50_ms.value:.4g} ms "
               f"[{m.p50_ms.ci_low:.4g}, {m.p50_ms.ci_high:.4g}]{ratio}")


COMMANDS = [gate_cmd, baseline_group]
