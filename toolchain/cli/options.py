"""Options and output rules every command shares, declared once.

One rule for stdout under `--json`: libraries may print progress, so while a command runs with
`--json` its stdout is redirected to stderr, and stdout carries exactly one JSON document, with
NaN and infinities written as null (bare `NaN` is not JSON).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from toolchain.executor import EXECUTORS  # standard library only: --help stays fast
from toolchain.fsio import json_text

PATH = click.Path(path_type=Path)
DIR = click.Path(path_type=Path, file_okay=False)  # a directory only: click refuses a file here

targets_dir_option = click.option(
    "--targets-dir", type=DIR, default=None,
    help="Extra directory of target profiles (*.toml); they shadow bundled ones of the same name.",
)
def golden_option(func):
    """`--golden synthetic|samples`, the choices and default of [package] golden (config/golden.py)."""
    import typing

    from toolchain.config.golden import DEFAULT_GOLDEN, GoldenSource

    return click.option(
        "--golden", type=click.Choice(typing.get_args(GoldenSource)), default=DEFAULT_GOLDEN, show_default=True,
        help="Golden smoke inputs in each package: synthetic (from per-channel statistics, no data rows) "
             "or samples (real samples: an opt-in the manifest records).")(func)


def executor_options(default: str | None):
    """`--executor`, `--workers` and `--ray-address`, shared by `edgeopt batch` and `edgeopt search`.
    `default` None: without --executor the command works in this process (the search's default)."""
    in_process = "" if default else " (default: in this process, one task at a time)"

    def decorate(func):
        func = click.option("--ray-address", default=None,
                            help="HOST:PORT of a running Ray head (default: start Ray locally).")(func)
        func = click.option("--workers", type=click.IntRange(min=1), default=None,
                            help="Local pool size (default: one per CPU; 1 runs in this process).")(func)
        return click.option(
            "--executor", type=click.Choice(EXECUTORS), default=default, show_default=default is not None,
            help="local: a process pool (one worker per CPU); ray: a Ray cluster (extra .[ray])" + in_process + ".",
        )(func)

    return decorate


cache_option = click.option(
    "--cache", "cache_dir", default=None,
    help="Stage cache (default <out>/cache): a directory shared between runs or nodes, or a URL (file://, "
    "or s3://, sftp://... with the extra .[fsspec]).",
)


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout instead of text.")


def emit_json(doc: Any) -> None:
    click.echo(json_text(doc))


def emit(doc: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """The command's result: one JSON document under --json, else its text rendering."""
    if as_json:
        emit_json(doc)
    else:
        click.echo(render(doc))


@contextlib.contextmanager
def json_mode(enabled: bool):
    """While a `--json` command works, anything printed goes to stderr."""
    if enabled:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    else:
        yield


# Where a crash log goes: the run directory of the command that crashed, once it is known, so
# nothing lands outside --out; before that, the system temp directory.
_log_dir: list[Path] = []


def log_into(out_dir: Path | None) -> None:
    """Called by commands with an --out once they know it."""
    _log_dir[:] = [Path(out_dir)] if out_dir is not None else []


def log_dir() -> Path | None:
    return _log_dir[0] if _log_dir else None


def _track_uri(ctx, param, value: str | None) -> str | None:
    """A mistyped URI is refused before the run starts, not after it ends."""
    if value is None:
        return None
    from toolchain.tracking import store, worker

    if value:
        store.resolve_uri(value)
    worker.start()
    return value


def track_options(func):
    """`--track [URI]` and `--track-required`, shared by the commands that log to MLflow."""
    func = click.option(
        "--track-required", is_flag=True,
        help="With --track: exit 2 when the tracking store cannot be used (default: warn and go on).",
    )(func)
    return click.option(
        "--track", is_flag=False, flag_value="", default=None, metavar="[URI]", callback=_track_uri,
        help="Log this run to MLflow: URI, else MLFLOW_TRACKING_URI, else sqlite:///<runs dir>/mlruns.db. "
        "Write --track=URI (or put it after the positional arguments) so it does not take one.",
    )(func)
