"""Conformance over the model zoo: every models/*.py has a recipe, builds, runs on its recipe's
data, exports to ONNX with parity, and every data set trains past a measured accuracy floor.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from toolchain.config.recipe import Recipe, load_recipe
from toolchain.config.zoo import ModelConfig, build_model, zoo_names
from toolchain.data import DATASETS, DataConfig, load_dataset
from toolchain.data.feeds import Feeds
from toolchain.resources import bundled_dir
from toolchain.torch_io import torch_inputs

MODELS_DIR = bundled_dir("models")
RECIPE_PATHS = sorted(MODELS_DIR.glob("*.toml"))
ZOO = zoo_names()


@functools.cache
def _recipe(path) -> Recipe:
    return load_recipe(path)


@functools.cache
def _dataset_cached(cfg_json: str):
    return load_dataset(DataConfig.model_validate_json(cfg_json))


def _dataset(cfg: DataConfig):
    """Generated sets take seconds; load each config once per session (configs hold dicts, so
    they are not hashable themselves: key on their JSON)."""
    return _dataset_cached(cfg.model_dump_json())


def _recipe_for(model_name: str) -> Recipe:
    recipes = [_recipe(p) for p in RECIPE_PATHS if _recipe(p).model.name == model_name]
    assert recipes, f"zoo model '{model_name}' has no recipe: add models/<name>.toml with [model] name = '{model_name}'"
    return recipes[0]


@pytest.mark.parametrize("path", RECIPE_PATHS, ids=lambda p: p.name)
def test_recipe_loads_names_itself_and_round_trips(path, tmp_path):
    recipe = _recipe(path)
    assert recipe.name == path.stem, "a recipe's name should match its file name"
    again = tmp_path / path.name
    again.write_text(recipe.to_toml())
    assert load_recipe(again) == recipe


@pytest.mark.parametrize("path", RECIPE_PATHS, ids=lambda p: p.name)
def test_recipe_names_an_existing_model_and_dataset(path):
    recipe = _recipe(path)
    assert (MODELS_DIR / f"{recipe.model.name}.py").is_file(), f"{path.name}: no models/{recipe.model.name}.py"
    assert recipe.data.name in DATASETS, f"{path.name}: unknown dataset '{recipe.data.name}'"


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_has_a_recipe(name):
    _recipe_for(name)


def test_digits_recipe_is_the_embedded_default():
    assert load_recipe(MODELS_DIR / "digits-cnn.toml") == Recipe()


@pytest.mark.parametrize("name", ZOO)
def test_builds_runs_and_exports_with_parity(name, tmp_path):
    import torch

    from toolchain.stages.export import check_parity, export_onnx

    recipe = _recipe_for(name)
    data = _dataset(recipe.data)
    model = build_model(recipe.model).eval()
    with torch.no_grad():  # one input, or several (Feeds: token ids + attention mask)
        out = model(*torch_inputs(data.x_test, slice(0, 16)))
    assert tuple(out.shape) == (16, len(data.labels))
    assert torch.isfinite(out).all()

    dest = tmp_path / f"{name}.onnx"
    facts = export_onnx(model, data.x_train, recipe.export, dest)
    assert facts["opset"] == recipe.export.opset
    head = data.x_test.take(np.arange(32)) if isinstance(data.x_test, Feeds) else data.x_test[:32]
    parity = check_parity(dest, model, head, recipe.export)
    assert parity["samples"] == 32 and parity["max_abs_diff"] <= recipe.export.parity_atol


# Reduced runs, one per data set: (model, model kwargs, data kwargs, epochs, batch size, lr, floor).
# Floors are the held-out accuracy measured for that exact run (in the comment, torch 2.13 CPU,
# 2 threads) minus a margin, because thread count and CPU change the float summation order.
SHORT_RUNS = {
    "digits": ("digits_cnn", {}, {}, 2, 64, 3e-3, 0.80),  # measured 0.886
    "shapes": (  # 4 classes at 32 px keep it to seconds; chance is 0.25. measured 0.650
        "resnet_small", {"num_classes": 4}, {"size": 32, "samples": 1200, "classes": 4}, 8, 16, 3e-3, 0.45
    ),
    "breast_cancer": ("tabular_mlp", {}, {}, 5, 64, 1e-3, 0.90),  # measured 0.956
    "wine": ("tabular_mlp", {"in_features": 13, "num_classes": 3}, {}, 10, 32, 1e-3, 0.85),  # measured 1.000
    "sequences": ("seq_conv1d", {"width": 8}, {"samples": 1200}, 3, 32, 3e-3, 0.60),  # measured 0.717
    # chance is 0.25; the class is the order of two marker tokens. measured 0.829 (1 thread, ~8 s)
    "token_patterns": ("tiny_bert", {"hidden": 32}, {"samples": 1200}, 3, 32, 3e-3, 0.65),
}


def test_every_dataset_has_a_short_run():
    assert set(SHORT_RUNS) == set(DATASETS)


@pytest.mark.parametrize("dataset", sorted(SHORT_RUNS))
def test_short_training_reaches_floor(dataset, one_torch_thread):
    from toolchain.stages.train import TrainConfig, train

    model_name, model_kwargs, data_kwargs, epochs, batch, lr, floor = SHORT_RUNS[dataset]
    data = _dataset(DataConfig(name=dataset, kwargs=data_kwargs))
    model = build_model(ModelConfig(name=model_name, kwargs=model_kwargs))
    _, metrics = train(model, data, TrainConfig(epochs=epochs, batch_size=batch, lr=lr))
    assert metrics["accuracy"] >= floor, f"{dataset}: accuracy {metrics['accuracy']:.3f} < floor {floor}"
    assert np.isfinite(metrics["accuracy"])
