"""The batch's task graph: recipes that train the same model share one train task, so a parallel
batch does not train it once per worker (shapes-mobilenet and its structured variant: 253 s of
training each, measured sequentially on a 2-core EPYC)."""

from __future__ import annotations

from pathlib import Path

from toolchain.batch.run import BatchOptions, plan, training_identity
from toolchain.batch.spec import parse_specs
from toolchain.config.target import load_target
from toolchain.resources import bundled_dir

ZOO = bundled_dir("models")


def _graph(names: list[str], tmp_path: Path):
    specs = parse_specs([str(ZOO / f"{n}.toml") for n in names])
    opts = BatchOptions(out_dir=tmp_path, targets=("cpu-server", "arm-mobile"))
    profiles = {t: load_target(t) for t in opts.targets}
    return {t.key: t for t in plan(specs, profiles, opts)}


def test_recipes_that_train_the_same_model_share_one_train_task(tmp_path):
    graph = _graph(["shapes-mobilenet-structured", "shapes-mobilenet", "digits-cnn"], tmp_path)
    trains = sorted(k for k in graph if k.startswith("train:"))
    assert len(trains) == 2
    shapes = graph["shared:shapes-mobilenet"].deps
    assert shapes == graph["shared:shapes-mobilenet-structured"].deps and len(shapes) == 1
    assert graph["shared:digits-cnn"].deps != shapes
    assert set(trains) == set(shapes) | set(graph["shared:digits-cnn"].deps)
    # every target task still waits for its own recipe's shared stages
    assert graph["target:shapes-mobilenet--arm-mobile"].deps == ("shared:shapes-mobilenet",)
    assert len(graph) == 2 + 3 + 3 * 2 * 2


def test_the_identity_follows_what_training_reads(tmp_path):
    (spec,) = parse_specs([str(ZOO / "digits-cnn.toml")])
    recipe = spec.recipe
    same = recipe.model_copy(update={"prune": recipe.prune.model_copy(update={"amount": 0.5})})
    longer = recipe.model_copy(update={"train": recipe.train.model_copy(update={"epochs": 99})})
    assert training_identity(same) == training_identity(recipe)  # pruning does not change training
    assert training_identity(longer) != training_identity(recipe)


def test_with_differential_privacy_the_fine_tunes_shape_training(tmp_path):
    text = (ZOO / "tabular-mlp.toml").read_text()
    dp = text.replace("[prune]", "[train.privacy]\nepsilon = 8.0\ndelta = 1e-5\nmax_grad_norm = 1.0\n\n[prune]", 1)
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(dp)
    b.write_text(dp.replace("finetune_epochs = 5", "finetune_epochs = 2"))
    (ra,), (rb,) = parse_specs([str(a)]), parse_specs([str(b)])
    assert ra.recipe.train.privacy is not None
    assert training_identity(ra.recipe) != training_identity(rb.recipe)
