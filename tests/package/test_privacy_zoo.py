"""Issue 17's goal: `edgeopt run` on every zoo recipe (and wine, the one bundled dataset no zoo
recipe uses), with short training, builds packages that hold no row of the training or
evaluation data in any member, and that still verify. Also `[quantize] calibration_data`
("synthetic" and a PATH) runs end to end and the report says which kind calibrated.
The pipeline runs are slow (tens of seconds each on 2 shared cores); test_privacy.py has the fast
cases (every bundled dataset through the same package builder, a fixed model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from toolchain.cli.main import main
from toolchain.config.base import read_toml
from toolchain.config.recipe import Recipe
from toolchain.resources import bundled_dir

# One zoo recipe per bundled dataset (the smallest model on it): whether a row can leak into a package
# depends on the data and the packaging path, not the network; the fast test_privacy.py covers every dataset.
ZOO = ["digits-cnn", "resnet-small", "seq-conv1d", "tabular-mlp", "tiny-bert"]
SHORT = {"train": {"epochs": 1}, "export": {"parity_samples": 16}, "quantize": {"calibration_samples": 32}}
# Fewer generated samples for the image and sequence sets: the same generators, a fraction of the time.
SMALLER = {"shapes": {"samples": 240}, "sequences": {"samples": 300}}


def _short_recipe(doc: dict) -> Recipe:
    for section, values in SHORT.items():
        doc.setdefault(section, {}).update(values)
    prune = doc.setdefault("prune", {})
    prune.update(finetune_epochs=0, steps=1, drop_blocks=min(prune.get("drop_blocks", 0), 1))
    data = doc.setdefault("data", {})
    data.setdefault("kwargs", {}).update(SMALLER.get(data.get("name"), {}))
    doc["targets"] = ["cpu-server"] if doc["name"] != "digits-cnn" else ["cpu-server", "arm-mobile"]
    doc.pop("budgets", None)
    return Recipe.model_validate(doc)


def _zoo_recipe(name: str) -> Recipe:
    if name == "wine-mlp":
        doc = read_toml(bundled_dir("models") / "tabular-mlp.toml", "recipe")
        doc["name"], doc["data"]["name"] = "wine-mlp", "wine"
        doc["model"]["kwargs"].update(in_features=13, num_classes=3)
        return _short_recipe(doc)
    return _short_recipe(read_toml(bundled_dir("models") / f"{name}.toml", "recipe"))


def _assert_no_rows(result, recipe: Recipe) -> None:
    from toolchain.data import load_dataset
    from toolchain.package import read_manifest, verify_package
    from toolchain.package.privacy import package_members
    from toolchain.package.rowsearch import find_rows

    data = load_dataset(recipe.data)
    rows = {}
    for split, x in (("x_train", data.x_train), ("x_test", data.x_test)):  # Feeds: every input's rows
        rows.update({f"{split}/{n}": a for n, a in x.arrays.items()} if hasattr(x, "arrays") else {split: x})
    total = sum(len(a) for a in rows.values())
    for target in result.targets.values():
        found = find_rows(package_members(target.package), rows)
        assert found.rows_searched + found.rows_skipped == total and found.rows_searched > 0
        # only rows too short or constant to tell from chance are skipped (e.g. a full attention mask)
        assert found.rows_skipped <= total // 2 and found.rows_found == 0, found.hits[:3]
        assert read_manifest(target.package)[0].golden.source == "synthetic"
        assert verify_package(target.package).ok


@pytest.mark.slow
@pytest.mark.parametrize("name", [*ZOO, "wine-mlp"])
def test_zoo_packages_hold_no_row_of_their_data(name, tmp_path, fast_targets_dir, one_torch_thread):
    from toolchain.pipeline.run import RunOptions, run_pipeline

    recipe = _zoo_recipe(name)
    result = run_pipeline(recipe, RunOptions(out_dir=tmp_path / "run", targets_dir=fast_targets_dir))
    _assert_no_rows(result, recipe)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["package_golden"] == "synthetic" and report["calibration_data"]["kind"] == "train"
    assert report["calibration_data"]["private"] is False


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["synthetic", "file"])
def test_calibration_data_synthetic_or_a_file_runs_and_the_report_says_so(
    kind, tmp_path, fast_targets_dir, one_torch_thread, monkeypatch
):
    from toolchain.data import load_dataset
    from toolchain.data.synthetic import synthetic_like
    from toolchain.pipeline.run import RunOptions, run_pipeline

    recipe = _zoo_recipe("tabular-mlp")
    monkeypatch.chdir(tmp_path)  # a relative calibration path starts at the working directory
    value = "synthetic"
    if kind == "file":  # "public" data: here synthetic rows saved to a file, 64 samples
        np.savez(tmp_path / "public.npz", x=synthetic_like(load_dataset(recipe.data).x_train, 64, seed=7))
        value = "public.npz"
    recipe = recipe.model_copy(
        update={"quantize": recipe.quantize.model_copy(update={"calibration_data": value})}
    )
    result = run_pipeline(recipe, RunOptions(out_dir=tmp_path / "run", targets_dir=fast_targets_dir))
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["calibration_data"]["kind"] == kind and report["calibration_data"]["source"] == value
    assert "non-private input to quantization" in (tmp_path / "run" / "report.html").read_text()
    quantized = next((tmp_path / "run" / "cache" / "quantize").glob("*/record.json"))
    record = json.loads(quantized.read_text())
    assert record["calibration_data"]["samples_available"] == (32 if kind == "synthetic" else 64)
    assert record["calibration_samples"] == 32
    _assert_no_rows(result, recipe)


def test_a_bad_calibration_path_is_one_line_exit_2_before_any_work(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    out = tmp_path / "out"
    for value, message in (
        ("missing.npz", "not found"),
        ("data.csv", "neither 'train', 'synthetic' nor an .npz"),
    ):
        recipe.write_text(f'schema_version = 1\n[quantize]\ncalibration_data = "{tmp_path / value}"\n')
        capsys.readouterr()
        assert main(["run", str(recipe), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not out.exists()


def test_a_calibration_file_of_the_wrong_shape_is_bad_input(tmp_path):
    from toolchain.data.calibration import calibration_inputs
    from toolchain.errors import BadInput

    x_train = np.zeros((10, 1, 8, 8), np.float32)
    np.savez(tmp_path / "c.npz", x=np.zeros((5, 1, 8, 9), np.float32))
    with pytest.raises(BadInput, match=r"has shape \[5, 1, 8, 9\], the model's data has \[10, 1, 8, 8\]"):
        calibration_inputs(str(tmp_path / "c.npz"), x_train, 32)
    np.savez(tmp_path / "ok.npz", x=np.ones((5, 1, 8, 8), np.float64))
    got = calibration_inputs(str(tmp_path / "ok.npz"), x_train, 32)
    assert got.dtype == np.float32 and got.shape == (5, 1, 8, 8) and float(got.sum()) == 320.0


def test_the_zoo_is_what_the_goal_test_builds():
    zoo = sorted(p.stem for p in bundled_dir("models").glob("*.toml"))
    assert set(ZOO) <= set(zoo)
    datasets = {_zoo_recipe(n).data.name for n in [*ZOO, "wine-mlp"]}
    assert datasets >= {_zoo_recipe(n).data.name for n in zoo}  # a new zoo dataset must be added to ZOO
    from toolchain.data import DATASETS

    assert datasets == set(DATASETS)  # every bundled dataset is built
    assert Path(bundled_dir("models")).is_dir()


def test_the_report_page_states_the_calibration_data_and_the_golden_origin(tmp_path):
    from toolchain.pipeline.page import render_page
    from toolchain.pipeline.report import data_use

    doc = {
        "recipe": {"name": "r"},
        "out_dir": str(tmp_path),
        "targets": {},
        **data_use("public.npz", "samples"),
    }
    assert doc["calibration_data"] == {
        **doc["calibration_data"],
        "kind": "file",
        "source": "public.npz",
        "private": False,
    }
    page = render_page(doc)
    assert "Calibration data: <b>file</b> (public.npz)" in page
    assert "non-private input to quantization" in page and "REAL evaluation samples" in page
    assert "Calibration data" not in render_page({k: v for k, v in doc.items() if k != "calibration_data"})


@pytest.mark.slow
def test_a_golden_samples_recipe_is_caught_by_inspect_privacy(
    tmp_path, fast_targets_dir, one_torch_thread, capsys
):
    from toolchain.config.stages import PackageConfig
    from toolchain.pipeline.run import RunOptions, run_pipeline

    recipe = _zoo_recipe("tabular-mlp").model_copy(update={"package": PackageConfig(golden="samples")})
    result = run_pipeline(recipe, RunOptions(out_dir=tmp_path / "run", targets_dir=fast_targets_dir))
    (tmp_path / "r.toml").write_text(recipe.to_toml())
    pkg = str(result.targets["cpu-server"].package)
    capsys.readouterr()
    assert main(["inspect", "--privacy", pkg, "--recipe", str(tmp_path / "r.toml"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["golden_source"] == "samples" and doc["checked_against"]["rows_found"] == 4
    assert {h["array"] for h in doc["checked_against"]["hits"]} == {"x_test"}
    assert json.loads((tmp_path / "run" / "report.json").read_text())["package_golden"] == "samples"


def test_the_text_report_states_the_calibration_data_and_the_golden_origin(tmp_path):
    from types import SimpleNamespace

    from toolchain.config.stages import PackageConfig
    from toolchain.pipeline.report import render_run

    recipe = Recipe(package=PackageConfig(golden="samples"))
    result = SimpleNamespace(recipe=recipe, out_dir=tmp_path, stages=[], baseline={}, targets={}, passed=True)
    text = render_run(result)
    assert "calibration data: train (a non-private input to quantization)" in text
    assert "package golden inputs: samples (REAL evaluation samples)" in text
