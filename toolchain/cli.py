"""Command line: parse, call the library, render. Heavy imports happen inside commands so that
`edgeopt --help` is instant (a test asserts that importing this module loads neither torch nor
onnxruntime). Error classes map to exit codes in one place: `main()`.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from toolchain import __version__
from toolchain.cli_bench_remote import bench_remote, remote_options
from toolchain.errors import EXIT_BAD_INPUT, EXIT_BUDGET_FAILED, EXIT_OK, EdgeoptError

_targets_dir = click.option(
    "--targets-dir", type=click.Path(path_type=Path), default=None,
    help="Extra directory of target profiles (*.toml); they shadow bundled ones of the same name.",
)


@contextlib.contextmanager
def _quiet_stdout(enabled: bool):
    """Libraries print progress to stdout; with --json, stdout carries only the document."""
    if enabled:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    else:
        yield


def _emit_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeopt")
def cli() -> None:
    """edgeopt: PyTorch models to small, fast, verified edge artifacts.

    Exit codes: 0 every budget met / check passed, 1 a budget or verification failed,
    2 bad input or usage, 3 a pipeline verification failed (e.g. export parity).
    """


@cli.command()
@click.argument("recipe", required=False, type=click.Path(path_type=Path))
@click.option("--target", "targets", multiple=True, help="Build only this target (repeatable). Default: the recipe's.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<recipe name>).")
@_targets_dir
@click.option("--rebench", is_flag=True, help="Measure again even if these exact artifacts were benchmarked on this host.")
@click.option("--sign-key", type=click.Path(path_type=Path), default=None, help="Ed25519 private key: sign each package.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout instead of tables.")
def run(recipe, targets, out_dir, targets_dir, rebench, sign_key, as_json):
    """Train, prune, export, quantize, convert, benchmark, gate and package.

    With no RECIPE, runs the embedded default: a small CNN on scikit-learn's digits, for the
    cpu-server and arm-mobile targets.
    """
    from toolchain.config.recipe import load_recipe
    from toolchain.pipeline import RunOptions, run_pipeline
    from toolchain.report import render_run, run_document

    rec = load_recipe(recipe)
    opts = RunOptions(out_dir=out_dir or Path("runs") / rec.name, targets=tuple(targets),
                      targets_dir=targets_dir, rebench=rebench, sign_key=sign_key)
    with _quiet_stdout(as_json):
        result = run_pipeline(rec, opts)
    if as_json:
        _emit_json(run_document(result))
    else:
        click.echo(render_run(result))
    sys.exit(EXIT_OK if result.passed else EXIT_BUDGET_FAILED)


@cli.group(invoke_without_command=True)
@_targets_dir
@click.pass_context
def targets(ctx, targets_dir):
    """List target profiles (bundled and from --targets-dir)."""
    ctx.obj = {"targets_dir": targets_dir}
    if ctx.invoked_subcommand is None:
        from toolchain.config.target import available_targets, load_target_file

        for name, path in available_targets(targets_dir).items():
            profile = load_target_file(path)
            click.echo(f"{name:<20} {profile.platform:<6} .{profile.artifact.format:<5} {profile.description}")


@targets.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def targets_show(ctx, name, as_json):
    """Print one profile with every value; each line says whether the file set it or the
    schema default applies."""
    from toolchain.config.target import available_targets, load_target, value_sources

    profile = load_target(name, ctx.obj["targets_dir"])
    sources = value_sources(profile)
    if as_json:
        _emit_json({"profile": profile.model_dump(mode="json"), "sources": sources,
                    "file": str(available_targets(ctx.obj["targets_dir"])[name])})
        return
    click.echo(f"# {name}: {available_targets(ctx.obj['targets_dir'])[name]}")
    flat = {}
    for key in sources:
        value = profile
        for part in key.split("."):
            value = getattr(value, part)
        flat[key] = value
    width = max(len(k) for k in flat)
    for key, value in flat.items():
        click.echo(f"{key:<{width}} = {json.dumps(value)!s:<24} # {sources[key]}")


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Target profile whose runtime options and batch sizes to use.")
@_targets_dir
@click.option("--json", "as_json", is_flag=True)
@remote_options
def bench(artifact, target, targets_dir, as_json, remote, remote_python, ssh_key, known_hosts, strict_host_key_checking):
    """Benchmark one .onnx/.ort file: bytes, latency percentiles, peak memory (random inputs).

    With --remote ssh://[user@]host[:port], measure on that device with its own onnxruntime.
    """
    from toolchain.bench.standalone import bench_file, render_bench
    from toolchain.config.target import load_target

    profile = load_target(target, targets_dir)
    with _quiet_stdout(as_json):
        if remote:
            doc = bench_remote(artifact, profile, remote, python=remote_python, ssh_key=ssh_key,
                               known_hosts=known_hosts, strict_host_key_checking=strict_host_key_checking)
        else:
            doc = bench_file(artifact, profile)
    if as_json:
        _emit_json(doc)
    else:
        click.echo(render_bench(doc))


def _register() -> None:
    from toolchain.cli_arm import verify_arm_cmd
    from toolchain.cli_compress import COMMANDS as COMPRESS_COMMANDS
    from toolchain.cli_gate import COMMANDS as GATE_COMMANDS
    from toolchain.cli_mobile import COMMANDS as MOBILE_COMMANDS
    from toolchain.cli_package import COMMANDS as PACKAGE_COMMANDS
    from toolchain.cli_search import COMMANDS as SEARCH_COMMANDS

    for command in [*PACKAGE_COMMANDS, *COMPRESS_COMMANDS, *GATE_COMMANDS, *MOBILE_COMMANDS, *SEARCH_COMMANDS,
                    verify_arm_cmd]:
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edgeopt", standalone_mode=False)
    except EdgeoptError as err:
        click.echo(f"edgeopt: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as err:
        err.show()
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        click.echo("edgeopt: aborted", err=True)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
