"""Structured pruning: exact params/MACs after cutting, coupled layers, replay, errors, accuracy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.config.base import validate
from toolchain.config.zoo import ModelConfig, build_model
from toolchain.errors import BadInput, ConfigError
from toolchain.pruning import PrunePlan, replay_plan
from toolchain.pruning.graph import UntraceableLayer, example_input
from toolchain.pruning.measure import params_and_macs
from toolchain.stages.prune import PruneConfig, prune
from toolchain.stages.train import TrainConfig, train

FT = TrainConfig(epochs=10, batch_size=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(digits):
    model, metrics = train(build_model(ModelConfig(kwargs={"width": 8})), digits, FT)
    return model, metrics["accuracy"]


def _structured(**kw) -> PruneConfig:
    return PruneConfig(kind="structured", **{"finetune_epochs": 2, **kw})


def _digits_params(w1: int, w2: int, hidden: int) -> int:
    """conv 1->w1 3x3, conv w1->w2 3x3, linear w2*16->hidden, linear hidden->10 (all with bias)."""
    return (w1 * 9 + w1) + (w2 * w1 * 9 + w2) + (w2 * 16 * hidden + hidden) + (hidden * 10 + 10)


def test_digits_half_channels_exact_params_and_accuracy(trained, digits):
    model, base_acc = trained
    before = copy.deepcopy(model.state_dict())
    pruned, m = prune(model, digits, _structured(amount=0.5), FT)
    # Every prunable group keeps half its width; the classifier (10 outputs) is never cut.
    assert m["params_before"] == _digits_params(8, 16, 128) == 35434
    assert m["params_after"] == _digits_params(4, 8, 64) == 9242
    assert m["macs_after"] < 0.3 * m["macs_before"]
    assert m["channels_removed"] == (8 + 16 + 128) // 2
    assert pruned(torch.as_tensor(digits.x_test[:5])).shape == (5, 10)
    # Input untouched: same tensors, same shapes.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Measured: 0.978 before, 0.961-0.972 after 2 fine-tune epochs; floor with margin.
    assert base_acc > 0.95
    assert m["accuracy"] >= base_acc - 0.05, (base_acc, m["accuracy"])


def test_plan_replays_on_fresh_model(trained, digits, tmp_path):
    model, _ = trained
    pruned, m = prune(model, digits, _structured(amount=0.4, steps=2, criterion="l1"), FT)
    plan = PrunePlan.from_dict(m["plan"])
    PrunePlan.load(plan.save(tmp_path / "plan.json"))  # JSON round-trip
    fresh = replay_plan(build_model(ModelConfig(kwargs={"width": 8}), seed=123), PrunePlan.load(tmp_path / "plan.json"))
    fresh.load_state_dict(pruned.state_dict())
    x = torch.as_tensor(digits.x_test[:64])
    assert torch.equal(fresh.eval()(x), pruned.eval()(x))
    assert len(m["accuracy_per_step"]) == 2


def test_global_scope_removes_exact_total(trained, digits):
    model, _ = trained
    _, m = prune(model, digits, _structured(amount=0.5, scope="global", finetune_epochs=0), FT)
    assert m["channels_removed"] == (8 + 16 + 128) // 2
    assert m["params_after"] < m["params_before"]


def test_amount_out_of_range_is_config_error():
    with pytest.raises(ConfigError, match="amount"):
        validate(PruneConfig, {"kind": "structured", "amount": 1.5}, "recipe")


def test_bn_scale_without_batchnorm_is_bad_input(trained, digits):
    with pytest.raises(BadInput, match="bn_scale"):
        prune(trained[0], digits, _structured(criterion="bn_scale"), FT)


class _Residual(nn.Module):
    """Stem, a residual block (add), a depthwise conv, a concat of two branches, a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16))
        self.left = nn.Conv2d(16, 8, 1)
        self.right = nn.Conv2d(16, 8, 1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        x = torch.relu(self.dw(x))
        x = torch.cat([self.left(x), self.right(x)], 1)
        return self.head(x.mean((2, 3)))


def test_residual_depthwise_concat_coupled(digits):
    model = _Residual()
    pruned, m = prune(model, digits, _structured(amount=0.5, finetune_epochs=0), FT)
    # stem+body+dw are one group (add + depthwise): 16 -> 8; left/right 8 -> 4 each, concat 16 -> 8.
    assert (pruned.stem[0].out_channels, pruned.body[0].out_channels, pruned.dw[0].out_channels) == (8, 8, 8)
    assert (pruned.left.out_channels, pruned.right.out_channels, pruned.head.in_features) == (4, 4, 8)
    assert pruned.dw[0].groups == 8 and pruned.head.out_features == 10
    x = torch.as_tensor(digits.x_test[:16])
    fresh = replay_plan(_Residual(), PrunePlan.from_dict(m["plan"]))
    fresh.load_state_dict(pruned.state_dict())
    assert torch.equal(fresh.eval()(x), pruned.eval()(x))
    assert m["params_after"] == params_and_macs(pruned, example_input(digits.input_shape))["params"]
    assert model.stem[0].out_channels == 16  # input not mutated


class _Folded(nn.Module):
    """forward() folds 16 channels into 8 with a hard-coded reshape: invisible to the dependency graph."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.after = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv(x)
        x = x.reshape(x.shape[0], 2, 8, *x.shape[2:]).sum(1)
        return self.head(self.after(x).mean((2, 3)))


def test_untraceable_layer_names_the_layer(digits):
    with pytest.raises(UntraceableLayer, match="'conv'.*ignored_layers") as err:
        prune(_Folded(), digits, _structured(finetune_epochs=0), FT)
    assert isinstance(err.value, BadInput) and err.value.exit_code == 2
    pruned, _ = prune(_Folded(), digits, _structured(finetune_epochs=0, ignored_layers=["conv"]), FT)
    assert pruned.conv.out_channels == 16 and pruned.after.out_channels < 8


def test_unknown_ignored_layer_lists_real_names(digits):
    with pytest.raises(BadInput, match="not in the model.*features"):
        prune(build_model(ModelConfig(kwargs={"width": 8})), digits, _structured(ignored_layers=["nope"]), FT)


def test_plan_for_other_model_is_bad_input(trained, digits):
    _, m = prune(trained[0], digits, _structured(amount=0.5, finetune_epochs=0), FT)
    with pytest.raises(BadInput, match="does not have|does not fit"):
        replay_plan(_Residual(), PrunePlan.from_dict(m["plan"]))
    np.testing.assert_equal(PrunePlan.from_dict(m["plan"]).to_dict(), m["plan"])
