"""Train: seeded, deterministic supervised training with a held-out test split."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from toolchain.config.stages import TrainConfig
from toolchain.errors import BadInput
from toolchain.torch_io import torch_inputs


def seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, cfg: TrainConfig):
    import torch

    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation (Hinton et al., 2015) for fine-tuning a compressed model: the loss
    becomes (1 - weight) * task loss + weight * T^2 * KL(teacher_T || student_T), where _T means
    softmax at temperature T. The teacher's logits on the training set are computed once (the
    teacher is fixed and fit() does no augmentation), so distilling costs no extra forward passes."""

    teacher_logits: Any  # torch.Tensor [N, classes], row i for training sample i
    weight: float
    temperature: float


def teacher_logits(teacher, x, batch_size: int = 512):
    """`teacher`'s logits on every row of `x`, in eval mode, as one tensor (its mode is restored after)."""
    import torch

    was_training = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            return torch.cat([teacher(*torch_inputs(x, slice(i, i + batch_size))) for i in range(0, len(x), batch_size)])
    finally:
        teacher.train(was_training)


def _distill_loss(student_logits, teacher_logits, temperature: float):
    import torch.nn.functional as F

    t = temperature
    # T^2 keeps the soft targets' gradient scale comparable to the hard loss's as T grows.
    return F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def distillation(teacher, data, weight: float, temperature: float) -> Distillation | None:
    """A fine-tune's distillation from `teacher` ([prune] distill, distill_temperature), or None
    when `weight` is 0."""
    if not weight:
        return None
    if data.y_train.dtype.kind not in "iu":  # signed or unsigned integer class labels
        raise BadInput("[prune] distill needs a classifier (integer labels); this data set has real-valued targets",
                       "set distill = 0")
    return Distillation(teacher_logits(teacher, data.x_train), weight, temperature)


def fit(model, x, y, cfg: TrainConfig, desc: str = "train", copy_model: bool = True,
        distill: Distillation | None = None, ledger=None):
    """Train a *copy* of `model` and return it; the input model is left untouched.

    `copy_model=False` trains `model` itself: only for callers that already own a private copy
    (a pruned model's masked weights are computed tensors, which deepcopy refuses).
    `distill` adds a distillation term towards a teacher's logits (classification only).
    With [train.privacy], training is DP-SGD and `ledger` (privacy/budget.py) accounts its steps.
    """
    import torch

    seed_everything(cfg.seed)
    if copy_model:
        model = copy.deepcopy(model)
    model.train()
    yt = torch.as_tensor(y)
    loss_fn = _loss_for(yt)

    def batch_loss(out, idx):
        loss = loss_fn(out, yt[idx])
        if distill is not None and distill.weight > 0:
            soft = _distill_loss(out, distill.teacher_logits[idx], distill.temperature)
            loss = (1 - distill.weight) * loss + distill.weight * soft
        return loss

    if cfg.privacy is not None:
        from toolchain.privacy.dpsgd import dp_fit

        if ledger is None:
            raise ValueError("DP training needs the recipe's privacy ledger (privacy/budget.py plan_privacy)")
        dp_fit(model, _one_input(x), cfg.epochs, cfg.batch_size, ledger, lambda params: make_optimizer(params, cfg), batch_loss, desc)
    else:
        _minibatch_sgd(model, x, len(yt), cfg, batch_loss, desc)
    model.eval()
    return model


def _one_input(x):
    """DP-SGD's per-sample gradients here take one input tensor; a multi-input model is refused."""
    import torch

    from toolchain.data.feeds import Feeds

    if isinstance(x, Feeds):
        raise BadInput("[train.privacy] supports single-input models; this one takes " + ", ".join(x.names),
                       "train it without [train.privacy]")
    return torch.as_tensor(x)


def _minibatch_sgd(model, x, n: int, cfg: TrainConfig, batch_loss, desc: str) -> None:
    import torch
    from tqdm import tqdm

    opt = make_optimizer(model.parameters(), cfg)
    gen = torch.Generator().manual_seed(cfg.seed)  # shuffling order is part of the seed
    for _ in tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=None, leave=False):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            batch_loss(model(*torch_inputs(x, idx.numpy())), idx).backward()
            opt.step()


def _loss_for(y):
    import torch

    if y.dtype in (torch.int64, torch.int32):
        return torch.nn.functional.cross_entropy
    return torch.nn.functional.mse_loss


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Top-1 accuracy of a torch model, as a fraction."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(*torch_inputs(x, slice(start, start + batch_size)))
            correct += int((logits.argmax(1).numpy() == y[start : start + batch_size]).sum())
    return correct / max(len(x), 1)


def train(model, data, cfg: TrainConfig, ledger=None) -> tuple[Any, dict[str, float]]:
    """Train a fresh copy of `model` on `data`; return it with its held-out accuracy.
    `ledger`: the recipe's privacy ledger when [train.privacy] is set (DP-SGD)."""
    trained = fit(model, data.x_train, data.y_train, cfg, ledger=ledger)
    return trained, {"accuracy": accuracy(trained, data.x_test, data.y_test)}
