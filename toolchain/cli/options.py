"""Options and output rules every command shares, declared once.

One rule for stdout under `--json`: libraries may print progress, so while a command runs with
`--json` its stdout is redirected to stderr, and stdout carries exactly one JSON document, with
NaN and infinities written as null (bare `NaN` is not JSON).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from toolchain.fsio import json_text

PATH = click.Path(path_type=Path)
DIR = click.Path(path_type=Path, file_okay=False)  # a directory only: click refuses a file here

targets_dir_option = click.option(
    "--targets-dir", type=DIR, default=None,
    help="Extra directory of target profiles (*.toml); they shadow bundled ones of the same name.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document to stdout instead of text.")


def emit_json(doc: Any) -> None:
    click.echo(json_text(doc))


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
