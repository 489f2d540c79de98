"""Scoring: importance criteria, by name, mapped onto Torch-Pruning's group importances.

Every criterion scores a whole coupled group (all layers that lose the channel), normalised by
the group mean so that scores are comparable across groups for global ranking.
"""

from __future__ import annotations

from typing import Any, Literal

from toolchain.errors import BadInput

Criterion = Literal["l1", "l2", "bn_scale", "taylor", "random"]

# Taylor (first-order |w * dL/dw|) needs gradients of the loss on real data before scoring.
NEEDS_GRADIENTS = frozenset({"taylor"})


def make_importance(criterion: Criterion) -> Any:
    import torch_pruning as tp

    imp = tp.importance
    table = {
        "l1": lambda: imp.GroupMagnitudeImportance(p=1),
        "l2": lambda: imp.GroupMagnitudeImportance(p=2),
        "bn_scale": lambda: imp.BNScaleImportance(),
        "taylor": lambda: imp.GroupTaylorImportance(),
        "random": lambda: imp.RandomImportance(),
    }
    if criterion not in table:
        raise BadInput(f"unknown pruning criterion '{criterion}'", f"use one of {', '.join(table)}")
    return table[criterion]()


def accumulate_gradients(model, x, y, samples: int = 256) -> None:
    """Populate .grad with the loss gradient on a fixed slice of training data (for Taylor)."""
    import torch

    model.zero_grad(set_to_none=True)
    model.eval()  # BatchNorm uses running stats: scoring must not depend on batch composition
    xt, yt = torch.as_tensor(x[:samples]), torch.as_tensor(y[:samples])
    out = model(xt)
    loss = torch.nn.functional.cross_entropy(out, yt) if yt.dtype == torch.int64 else torch.nn.functional.mse_loss(out, yt)
    loss.backward()
