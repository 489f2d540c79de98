"""GroupNorm under channel pruning. Torch-Pruning cuts a GroupNorm's channels but keeps its group
count, so a per-channel GroupNorm (num_groups == channels, what Opacus's ModuleValidator.fix makes
of a BatchNorm of <= 32 channels) ends with more groups than channels and the model stops running.
Per-channel ones are kept per channel (exactly the same normalization of the surviving channels);
a GroupNorm of multi-channel groups keeps its group count, which needs a width it divides."""

from __future__ import annotations

from toolchain.errors import BadInput


def per_channel_group_norms(model) -> set[str]:
    """Names of the GroupNorm layers that normalize every channel on its own."""
    import torch

    return {
        name
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.GroupNorm) and m.num_groups == m.num_channels
    }


def resync_group_norms(model, per_channel: set[str]) -> None:
    """After a cut, in place: per-channel GroupNorms get one group per surviving channel; a
    multi-channel-group GroupNorm left with a width its groups do not divide is refused."""
    import torch

    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.GroupNorm):
            continue
        if name in per_channel:
            m.num_groups = m.num_channels
        elif m.num_channels % m.num_groups:
            raise BadInput(
                f"structured pruning left GroupNorm '{name}' with {m.num_channels} channels, which its "
                f"{m.num_groups} groups do not divide",
                f"set [prune] round_to to a multiple of {m.num_groups}, or ignore the layer feeding it",
            )
