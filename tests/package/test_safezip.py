"""Safe extraction refuses hostile zips before writing anything; external data may not escape."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.errors import EXIT_BAD_INPUT
from toolchain.package import UnsafeArchive, UnsafeModel, check_external_data, safe_extract, verify_package


def _zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    """entries: (name, data, unix mode or None). zipfile writes any name we give it, like an attacker."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names we write on purpose
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    "entries, words",
    [
        ([("ok.txt", b"fine", None), ("/etc/evil", b"x", None)], "absolute"),
        ([("ok.txt", b"fine", None), ("../evil", b"x", None)], "'..'"),
        ([("ok.txt", b"fine", None), ("sub/../../evil", b"x", None)], "'..'"),
        ([("ok.txt", b"fine", None), ("C:/evil", b"x", None)], "absolute"),
        ([("ok.txt", b"fine", None), ("sub\\..\\evil", b"x", None)], "backslash"),
        ([("ok.txt", b"fine", None), ("link", b"/etc/passwd", 0o120777)], "symbolic link"),
        ([("ok.txt", b"fine", None), ("ok.txt", b"again", None)], "duplicate"),
        ([("Model.onnx", b"a", None), ("model.onnx", b"b", None)], "duplicate"),
    ],
)
def test_hostile_entries_refused_and_nothing_written(tmp_path, entries, words):
    archive = _zip(tmp_path / "bad.zip", entries)
    work = tmp_path / "work"
    work.mkdir()
    before = _listing(tmp_path)
    with pytest.raises(UnsafeArchive, match=words) as err:
        safe_extract(archive, work / "out")
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert _listing(tmp_path) == before  # no folder, no partial file, no temp dir, nothing outside
    report = verify_package(archive)
    assert [c.name for c in report.failures] == ["archive"] and words.strip("'") in report.failures[0].reason


def test_size_limits_checked_before_extracting(tmp_path):
    # 1 MiB of zeros deflates to about 1 KiB: the archive is small, its content is not.
    archive = _zip(tmp_path / "bomb.zip", [("a.bin", b"\0" * (1 << 20), None), ("b.bin", b"x", None)])
    assert archive.stat().st_size < 8 << 10
    with pytest.raises(UnsafeArchive, match="expand to over"):
        safe_extract(archive, tmp_path / "out", max_bytes=64 << 10)
    with pytest.raises(UnsafeArchive, match="archive is"):
        safe_extract(archive, tmp_path / "out", max_bytes=512)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bomb.zip"]


def test_safe_archive_extracts(tmp_path):
    archive = _zip(tmp_path / "ok.zip", [("a.txt", b"alpha", None), ("sub/b.txt", b"beta", 0o100644)])
    files = safe_extract(archive, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["a.txt", "sub/b.txt"]
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"beta"
    with pytest.raises(UnsafeArchive, match="not empty"):
        safe_extract(archive, tmp_path / "out")


def test_corrupt_entry_leaves_nothing(tmp_path):
    archive = _zip(tmp_path / "ok.zip", [("a.txt", b"alpha" * 100, None), ("b.txt", b"beta" * 100, None)])
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("b.txt")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(UnsafeArchive, match="b.txt"):
        safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.zip"]


def _model_with_external(folder: Path, location: str) -> Path:
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../x.bin", "C:\\\\x.bin", ""])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location):
    with pytest.raises(UnsafeModel, match="outside the model's folder"):
        check_external_data(_model_with_external(tmp_path, location))


def test_external_data_beside_the_model_is_allowed(tmp_path):
    model = _model_with_external(tmp_path, "weights.bin")
    assert check_external_data(model) == ["weights.bin"]
    plain = tmp_path / "plain"
    plain.mkdir()
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [])), str(plain / "m.onnx"))
    assert check_external_data(plain / "m.onnx") == []
