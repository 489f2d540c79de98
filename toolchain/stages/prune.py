"""Prune, then fine-tune briefly to recover accuracy.

`kind` selects a pruning method from PRUNERS. "magnitude" is global unstructured magnitude
pruning: it zeroes the smallest weights across all conv/linear layers, which shrinks a
compressed file but not latency. "structured" physically removes channels across coupled layers (stages/prune_structured.py);
its plan must be replayed on a freshly built model before its weights load (pruning/plan.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from toolchain.config.stages import PruneConfig
from toolchain.stages.train import TrainConfig, accuracy, distillation, fit


def _prunable(model) -> list[tuple[Any, str]]:
    import torch

    return [
        (m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv1d, torch.nn.Linear))
    ]


def magnitude_prune(model, data, cfg: PruneConfig, train_cfg: TrainConfig, ledger=None) -> tuple[Any, dict[str, float]]:
    import torch
    from torch.nn.utils import prune as tprune

    teacher, model = model, copy.deepcopy(model)
    params = _prunable(model)
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=cfg.amount)
    ft_cfg = train_cfg.model_copy(update={"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr})
    # The pruning reparametrization (weight = weight_orig * mask) keeps pruned weights at zero
    # through fine-tuning; prune.remove then bakes the mask into a plain weight tensor.
    tuned = fit(model, data.x_train, data.y_train, ft_cfg, desc="fine-tune", copy_model=False,
                distill=distillation(teacher, data, cfg.distill, cfg.distill_temperature), ledger=ledger)
    for module, name in _prunable(tuned):
        tprune.remove(module, name)
    total = sum(m.weight.numel() for m, _ in _prunable(tuned))
    zeros = sum(int((m.weight == 0).sum()) for m, _ in _prunable(tuned))
    with torch.no_grad():
        acc = accuracy(tuned, data.x_test, data.y_test)
    return tuned, {"accuracy": acc, "sparsity": zeros / max(total, 1)}


def no_prune(model, data, cfg: PruneConfig, train_cfg: TrainConfig, ledger=None) -> tuple[Any, dict[str, float]]:
    model = copy.deepcopy(model)
    return model, {"accuracy": accuracy(model, data.x_test, data.y_test), "sparsity": 0.0}


def _structured_prune(model, data, cfg: PruneConfig, train_cfg: TrainConfig, ledger=None) -> tuple[Any, dict[str, Any]]:
    # Imported on use: the recipe schema imports this module, and loading it must stay light.
    from toolchain.stages.prune_structured import structured_prune

    return structured_prune(model, data, cfg, train_cfg, ledger)


PRUNERS: dict[str, Callable[..., tuple[Any, dict[str, Any]]]] = {
    "none": no_prune,
    "magnitude": magnitude_prune,
    "structured": _structured_prune,
}


def prune(model, data, cfg: PruneConfig, train_cfg: TrainConfig, ledger=None) -> tuple[Any, dict[str, float]]:
    """Return a pruned, fine-tuned copy of `model` and its metrics; `model` is not modified.
    With [train.privacy], fine-tunes are DP-SGD and spend from `ledger` (the recipe's one budget)."""
    return PRUNERS[cfg.kind](model, data, cfg, train_cfg, ledger)
