"""The `edgeopt` group, its command registry and the one place errors become exit codes.

Heavy imports happen inside commands so that `edgeopt --help` is instant (a test asserts that
importing this package loads neither torch nor onnxruntime).
"""

from __future__ import annotations

import errno
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from toolchain import __version__
from toolchain.cli import (
    arm,
    batch,
    bench,
    compress,
    drift,
    gate,
    mobile,
    package,
    registry,
    run,
    search,
    targets,
)
from toolchain.cli.options import log_dir, log_into
from toolchain.errors import EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR, EXIT_OK, EdgeoptError

# A new command group is one module with a COMMANDS list plus one entry here.
COMMAND_MODULES = (run, compress, batch, targets, bench, gate, package, mobile, search, arm, registry, drift)

# Faults of the machine or of the paths a user gave, not of edgeopt: exit 2 naming the path.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT,
                       errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeopt")
def cli() -> None:
    """edgeopt: PyTorch and ONNX models to small, fast, verified edge artifacts.

    Exit codes: 0 every budget met / check passed, 1 a budget or verification failed,
    2 bad input, usage or an environment fault (disk full, unwritable path),
    3 a pipeline verification failed or an internal error (one line plus a log path).
    """


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def crash_log(exc: BaseException) -> Path:
    """Write the traceback where the user can attach it to a bug report; return the path."""
    out_dir = log_dir()
    directory = out_dir / "logs" if out_dir is not None else Path(tempfile.gettempdir()) / "edgeopt-logs"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{id(exc):x}.log"
    path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path


# A path that is not there, or is a folder where a file belongs: the path is wrong, not the disk.
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def _environment_fault(err: OSError) -> str:
    where = f" at {err.filename}" if err.filename else ""
    fix = "check the path" if err.errno in _PATH_ERRNOS else "free space or choose a writable path (--out), then run again"
    return f"edgeopt: error: {err.strerror or err}{where}; {fix}"


def main(argv: list[str] | None = None) -> int:
    log_into(None)  # a crash log belongs to this invocation's --out, not an earlier one's in this process
    try:
        return _run(argv)
    finally:
        worker = sys.modules.get("toolchain.tracking.worker")  # loaded only by --track
        if worker is not None:
            worker.stop()  # a tracking worker this command started and did not use


def _run(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="edgeopt", standalone_mode=False)
    except EdgeoptError as err:
        click.echo(f"edgeopt: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as err:  # one line like every bad input; click's own show() prints four
        hint = f"; see `{err.ctx.command_path} --help`" if err.ctx is not None else ""
        message = "; ".join(line.strip() for line in err.format_message().splitlines() if line.strip())
        click.echo(f"edgeopt: error: {message.rstrip('.')}{hint}", err=True)
        return EXIT_BAD_INPUT
    except click.ClickException as err:
        err.show()
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        click.echo("edgeopt: aborted", err=True)
        return 130
    except SystemExit as exc:
        return int(exc.code or 0)
    except OSError as err:
        if err.errno in _ENVIRONMENT_ERRNOS:
            click.echo(_environment_fault(err), err=True)
            return EXIT_BAD_INPUT
        return _internal(err)
    except Exception as err:  # noqa: BLE001 - the last resort: never a traceback, never exit 1
        return _internal(err)
    return EXIT_OK


def _internal(err: BaseException) -> int:
    try:
        where = f"; traceback in {crash_log(err)}"
    except OSError:
        where = ""
    first = str(err).splitlines()[0] if str(err) else ""
    click.echo(f"edgeopt: internal error: {type(err).__name__}: {first}{where}; please report it", err=True)
    return EXIT_INTERNAL_ERROR
