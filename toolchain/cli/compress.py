"""CLI command `edgeopt compress`: a thin wrapper over toolchain.compress.run (docs/compress.md).
Exit codes as for `edgeopt run`: 0 every budget met, 1 a budget failed, 2 bad input, 3 a
verification (export or opset-upgrade parity) failed."""

from __future__ import annotations

import dataclasses
import sys

import click

from toolchain.cli.options import (
    PATH,
    emit,
    golden_option,
    json_mode,
    json_option,
    log_into,
    targets_dir_option,
    track_options,
)
from toolchain.errors import EXIT_BUDGET_FAILED, EXIT_OK

_path = PATH


@click.command("compress")
@click.argument("model")
@click.option(
    "--target", "targets", multiple=True, required=True, help="Target profile to build for (repeatable)."
)
@click.option(
    "--data",
    default=None,
    help="Calibration/evaluation data: .npz, .npy, .csv, module:function, or 'random'.",
)
@click.option(
    "--weights", type=_path, default=None, help="State dict for a module:factory MODEL (loaded weights_only)."
)
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    help="Fix an input's dynamic dims for calibration and benchmarking: NAME=D0,D1,... (-1 keeps one dynamic; repeatable).",
)
@click.option(
    "--input-range",
    "input_ranges",
    multiple=True,
    help="--data random: draw input NAME from [LO, HI): NAME=LO,HI (repeatable; ints default to [0, 10)).",
)
@click.option(
    "--output",
    "outputs",
    multiple=True,
    help="Evaluate only this output (repeatable; default: every output).",
)
@click.option("--label-column", default=None, help="CSV label column: header name or 0-based index.")
@click.option("--evaluator", default=None, help="module:function(outputs, y) -> float or dict of floats.")
@click.option(
    "--eval-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of the data held out for evaluation.",
)
@click.option("--calibration-samples", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--name", default=None, help="Artifact and package name (default: the model's file stem).")
@click.option("--out", "out_dir", type=_path, default=None, help="Run directory (default runs/<name>).")
@targets_dir_option
@click.option(
    "--trust-pt2", is_flag=True, help="Allow loading a .pt2 archive (torch.export.load unpickles it)."
)
@click.option("--rebench", is_flag=True, help="Measure again even if these exact artifacts were benchmarked.")
@click.option("--sign-key", type=_path, default=None, help="Ed25519 private key: sign each package.")
@golden_option
@json_option
@track_options
def compress_cmd(
    model,
    targets,
    data,
    weights,
    input_shapes,
    input_ranges,
    outputs,
    label_column,
    evaluator,
    eval_fraction,
    calibration_samples,
    name,
    out_dir,
    targets_dir,
    trust_pt2,
    rebench,
    sign_key,
    golden,
    as_json,
    track,
    track_required,
):
    """Compress your own MODEL (.onnx, torch.export .pt2, or module:factory + --weights) for targets.

    Runs the same per-target stages as `edgeopt run`: quantize, convert, benchmark, gate, package.
    """
    from toolchain.compress.run import CompressOptions, compress, compress_document, render_compress
    from toolchain.config.stages import PackageConfig
    from toolchain.tracking import track_run

    opts = CompressOptions(
        model=model,
        targets=tuple(targets),
        data=data,
        weights=weights,
        input_shapes=tuple(input_shapes),
        input_ranges=tuple(input_ranges),
        outputs=tuple(outputs),
        label_column=label_column,
        evaluator=evaluator,
        eval_fraction=eval_fraction,
        calibration_samples=calibration_samples,
        name=name,
        out_dir=out_dir,
        targets_dir=targets_dir,
        trust_pt2=trust_pt2,
        rebench=rebench,
        sign_key=sign_key,
        package=PackageConfig(golden=golden),
    )
    log_into(out_dir)
    with json_mode(as_json):
        result = compress(opts)
    doc = compress_document(result)  # built once: printed (--json) and tracked
    emit(doc, as_json, lambda _doc: render_compress(result))
    track_run(doc, result.out_dir, track, track_required,
              params={"options": dataclasses.asdict(opts)}, kind="compress")
    sys.exit(EXIT_OK if result.passed else EXIT_BUDGET_FAILED)


COMMANDS = [compress_cmd]
