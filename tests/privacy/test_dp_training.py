"""[train.privacy]: DP-SGD through Opacus under one budget for training and every fine-tune."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from conftest import require_extra

from toolchain.cli import main
from toolchain.config.recipe import Recipe
from toolchain.config.stages import PrivacyConfig, PruneConfig, TrainConfig

require_extra("opacus", "privacy")

TABULAR_DP = """
schema_version = 1
name = "tabular-dp"
targets = ["cpu-server"]

[model]
name = "tabular_mlp"

[data]
name = "breast_cancer"

[train]
epochs = {epochs}
batch_size = 64
lr = 0.01

[train.privacy]
epsilon = {epsilon}
delta = {delta}
max_grad_norm = {max_grad_norm}

[prune]
kind = "magnitude"
amount = 0.3
finetune_epochs = 2
finetune_lr = 0.005

[quantize]
calibration_samples = 64
"""

BATCHNORM_DP = """
schema_version = 1
name = "resnet-dp"
targets = ["cpu-server"]

[model]
name = "resnet_small"

[model.kwargs]
num_classes = 8
width = 8                    # widest layer 32 channels: fix_modules makes per-channel GroupNorms

[data]
name = "shapes"

[data.kwargs]
size = 32
samples = 400

[train]
epochs = 2
batch_size = 32

[train.privacy]
epsilon = 8.0
delta = 1e-5
max_grad_norm = 1.0
fix_modules = {fix}

[prune]
kind = "structured"
amount = 0.3
steps = 2
finetune_epochs = 1
"""


def _recipe(tmp_path: Path, text: str, **values) -> Path:
    defaults = {"epochs": 3, "epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0}
    path = tmp_path / "recipe.toml"
    path.write_text(text.format(**{**defaults, **values}))
    return path


def _load(path: Path) -> Recipe:
    from toolchain.config.recipe import load_recipe

    return load_recipe(path)


def _train_and_prune(recipe: Recipe, cache_dir: Path):
    from toolchain.pipeline import steps
    from toolchain.pipeline.cache import StageCache

    cache = StageCache(cache_dir, log=lambda _m: None)
    data = steps.dataset(recipe)
    trained = steps.train(cache, recipe, data)
    pruned = steps.prune(cache, recipe, data, trained)
    return cache, data, trained, pruned


def test_dp_training_spends_at_most_the_budget_over_train_and_finetune(tmp_path, one_torch_thread):
    from toolchain.pipeline import steps
    from toolchain.stages.train import accuracy

    recipe = _load(_recipe(tmp_path, TABULAR_DP, epochs=3, epsilon=3.0))
    _, data, trained, pruned = _train_and_prune(recipe, tmp_path / "cache")
    after_train, total = trained.record["privacy"], pruned.record["privacy"]
    steps_per_epoch = 8  # ceil(455 / 64): Opacus samples each row with rate 1/8
    assert after_train["sample_rate"] == pytest.approx(1 / steps_per_epoch)
    assert after_train["steps"] == 3 * steps_per_epoch
    assert total["steps"] == total["planned_steps"] == (3 + 2) * steps_per_epoch
    # one noise multiplier for the whole plan: training spends part of the budget, the fine-tune the rest
    assert after_train["epsilon"] < total["epsilon"] <= 3.0
    assert total["epsilon"] > 0.97 * 3.0  # the multiplier was solved for exactly these steps
    assert total["noise_multiplier"] == after_train["noise_multiplier"] > 0.5
    # the magnitude mask held through the DP fine-tune, and the model still learned
    model = steps.load_model(recipe, pruned)
    assert pruned.record["sparsity"] == pytest.approx(0.3, abs=0.01)
    assert accuracy(model, data.x_test, data.y_test) > 0.85


def test_cached_rerun_reports_the_same_epsilon(tmp_path, one_torch_thread):
    recipe = _load(_recipe(tmp_path, TABULAR_DP, epochs=2))
    _, _, _, first = _train_and_prune(recipe, tmp_path / "cache")
    cache, _, _, again = _train_and_prune(recipe, tmp_path / "cache")
    assert [status for _, status in cache.events] == ["hit", "hit"]
    assert again.record["privacy"] == first.record["privacy"]
    assert again.record["privacy"]["epsilon"] <= 8.0


def test_budget_changes_retrain(tmp_path, one_torch_thread):
    from toolchain.pipeline import steps
    from toolchain.pipeline.cache import StageCache

    cache = StageCache(tmp_path / "cache", log=lambda _m: None)
    low = _load(_recipe(tmp_path, TABULAR_DP, epochs=1, epsilon=2.0))
    high = low.model_copy(
        update={
            "train": low.train.model_copy(
                update={"privacy": low.train.privacy.model_copy(update={"epsilon": 4.0})}
            )
        }
    )
    data = steps.dataset(low)
    a, b = steps.train(cache, low, data), steps.train(cache, high, data)
    assert a.key != b.key
    assert a.record["privacy"]["noise_multiplier"] > b.record["privacy"]["noise_multiplier"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"epsilon": 0.0}, "'train.privacy.epsilon' (0.0): Input should be greater than 0"),
        ({"epsilon": -1.0}, "Input should be greater than 0"),
        ({"max_grad_norm": 0.0}, "'train.privacy.max_grad_norm' (0.0): Input should be greater than 0"),
        ({"delta": 0.01}, "delta = 0.01 is outside (0, 1/N) = (0, 0.0022) for N = 455 training rows"),
        ({"delta": 0.0}, "'train.privacy.delta' (0.0): Input should be greater than 0"),
        (
            {"epsilon": 0.3, "epochs": 400},
            "needs a noise multiplier of 90.0 (at most 50 trains anything); 131 epochs in total fit",
        ),
        ({"epsilon": 0.05}, "not even one epoch fits"),
    ],
)
def test_bad_privacy_settings_exit_2_before_training(tmp_path, capsys, values, expected):
    out = tmp_path / "out"
    code = main(["run", str(_recipe(tmp_path, TABULAR_DP, **values)), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written, nothing trained


def test_privacy_without_opacus_names_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)  # `import opacus` now raises ImportError
    code = main(["run", str(_recipe(tmp_path, TABULAR_DP)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "pip install 'edgeopt[privacy]'" in err


def test_batchnorm_is_refused_by_name_with_the_fix(tmp_path, capsys):
    code = main(["run", str(_recipe(tmp_path, BATCHNORM_DP, fix="false")), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "DP-SGD cannot train BatchNorm layers (features.0.1, features.2.body.0.1, " in err
    assert "GroupNorm" in err and "fix_modules = true" in err


@pytest.mark.slow
def test_fix_modules_trains_groupnorm_and_structured_pruning_keeps_it(tmp_path, one_torch_thread):
    import torch

    from toolchain.pipeline import steps

    recipe = _load(_recipe(tmp_path, BATCHNORM_DP, fix="true"))
    _, data, _, pruned = _train_and_prune(recipe, tmp_path / "cache")
    model = steps.load_model(recipe, pruned)  # the plan replays on the GroupNorm model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert all(
        m.num_groups == m.num_channels for m in norms
    )  # per-channel, as ModuleValidator.fix made them (<= 32)
    assert pruned.record["params_after"] < pruned.record["params_before"]
    assert model(torch.as_tensor(data.x_test[:4])).shape == (4, 8)
    total = pruned.record["privacy"]
    assert total["steps"] == total["planned_steps"] == (2 + 2 * 1) * 10  # ceil(320 / 32) steps per epoch
    assert total["epsilon"] <= 8.0


def test_group_norm_with_multichannel_groups_needs_round_to():
    import torch

    from toolchain.errors import BadInput
    from toolchain.pruning.norms import per_channel_group_norms, resync_group_norms

    model = torch.nn.Sequential(torch.nn.GroupNorm(4, 4), torch.nn.GroupNorm(2, 8))
    per_channel = per_channel_group_norms(model)
    assert per_channel == {"0"}
    model[0].num_channels, model[1].num_channels = 3, 6
    resync_group_norms(model, per_channel)
    assert model[0].num_groups == 3 and model[1].num_groups == 2
    model[1].num_channels = 5
    with pytest.raises(BadInput, match="round_to to a multiple of 2"):
        resync_group_norms(model, per_channel)


def test_search_of_prune_amount_refuses_privacy(tmp_path):
    from toolchain.errors import BadInput
    from toolchain.search.session import run_search

    recipe = _load(_recipe(tmp_path, TABULAR_DP))
    with pytest.raises(BadInput, match="budget does not cover"):
        run_search(recipe, None, "cpu-server", tmp_path / "run", None, "prune_amount")


def test_privacy_config_documents_every_field():
    for name, field in PrivacyConfig.model_fields.items():
        assert field.description, name
    assert TrainConfig.model_fields["privacy"].default is None  # off unless asked for
    assert PruneConfig().finetune_epochs == 3


@pytest.mark.slow
def test_run_writes_spent_epsilon_to_report_manifest_and_card(tmp_path, fast_targets_dir, capsys):
    out = tmp_path / "out"
    args = [
        "run",
        str(_recipe(tmp_path, TABULAR_DP, epochs=4, epsilon=3.0)),
        "--out",
        str(out),
        "--targets-dir",
        str(fast_targets_dir),
    ]
    main(args)
    report = json.loads((out / "report.json").read_text())
    dp = report["privacy"]["dp_sgd"]
    assert report["privacy"]["differentially_private_training"] is True
    assert 0.97 * 3.0 < dp["epsilon"] <= 3.0 and dp["steps"] == (4 + 2) * 8 and dp["delta"] == 1e-5
    with zipfile.ZipFile(out / "cpu-server" / "tabular-dp-cpu-server.zip") as z:
        manifest = json.loads(z.read("manifest.json"))
        card = z.read("model_card.md").decode()
    assert manifest["privacy"]["epsilon"] == dp["epsilon"]
    assert manifest["privacy"]["noise_multiplier"] == dp["noise_multiplier"]
    assert f"(epsilon = {dp['epsilon']:.4g}, delta = 1e-05)-differentially private" in card
    capsys.readouterr()
    main(args)  # cached: same epsilon, nothing retrained
    again = json.loads((out / "report.json").read_text())
    assert again["privacy"] == report["privacy"]
    assert {s["stage"]: s["status"] for s in again["stages"]}["train"] == "hit"
