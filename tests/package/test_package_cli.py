"""`edgeopt verify` and `inspect` on real packages. verify: a flipped byte inside a member is that
member's hash mismatch (not "missing"), every kind of content damage exits 1, only a non-package
exits 2. inspect: nested metrics print as indented blocks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from toolchain.cli.main import main


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pkg")
    assert main(["package", str(_tiny_onnx(d / "tiny.onnx")), "--target", "cpu-server", "--out", str(d / "tiny.zip")]) == 0
    return d / "tiny.zip"


def _verify(path: Path, capsys) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["verify", str(path), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def _flipped(package: Path, offset: int, dest: Path) -> Path:
    raw = bytearray(package.read_bytes())
    raw[offset] ^= 0xFF
    dest.write_bytes(bytes(raw))
    return dest


def _members(package: Path) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(package) as zf:
        return [i for i in zf.infolist() if not i.is_dir()]


def test_the_intact_package_verifies(package, capsys):
    code, doc, _ = _verify(package, capsys)
    assert code == 0 and doc["ok"] is True


@pytest.mark.parametrize("where", [0.25, 0.5, 0.9])
def test_a_flipped_byte_inside_each_member_is_that_members_hash_mismatch(package, tmp_path, capsys, where):
    for info in _members(package):
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # local header, then data
        bad = _flipped(package, start + int(info.compress_size * where), tmp_path / "bad.zip")
        code, doc, err = _verify(bad, capsys)
        failed = {c["name"]: c["reason"] for c in doc["checks"] if c["status"] == "fail"}
        assert code == 1 and err == "", (info.filename, err)
        check = "manifest" if info.filename == "manifest.json" else f"file {info.filename}"
        assert list(failed) == [check], (info.filename, failed)
        assert "missing" not in failed[check]
        if check != "manifest":  # the manifest holds the hashes: its own damage is named as such
            assert "does not match its sha256" in failed[check]


def test_damage_anywhere_exits_1_and_a_non_package_exits_2(package, tmp_path, capsys):
    size = package.stat().st_size
    with zipfile.ZipFile(package) as zf:
        directory = zf.start_dir
    # the end-of-directory signature, the first directory entry's CRC and name, a local header
    for offset in (size - 22, directory + 16, directory + 46, 0):
        code, doc, err = _verify(_flipped(package, offset, tmp_path / "bad.zip"), capsys)
        assert code == 1 and err == "" and doc["ok"] is False, offset
    text = tmp_path / "notes.zip"
    text.write_text("not a package\n")
    code, doc, err = _verify(text, capsys)
    assert (code, doc, err.count("\n")) == (2, {}, 1) and "is not a zip package" in err


def test_inspect_prints_nested_mappings_indented(tmp_path, capsys):
    from toolchain.config.target import load_target
    from toolchain.package import build_package
    from toolchain.package.inputs import spec_for_artifact

    metrics = {"latency_ms": {"p50": 0.5, "p90": 0.75},
               "selection": {"rule": "fastest", "candidates": {"int8": {"p50_ms": 0.25, "bytes": 1000}}}}
    spec = spec_for_artifact(_tiny_onnx(tmp_path / "tiny.onnx"), load_target("cpu-server"), name="tiny", recipe_hash="",
                             labels=[], preprocessing={}, metrics=metrics, verdicts={}, samples=None)
    pkg = build_package(spec, tmp_path / "tiny.zip")
    capsys.readouterr()
    assert main(["inspect", str(pkg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    block = lines[lines.index("metrics") + 1: lines.index("budgets")]
    assert block == ["  latency_ms: p50 0.5, p90 0.75",  # flat and short: one line, at any depth
                     "  selection:",
                     "    candidates:",
                     "      int8: bytes 1000, p50_ms 0.25",
                     "    rule: fastest"]
