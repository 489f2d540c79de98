"""Every CLI command, found by walking the click tree: a new command is checked without edits.

The bad-input invocation is derived from the command's own click params: a path that does not
exist for each path-typed parameter, a nonsense value for required free-text ones, the first
choice of a Choice and a valid number for a required number. Whatever the command, that must
be one line on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from toolchain.cli.main import cli, main


def walk(cmd: click.Command, path: tuple[str, ...] = ()):
    """(command path, command) for the group and every command under it, groups recursively."""
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from walk(cmd.commands[name], (*path, name))


COMMANDS = [(path, cmd) for path, cmd in walk(cli) if path]
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not isinstance(cmd, click.Group)]
_ids = [" ".join(path) for path, _ in COMMANDS]
_leaf_ids = [" ".join(path) for path, _ in LEAVES]


def _value(param: click.Parameter, path_value: str) -> str | None:
    """A value for `param` in the bad-input invocation, or None to leave it out."""
    kind = param.type
    if isinstance(kind, click.Path):
        return path_value
    if isinstance(param, click.Option) and param.is_flag:
        return None
    if not param.required:
        return None
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
        low = getattr(kind, "min", None)
        return str(low + 1 if low is not None else 1)
    return "no-such-thing-42"


def bad_invocation(path: tuple[str, ...], cmd: click.Command, path_value: str) -> list[str]:
    """argv for `cmd` with every path-typed param set to `path_value` (see the module doc)."""
    args, options = [], []
    for param in cmd.params:
        value = _value(param, path_value)
        if value is None:
            continue
        if isinstance(param, click.Argument):
            args.append(value)
        else:
            options += [param.opts[0], value]
    return [*path, *args, *options]


def has_json(cmd: click.Command) -> bool:
    return any(isinstance(p, click.Option) and "--json" in p.opts for p in cmd.params)


def _run(argv: list[str]) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main(argv)
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_the_walk_finds_nested_commands():
    found = set(_ids)
    assert {"run", "targets show", "baseline save", "verify"} <= found
    assert len(LEAVES) >= 15  # 15 leaf commands when this test was written; fewer means the walk broke


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=_ids)
def test_help_exits_0(path, cmd):
    code, out, _ = _run([*path, "--help"])
    assert code == 0
    assert out.startswith("Usage: ")


def test_help_of_every_command_loads_neither_torch_nor_onnxruntime_nor_mlflow():
    probe = f"""
import sys
from toolchain.cli.main import main
codes = [main([*path, "--help"]) for path in {[list(p) for p, _ in COMMANDS]!r}]
print(sum(codes), sorted(m for m in ("torch", "onnxruntime", "mlflow") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "0 []"  # every --help exited 0; none of the three loaded


def _check_bad_input(argv, cmd, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = sorted(tmp_path.rglob("*"))
    for as_json in (False, True) if has_json(cmd) else (False,):
        code, out, err = _run(argv + (["--json"] if as_json else []))
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert "Traceback" not in err
        if as_json and out.strip():
            json.loads(out)  # one valid document, or nothing
        elif not as_json:
            assert out == ""
        assert sorted(tmp_path.rglob("*")) == before, argv  # nothing written, here or at the paths
    return err


@pytest.mark.parametrize("path, cmd", LEAVES, ids=_leaf_ids)
def test_bad_input_is_one_line_exit_2_nothing_written(path, cmd, tmp_path, monkeypatch):
    missing = str(tmp_path / "absent" / "nothing-here.bin")
    _check_bad_input(bad_invocation(path, cmd, missing), cmd, tmp_path, monkeypatch)


def _dir_only(param: click.Parameter) -> bool:
    return isinstance(param.type, click.Path) and not param.type.file_okay


# Commands with a path parameter that may name a file (not declared click.Path(file_okay=False)).
FILE_TAKERS = [(p, c) for p, c in LEAVES if any(isinstance(q.type, click.Path) and not _dir_only(q) for q in c.params)]


@pytest.mark.parametrize("path, cmd", FILE_TAKERS, ids=[" ".join(p) for p, _ in FILE_TAKERS])
def test_a_directory_where_a_file_belongs_is_named_as_such(path, cmd, tmp_path, monkeypatch):
    """Each file-or-directory path param an empty directory: a file reader must say "directory",
    never "not found"; commands that take a directory (a run dir, --out) find nothing usable in
    an empty one. Optional directory-only params (--targets-dir) are left out."""
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    argv = bad_invocation(path, cmd, str(empty))
    for param in cmd.params:
        if _dir_only(param) and not param.required and param.opts[0] in argv:
            at = argv.index(param.opts[0])
            del argv[at:at + 2]
    err = _check_bad_input(argv, cmd, tmp_path, monkeypatch)
    assert "not found" not in err.lower() and "no such file" not in err.lower(), err


@pytest.mark.parametrize("path, cmd", COMMANDS, ids=_ids)
def test_a_usage_error_is_one_line_exit_2(path, cmd, tmp_path, monkeypatch):
    err = _check_bad_input([*path, "--no-such-option-42"], click.Command("none"), tmp_path, monkeypatch)
    assert "--no-such-option-42" in err and "--help" in err
