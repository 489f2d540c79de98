"""`edgeopt batch` bad input: named up front, one line, exit 2, nothing written, no work."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from batch_fixtures import subprocess_env, tiny_recipe
from click.testing import CliRunner
from conftest import require_extra

from toolchain.batch.spec import CompressSpec, RecipeSpec, parse_specs
from toolchain.cli.main import main
from toolchain.errors import BadInput


def _run(argv: list[str]) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main(argv)
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_bad_specs_are_all_named_before_any_work(tmp_path):
    good = tiny_recipe("tabular-mlp", tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("schema_version = 1\nname = 'x'\n[train]\nepochz = 3\n")
    out = tmp_path / "out"
    code, stdout, err = _run(
        [
            "batch",
            str(good),
            str(tmp_path / "absent.toml"),
            str(broken),
            f"{tmp_path}/m.onnx@{tmp_path}/d.npz",
            "--targets",
            "cpu-server",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1
    assert "3 bad SPEC(s)" in err and "absent.toml" in err and "epochz" in err and "m.onnx" in err
    assert str(good) not in err
    assert not out.exists()


def test_a_spec_list_expands_relative_to_its_file(tmp_path):
    (tmp_path / "sub").mkdir()
    tiny_recipe("tabular-mlp", tmp_path / "sub")
    (tmp_path / "sub" / "m.onnx").write_bytes(b"not parsed yet")
    (tmp_path / "sub" / "d.npz").write_bytes(b"")
    listing = tmp_path / "batch.toml"
    listing.write_text('schema_version = 1\nspecs = ["sub/tabular-mlp.toml", "sub/m.onnx@sub/d.npz"]\n')
    specs = parse_specs([str(listing)])
    assert [type(s) for s in specs] == [RecipeSpec, CompressSpec]
    assert [s.name for s in specs] == ["tabular-mlp", "m"]
    assert specs[1].model == tmp_path / "sub" / "m.onnx"
    with pytest.raises(BadInput, match="both named 'tabular-mlp'"):
        parse_specs([str(listing), str(tmp_path / "sub" / "tabular-mlp.toml")])
    listing.write_text('schema_version = 1\nspecs = ["sub/tabular-mlp.toml"]\nextra = 1\n')
    with pytest.raises(BadInput, match="unknown key 'extra'"):
        parse_specs([str(listing)])


def test_unknown_target_and_unwritable_cache_are_refused_before_work(tmp_path):
    good = tiny_recipe("tabular-mlp", tmp_path)
    code, _, err = _run(
        ["batch", str(good), "--targets", "cpu-server,no-such-target", "--out", str(tmp_path / "o")]
    )
    assert code == 2 and "no-such-target" in err and not (tmp_path / "o").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = _run(
        [
            "batch",
            str(good),
            "--targets",
            "cpu-server",
            "--out",
            str(tmp_path / "o2"),
            "--cache",
            str(blocker / "cache"),
        ]
    )
    assert code == 2 and err.count("\n") == 1
    assert f"cache directory {blocker / 'cache'} is not writable ({blocker} is not a directory)" in err
    assert not (tmp_path / "o2").exists()


def test_a_ray_address_that_does_not_answer_is_exit_2_in_one_line_quickly(tmp_path):
    require_extra("ray", "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    good = tiny_recipe("tabular-mlp", tmp_path)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolchain.cli",
            "batch",
            str(good),
            "--targets",
            "cpu-server",
            "--out",
            str(tmp_path / "o"),
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 30
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"no Ray cluster answers at 127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "o").exists()
