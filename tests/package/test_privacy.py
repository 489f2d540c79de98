"""Issue 17: no data rows in packages by default. Synthetic golden inputs match per-channel
statistics; the row byte search finds a row at any offset, in any encoding, inside nested zips;
packages built from every bundled dataset hold no row of it, and `golden = "samples"` is caught
by `edgeopt inspect --privacy` (exit 1)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from toolchain.cli.main import main
from toolchain.config.data import DataConfig
from toolchain.data.feeds import Feeds
from toolchain.data.synthetic import synthetic_like
from toolchain.package.rowsearch import find_rows, flatten_zip
from toolchain.package.zipwrite import npz_bytes

# Every bundled dataset, small enough to build in a second (same generators, fewer samples).
BUNDLED = {
    "digits": {},
    "breast_cancer": {},
    "wine": {},
    "sequences": {"samples": 240, "length": 64},
    "shapes": {"samples": 160, "size": 32},
}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# --- synthetic inputs ----------------------------------------------------------------------------


def test_synthetic_images_match_each_channels_mean_std_and_range():
    rng = np.random.default_rng(3)
    x = np.stack([rng.normal(m, s, (300, 6, 6)) for m, s in ((0.2, 0.05), (0.5, 0.2), (-1.0, 0.5))], axis=1)
    x = x.astype(np.float32)
    x[:, 1] = np.clip(x[:, 1], 0.3, 0.7)  # a clipped channel: draws must stay inside [min, max]
    s = synthetic_like(x, 2000)
    assert s.shape == (2000, 3, 6, 6) and s.dtype == np.float32
    for c in range(3):
        real, fake = x[:, c], s[:, c]
        assert abs(fake.mean() - real.mean()) < 0.02 and fake.min() >= real.min() and fake.max() <= real.max()
    assert abs(s[:, 0].std() - x[:, 0].std()) < 0.005 and abs(s[:, 2].std() - x[:, 2].std()) < 0.02
    assert np.array_equal(s, synthetic_like(x, 2000))  # seeded: packages stay byte-identical


def test_synthetic_integers_are_uniform_in_the_recorded_range_and_feeds_keep_their_layout():
    ids = np.random.default_rng(0).integers(5, 50, (100, 12)).astype(np.int64)
    state = np.zeros((2, 100, 8), np.float32)  # [layers, batch, hidden]: batch axis 1
    rate = np.array(16000, np.int64)  # fed whole on every run: no batch axis
    feeds = Feeds({"ids": ids, "h": state, "rate": rate}, {"ids": 0, "h": 1, "rate": None}, fixed_batch=None)
    got = synthetic_like(feeds, 4000)
    assert got.arrays["rate"].shape == () and int(got.arrays["rate"]) == 16000
    assert got.arrays["ids"].dtype == np.int64 and got.arrays["ids"].shape == (4000, 12)
    assert got.arrays["ids"].min() == ids.min() and got.arrays["ids"].max() == ids.max()
    assert abs(got.arrays["ids"].mean() - (ids.min() + ids.max()) / 2) < 0.5
    assert (
        got.arrays["h"].shape == (2, 4000, 8) and not got.arrays["h"].any()
    )  # constant channel stays constant


# --- the row search ------------------------------------------------------------------------------


def test_row_search_finds_rows_at_any_offset_encoding_and_nesting():
    rng = np.random.default_rng(1)
    x = rng.random((200, 30)).astype(np.float32)
    ids = rng.integers(0, 30000, (50, 6))
    members = {
        "odd.bin": b"abc" + x[5].tobytes() + b"z",  # float32 at an unaligned offset
        "wide.bin": b"q" * 5 + x[9].astype(np.float64).tobytes(),  # float64 encoding
        "golden.npz": npz_bytes({"input_0": x[[17]]}),  # deflated inside a deflated zip
        "ids.bin": b"\0" + ids[4].astype(np.int64).tobytes(),  # integer data as int64
        "near.bin": b"\0" + x[20, :-1].tobytes(),  # a row cut short: not a copy
    }
    result = find_rows(flatten_zip(_zip(members)), {"x": x, "ids": ids})
    found = {(h.array, h.row, h.encoding, h.member) for h in result.hits}
    assert found == {
        ("x", 5, "float32", "odd.bin"),
        ("x", 9, "float64", "wide.bin"),
        ("x", 17, "float32", "golden.npz/input_0.npy"),
        ("ids", 4, "int64", "ids.bin"),
    }
    assert result.rows_found == 4 and result.rows_searched == 250 and result.rows_skipped == 0


def test_constant_and_short_rows_are_skipped_not_matched_against_padding():
    x = np.zeros((3, 64), np.float32)
    x[2] = np.arange(64)
    short = np.ones((4, 2), np.float32)  # 8 bytes a row: would match by chance
    result = find_rows({"pad": bytes(4096)}, {"x": x, "short": short})
    assert (result.rows_searched, result.rows_skipped, result.rows_found) == (1, 6, 0)


# --- packages from every bundled dataset (fast: a fixed tiny model, the real package builder) ---


def _linear_model(path: Path, sample_shape: tuple[int, ...], classes: int = 3) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    features = int(np.prod(sample_shape))
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(features, classes)).astype(np.float32), "w"
    )
    shape = numpy_helper.from_array(np.array([-1, features], np.int64), "flat")
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *sample_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        [w, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _dataset(name: str):
    from toolchain.data import load_dataset

    return load_dataset(DataConfig(name=name, kwargs=BUNDLED[name]))


def _build(tmp: Path, data, golden: str) -> Path:
    from toolchain.config.target import load_target
    from toolchain.package import build_package
    from toolchain.package.inputs import spec_for_artifact

    model = _linear_model(tmp / f"{data.name}.onnx", data.input_shape)
    spec = spec_for_artifact(
        model,
        load_target("cpu-server"),
        name=data.name,
        recipe_hash="",
        labels=[],
        preprocessing=data.preprocessing,
        metrics={},
        verdicts={},
        samples=data.x_test if golden == "samples" else data.x_train,
        golden=golden,
        reference=data.x_train,
    )
    return build_package(spec, tmp / f"{data.name}-{golden}.zip")


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_a_default_package_holds_no_row_of_its_dataset_and_verifies(name, tmp_path):
    from toolchain.package import read_manifest, verify_package
    from toolchain.package.privacy import package_members

    data = _dataset(name)
    pkg = _build(tmp_path, data, "synthetic")
    result = find_rows(package_members(pkg), {"x_train": data.x_train, "x_test": data.x_test})
    assert result.rows_searched == len(data.x_train) + len(data.x_test) and result.rows_found == 0
    assert read_manifest(pkg)[0].golden.source == "synthetic"
    assert verify_package(pkg).ok  # the smoke run reproduces the model's outputs on the synthetic inputs


def test_samples_golden_is_found_by_inspect_privacy(tmp_path, capsys):
    data = _dataset("breast_cancer")
    pkg = _build(tmp_path, data, "samples")
    np.savez(tmp_path / "data.npz", x_train=data.x_train, x_test=data.x_test)
    capsys.readouterr()
    code = main(["inspect", "--privacy", str(pkg), "--data", str(tmp_path / "data.npz"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["rows_found"] is True and doc["golden_source"] == "samples"
    hits = doc["checked_against"]["hits"]
    assert {(h["array"], h["member"]) for h in hits} == {("x_test", "golden.npz/input_0.npy")}
    assert sorted(h["row"] for h in hits if h["encoding"] == "float32") == [0, 1, 2, 3]  # GOLDEN_SAMPLES


def test_inspect_privacy_lists_members_and_passes_a_synthetic_package(tmp_path, capsys):
    data = _dataset("digits")
    pkg = _build(tmp_path, data, "synthetic")
    recipe = tmp_path / "r.toml"
    recipe.write_text('schema_version = 1\n[data]\nname = "digits"\n')
    capsys.readouterr()
    assert main(["inspect", "--privacy", str(pkg), "--recipe", str(recipe), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    members = {m["member"]: m for m in doc["members"]}
    assert {
        "golden.npz/input_0.npy",
        "golden.npz/output_0.npy",
        "drift_reference.json",
        "manifest.json",
        "model.onnx",
        "model_card.md",
    } <= set(members)
    assert members["golden.npz/input_0.npy"]["origin"].startswith("synthetic")
    assert (
        members["golden.npz/input_0.npy"]["bytes"] == 128 + 4 * 64 * 4
    )  # npy header + 4 samples of 8x8 float32
    assert doc["checked_against"]["rows_searched"] == 1797 and doc["rows_found"] is False
    assert main(["inspect", "--privacy", str(pkg)]) == 0  # nothing to check against: a listing only
    assert "not checked against data" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "{npy}"], "not a readable .npz"),
        (["--privacy", "--data", "{npy}", "--recipe", "{npy}"], "both --data and --recipe"),
        (["--data", "{npz}"], "add --privacy"),
    ],
)
def test_inspect_privacy_bad_input_is_one_line_exit_2(args, message, tmp_path, capsys):
    pkg = _build(tmp_path, _dataset("wine"), "synthetic")
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    argv = [a.format(npy=tmp_path / "a.npy", npz=tmp_path / "a.npz") for a in args]
    if "--privacy" not in argv and message != "add --privacy":
        argv = ["--privacy", *argv]
    capsys.readouterr()
    assert main(["inspect", str(pkg), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_schema_2_package_still_verifies_and_its_golden_origin_reads_as_unknown(tmp_path, capsys):
    from toolchain.package import verify_package
    from toolchain.package.manifest import canonical_bytes

    pkg = _build(tmp_path, _dataset("wine"), "synthetic")
    with zipfile.ZipFile(pkg) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(entries["manifest.json"])
    assert manifest["schema_version"] == 3 and manifest["golden"].pop("source") == "synthetic"
    entries["manifest.json"] = canonical_bytes({**manifest, "schema_version": 2})
    old = tmp_path / "old.zip"
    old.write_bytes(_zip(entries))
    assert verify_package(old).ok
    capsys.readouterr()
    assert main(["inspect", "--privacy", str(old), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] == 2 and doc["golden_source"] is None
    golden = next(m for m in doc["members"] if m["member"] == "golden.npz/input_0.npy")
    assert golden["origin"].startswith("samples (origin not recorded")
    entries["manifest.json"] = canonical_bytes(manifest)  # schema 3 without golden.source: refused
    (tmp_path / "bad.zip").write_bytes(_zip(entries))
    assert not verify_package(tmp_path / "bad.zip").ok


def test_the_model_card_says_what_the_golden_inputs_are(tmp_path):
    cards = {}
    for golden in ("synthetic", "samples"):
        with zipfile.ZipFile(_build(tmp_path, _dataset("wine"), golden)) as zf:
            cards[golden] = zf.read("model_card.md").decode()
    assert "4 synthetic inputs drawn (seeded) from per-channel statistics" in cards["synthetic"]
    assert "4 REAL samples of the evaluation data" in cards["samples"]
    assert "REAL" not in cards["synthetic"]
