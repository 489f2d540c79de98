"""Knowledge distillation in pruning's fine-tune: the loss, its effect, and that off means off."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from toolchain.errors import BadInput
from toolchain.stages.prune import PruneConfig, prune
from toolchain.stages.train import Distillation, TrainConfig, _distill_loss, distillation, fit, teacher_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs(n: int = 600, seed: int = 0):
    """4 overlapping Gaussian classes in 8-D: a teacher's soft targets carry real information."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centers = rng.normal(0, 1.0, (4, 8))
    x = (centers[y] + rng.normal(0, 1.2, (n, 8))).astype(np.float32)
    return x, y.astype(np.int64)


def _mlp(hidden: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 4))


def _kl(teacher: torch.Tensor, student: torch.Tensor) -> float:
    return float(_distill_loss(student, teacher, 1.0))


def test_distill_loss_is_zero_at_the_teacher_and_scales_with_t_squared():
    t = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    assert float(_distill_loss(t.clone(), t, 4.0)) == pytest.approx(0.0, abs=1e-6)
    s = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    manual = sum(
        float((torch.softmax(t[i] / 2, 0) * (torch.log_softmax(t[i] / 2, 0) - torch.log_softmax(s[i] / 2, 0))).sum())
        for i in range(2)
    ) / 2 * 4  # batch mean, times T^2
    assert float(_distill_loss(s, t, 2.0)) == pytest.approx(manual, rel=1e-5)


def test_full_distillation_makes_the_student_follow_the_teacher_not_the_labels():
    x, y = _blobs()
    cfg = TrainConfig(epochs=30, batch_size=64, lr=3e-3, seed=0)
    teacher = _mlp(64, 0)  # untrained: its logits are unrelated to y, so only distillation can match them
    soft = 3 * teacher_logits(teacher, x)
    plain = fit(_mlp(32, 1), x, y, cfg)
    taught = fit(_mlp(32, 1), x, y, cfg, distill=Distillation(soft, weight=1.0, temperature=2.0))
    with torch.no_grad():
        xt = torch.as_tensor(x)
        kl_plain, kl_taught = _kl(soft, plain(xt)), _kl(soft, taught(xt))
        agree = float((taught(xt).argmax(1) == soft.argmax(1)).float().mean())
    assert kl_taught < 0.2 * kl_plain, (kl_taught, kl_plain)
    assert agree > 0.8


def test_distill_zero_trains_exactly_as_before():
    x, y = _blobs(200)
    cfg = TrainConfig(epochs=3, batch_size=32, seed=0)
    a = fit(_mlp(16, 2), x, y, cfg)
    b = fit(_mlp(16, 2), x, y, cfg, distill=Distillation(torch.zeros(len(x), 4), weight=0.0, temperature=4.0))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    data = SimpleNamespace(x_train=x, y_train=y)
    assert distillation(a, data, 0.0, 4.0) is None


def test_magnitude_prune_with_distillation_leaves_the_teacher_untouched():
    x, y = _blobs(300)
    teacher = fit(_mlp(32, 3), x, y, TrainConfig(epochs=5, seed=0))
    before = copy.deepcopy(teacher.state_dict())
    data = SimpleNamespace(x_train=x, y_train=y, x_test=x[:100], y_test=y[:100])
    _pruned, metrics = prune(teacher, data, PruneConfig(kind="magnitude", amount=0.5, finetune_epochs=2, distill=0.5),
                            TrainConfig(seed=0))
    assert metrics["sparsity"] == pytest.approx(0.5, abs=0.01) and 0.25 < metrics["accuracy"] <= 1.0
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_teacher_logits_restore_the_teachers_mode():
    teacher = _mlp(8, 0).train()
    teacher_logits(teacher, np.zeros((3, 8), np.float32))
    assert teacher.training


def test_distillation_of_a_regressor_is_bad_input():
    x = np.zeros((10, 8), np.float32)
    data = SimpleNamespace(x_train=x, y_train=np.zeros(10, np.float32))
    with pytest.raises(BadInput, match="distill needs a classifier"):
        distillation(_mlp(4, 0), data, 0.5, 4.0)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_distill_weight_outside_0_1_is_rejected(value):
    with pytest.raises(ValueError, match="distill"):
        PruneConfig(distill=value)
