"""Drift reference in packages and `edgeopt drift`: hashed, aggregate-only, flags shifts, not noise."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.cli.main import main
from toolchain.config.target import load_target
from toolchain.data import DataConfig, load_dataset
from toolchain.drift.reference import DRIFT_REFERENCE_NAME, MIN_BIN_COUNT, merge_small_bins
from toolchain.errors import EXIT_BAD_INPUT
from toolchain.package import build_package, verify_package
from toolchain.package.inputs import spec_for_artifact
from toolchain.package.manifest import parse_manifest


def _linear(path: Path, shape: list, features: int, classes: int) -> Path:
    """x[batch, *shape] -> Flatten -> MatMul -> y[batch, classes]: a stand-in classifier."""
    w = np.random.default_rng(0).standard_normal((features, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def _package(tmp: Path, dataset: str, *, reference: bool = True) -> tuple[Path, object]:
    data = load_dataset(DataConfig(name=dataset))
    shape = list(data.x_train.shape[1:])
    model = _linear(tmp / f"{dataset}.onnx", shape, int(np.prod(shape)), len(data.labels))
    spec = spec_for_artifact(model, load_target("cpu-server"), name=dataset, recipe_hash="", labels=list(data.labels),
                             preprocessing={}, metrics={}, verdicts={}, samples=data.x_test[:4],
                             reference=data.x_train if reference else None)
    return build_package(spec, tmp / f"{dataset}{'' if reference else '-noref'}.zip"), data


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return _package(tmp_path_factory.mktemp("digits"), "digits")


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    return _package(tmp_path_factory.mktemp("wine"), "wine")


def _drift(tmp: Path, pkg: Path, capsys, *extra, **arrays) -> tuple[int, dict | str]:
    np.savez(tmp / "live.npz", **arrays)
    code = main(["drift", str(pkg), "--data", str(tmp / "live.npz"), *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if "--json" in extra and code in (0, 1) else out.err)


def test_merge_small_bins_keeps_every_bin_at_least_min_and_the_total():
    edges, counts = merge_small_bins([1.0, 2.0, 3.0, 4.0, 5.0], [3, 4, 20, 1, 12, 2], 10)
    assert counts == [27, 15] and sum(counts) == 42
    assert edges == [3.0]  # one inner edge per boundary between the two bins left
    assert merge_small_bins([1.0], [4, 3], 10) == ([], [7])  # fewer than min in all: one bin


def test_reference_is_listed_hashed_and_aggregate(digits):
    pkg, _ = digits
    with zipfile.ZipFile(pkg) as zf:
        manifest = parse_manifest(zf.read("manifest.json"))
        raw = zf.read(DRIFT_REFERENCE_NAME)
    assert manifest.files[DRIFT_REFERENCE_NAME].sha256 == hashlib.sha256(raw).hexdigest()
    assert verify_package(pkg).ok
    ref = json.loads(raw)
    assert ref["schema_version"] == 2 and ref["min_bin_count"] == MIN_BIN_COUNT and ref["inputs"]["x"]["batch_axis"] == 0
    hists = [c["histogram"] for c in ref["inputs"]["x"]["channels"]] + [ref["outputs"]["y"]["histogram"]]
    assert ref["outputs"]["y"]["kind"] == "classes"
    for h in hists:
        assert min(h["counts"]) >= MIN_BIN_COUNT and len(h["counts"]) == len(h["edges"]) + 1
    assert ref["inputs"]["x"]["channels"][0]["count"] == 1437 * 64
    assert len(raw) < 1500  # bounded bins and channels keep it small


def test_tampered_reference_is_refused(digits, tmp_path, capsys):
    pkg, data = digits
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(pkg) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == DRIFT_REFERENCE_NAME:
                body, original = body.replace(b'"min_bin_count":10', b'"min_bin_count":11'), body
                assert body != original
            dst.writestr(info, body)
    code, err = _drift(tmp_path, bad, capsys, x=data.x_test)
    assert code == EXIT_BAD_INPUT and DRIFT_REFERENCE_NAME in err and len(err.strip().splitlines()) == 1


def test_same_distribution_is_not_flagged_and_brightness_is(digits, tmp_path, capsys):
    pkg, data = digits
    code, doc = _drift(tmp_path, pkg, capsys, "--json", x=data.x_test)
    assert code == 0 and doc["flagged"] == [] and max(r["psi"] for r in doc["rows"]) < 0.05
    code, doc = _drift(tmp_path, pkg, capsys, "--json", x=np.clip(data.x_test * 1.3, 0, 1))
    assert code == 1 and "input x" in doc["flagged"]
    assert next(r for r in doc["rows"] if r["kind"] == "input")["psi"] >= 0.2


def test_one_tabular_feature_scaled_2x_is_flagged(wine, tmp_path, capsys):
    pkg, data = wine
    code, doc = _drift(tmp_path, pkg, capsys, "--json", x=data.x_test)
    assert code == 0
    live = data.x_test.copy()
    mean, std = (np.asarray(data.preprocessing[k]) for k in ("mean", "std"))
    live[:, 0] = 2 * live[:, 0] + mean[0] / std[0]  # alcohol doubled in raw units
    code, doc = _drift(tmp_path, pkg, capsys, "--json", "--markdown", str(tmp_path / "d.md"), x=live)
    flagged = [r for r in doc["rows"] if r["drift"]]
    assert code == 1 and [(r["kind"], r["channel"]) for r in flagged if r["kind"] == "input"] == [("input", 0)]
    assert "| input x[0] |" in (tmp_path / "d.md").read_text()


def test_thresholds_file_overrides_the_defaults(digits, tmp_path, capsys):
    pkg, data = digits
    (tmp_path / "t.toml").write_text("schema_version = 1\n[drift]\npsi = 50.0\n")
    code, _ = _drift(tmp_path, pkg, capsys, "--thresholds", str(tmp_path / "t.toml"), x=data.x_test * 1.3)
    assert code == 0
    (tmp_path / "t.toml").write_text("schema_version = 1\n[drift]\npsii = 1.0\n")
    code, err = _drift(tmp_path, pkg, capsys, "--thresholds", str(tmp_path / "t.toml"), x=data.x_test)
    assert code == EXIT_BAD_INPUT and "psii" in err and "ks_pvalue" in err


@pytest.mark.parametrize(("arrays", "needle"), [
    ({"image": np.zeros((4, 1, 8, 8), np.float32)}, "'x'"),
    ({"x": np.zeros((4, 1, 8, 7), np.float32)}, "'x' has shape [4, 1, 8, 7]"),
    ({"x": np.zeros((4, 64), np.float32)}, "'x' has shape [4, 64]"),
])
def test_bad_live_data_exits_2_in_one_line(digits, tmp_path, capsys, arrays, needle):
    code, err = _drift(tmp_path, digits[0], capsys, **arrays)
    assert code == EXIT_BAD_INPUT and needle in err and len(err.strip().splitlines()) == 1


def test_package_without_reference_says_to_rebuild(tmp_path, capsys):
    pkg, data = _package(tmp_path, "wine", reference=False)
    with zipfile.ZipFile(pkg) as zf:
        assert DRIFT_REFERENCE_NAME not in zf.namelist()
    code, err = _drift(tmp_path, pkg, capsys, x=data.x_test)
    assert code == EXIT_BAD_INPUT and "no drift reference" in err and "rebuild" in err
    assert len(err.strip().splitlines()) == 1


def test_psi_and_binned_ks_match_their_definitions():
    from scipy.stats import ks_2samp

    from toolchain.drift.compare import ks, psi

    assert psi(np.array([50.0, 50.0]), np.array([50.0, 50.0])) == 0.0
    assert psi(np.array([80.0, 20.0]), np.array([20.0, 80.0])) == pytest.approx(2 * 0.6 * np.log(4))
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 300), rng.integers(1, 6, 200)  # integers: one bin each, binning loses nothing
    edges = [k + 0.5 for k in range(6)]
    from toolchain.drift.reference import bin_counts

    stat, p = ks(bin_counts(a, edges).astype(float), bin_counts(b, edges).astype(float), 300, 200)
    want = ks_2samp(a, b, method="asymp")
    assert stat == pytest.approx(want.statistic) and p == pytest.approx(want.pvalue, rel=1e-6)


def test_a_dict_of_inputs_is_referenced_and_compared_per_input():
    from toolchain.drift.compare import compare
    from toolchain.drift.reference import build_reference

    rng = np.random.default_rng(0)
    ref = build_reference({"image": rng.random((500, 3, 4, 4)), "meta": rng.standard_normal((500, 5))}, {})
    assert [len(ref["inputs"][n]["channels"]) for n in ("image", "meta")] == [3, 5]
    meta = rng.standard_normal((200, 5))
    meta[:, 3] += 1.0
    doc = compare(ref, {"image": rng.random((200, 3, 4, 4)), "meta": meta})
    assert doc["flagged"] == ["input meta"]
    assert [r["channel"] for r in doc["rows"] if r["drift"]] == [3]


def test_benchmark_shifts_are_the_ones_it_names():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from drift_reliability import shift

    z = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    out, how = shift("t", z, {"mean": [10.0, 20.0, 30.0], "std": [2.0, 4.0, 5.0]}, np.random.default_rng(1))
    f = int(how.split()[1])
    raw, raw_out = z * np.array([2.0, 4.0, 5.0]) + [10.0, 20.0, 30.0], out * np.array([2.0, 4.0, 5.0]) + [10, 20, 30]
    assert np.allclose(raw_out[:, f], 2 * raw[:, f], atol=1e-4)
    assert np.array_equal(np.delete(out, f, axis=1), np.delete(z, f, axis=1))
    img = np.full((2, 1, 2, 2), 0.9, np.float32)
    img[0, 0, 0, 0], img[1, 0, 0, 0] = 0.0, 0.5
    bright, _ = shift("digits", img, {}, np.random.default_rng(0))
    assert bright[1, 0, 0, 0] == pytest.approx(0.65)
    assert bright.max() == pytest.approx(0.9) and bright.min() == 0.0  # clipped to the data's range
