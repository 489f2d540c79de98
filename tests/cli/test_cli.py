"""The CLI through click's runner and `main()`: exit codes, one-line errors, lean imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolchain.cli import cli, main


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_imports_no_torch_onnxruntime_or_openvino():
    probe = "import sys, toolchain.cli; print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'numpy', 'openvino') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    helped = subprocess.run([sys.executable, "-m", "toolchain.cli", "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0 and "run" in helped.stdout and "Exit codes" in helped.stdout


def test_targets_lists_bundled_and_user_profiles(tmp_path, fast_targets_dir):
    result = CliRunner().invoke(cli, ["targets"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"cpu-server", "arm-mobile"} <= set(names)
    (tmp_path / "my-phone.toml").write_text((fast_targets_dir / "arm-mobile.toml").read_text().replace('"arm-mobile"', '"my-phone"'))
    result = CliRunner().invoke(cli, ["targets", "--targets-dir", str(tmp_path)])
    assert "my-phone" in result.output


def test_targets_show_prints_every_value_as_json():
    result = CliRunner().invoke(cli, ["targets", "show", "arm-mobile", "--json"])
    doc = json.loads(result.output)
    assert doc["sources"]["artifact.offline_optimization_level"] == "default"
    assert doc["sources"]["artifact.format"] == "file"
    doc = doc["profile"]
    assert doc["artifact"] == {"format": "ort", "shapes": "fixed", "fixed_batch": 1, "offline_optimization_level": "extended",
                               "compact": True, "ship": "quantized", "ship_tie": 0.05, "scheme_candidates": []}
    assert doc["benchmark"]["thread_sweep"] == []  # timing an ARM artifact's threads on x86 says nothing
    assert doc["runtime"]["enable_cpu_mem_arena"] is True  # measured lower peak on int8 (targets/arm-mobile.toml)


BAD_INPUTS = [
    (["run", "missing.toml"], "recipe file not found"),
    (["run", "{tmp}/malformed.toml"], "malformed TOML"),
    (["run", "{tmp}/unknown_key.toml"], "unknown key 'train.epochz'"),
    (["run", "{tmp}/wrong_type.toml"], "bad value for 'train.epochs'"),
    (["run", "{tmp}/unknown_model.toml"], "unknown model 'resnet9000'; use a zoo name"),
    (["run", "--target", "arm"], "unknown target 'arm'; known:"),
    (["run", "{tmp}/bad_budget_target.toml"], "[budgets.phone] names no target of this run"),
    (["bench", "{tmp}/corrupt.onnx", "--target", "cpu-server"], "cannot load corrupt.onnx"),
    (["bench", "{tmp}/absent.onnx", "--target", "cpu-server"], "model file not found"),
    (["bench", "{tmp}/corrupt.onnx", "--target", "nope"], "unknown target 'nope'"),
    (["targets", "show", "nope"], "unknown target 'nope'"),
    (["search", "--target", "cpu-server", "--prune-amount", "--drop-blocks"], "--prune-amount and --drop-blocks"),
]


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "malformed.toml").write_text("schema_version = 1\n[train\n")
    (tmp_path / "unknown_key.toml").write_text("schema_version = 1\n[train]\nepochz = 1\n")
    (tmp_path / "wrong_type.toml").write_text("schema_version = 1\n[train]\nepochs = 'many'\n")
    (tmp_path / "unknown_model.toml").write_text("schema_version = 1\n[model]\nname = 'resnet9000'\n")
    (tmp_path / "bad_budget_target.toml").write_text("schema_version = 1\n[budgets.phone]\nmax_bytes = 1\n")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 50)
    return tmp_path


@pytest.mark.parametrize("args, message", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(bad_files, capsys, monkeypatch, args, message):
    monkeypatch.chdir(bad_files)
    before = sorted(p.name for p in bad_files.rglob("*"))
    args = [a.replace("{tmp}", str(bad_files)) for a in args]
    code, _out, err = _run(args, capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in bad_files.rglob("*")) == before  # no runs/ dir, no partial output


def test_usage_error_exits_2(capsys):
    code, _, err = _run(["run", "--no-such-flag"], capsys)
    assert code == 2 and "no such option" in err.lower()


def test_verify_on_a_non_zip_is_bad_input(tmp_path, capsys):
    not_zip = tmp_path / "model.onnx"
    not_zip.write_bytes(b"\x08\x07 not a zip")
    code, _, err = _run(["verify", str(not_zip)], capsys)
    assert code == 2 and "is not a zip package" in err and err.count("\n") == 1


def test_an_environment_fault_names_the_fix_that_fits():
    import errno

    from toolchain.cli.main import _environment_fault

    wrong_path = _environment_fault(IsADirectoryError(errno.EISDIR, "Is a directory", "/data/run"))
    assert wrong_path == "edgeopt: error: Is a directory at /data/run; check the path"
    assert _environment_fault(OSError(errno.ENOSPC, "No space left on device", "/data/run")).endswith(
        "; free space or choose a writable path (--out), then run again")


def test_an_internal_error_exits_3_with_one_line_and_a_log_under_out(tmp_path, monkeypatch, capsys):
    import toolchain.pipeline.run as run_mod

    def boom(*_args, **_kw):
        raise RuntimeError("a bug, not the user's input")

    monkeypatch.setattr(run_mod, "run_pipeline", boom)
    code = main(["run", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "Traceback" not in err[0]
    log = Path(err[0].split("traceback in ")[1].split(";")[0])
    assert log.parent == tmp_path / "out" / "logs" and "RuntimeError: a bug" in log.read_text()


def test_an_unwritable_output_path_is_an_environment_fault_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main(["keygen", str(blocker / "sub" / "key.pem")])  # NotADirectoryError, not a bug
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(blocker) in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("command", [["run"], ["search", "--target", "cpu-server"]])
def test_an_unwritable_shared_cache_is_refused_before_any_work(command, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code = main([*command, "--out", str(tmp_path / "out"), "--cache", str(blocker / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"cache directory {blocker / 'cache'} is not writable" in err[0]
    assert not (tmp_path / "out").exists() and blocker.read_text() == "not a directory"

