"""Size and compute of a torch model, as Torch-Pruning counts them."""

from __future__ import annotations


def params_and_macs(model, example) -> dict[str, int]:
    """Parameters and multiply-accumulates for one sample (`example` has batch size 1)."""
    import torch
    import torch_pruning as tp

    was_training = model.training
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model.eval(), example)
    model.train(was_training)  # counting must not change the caller's model mode
    return {"params": int(params), "macs": int(macs)}
