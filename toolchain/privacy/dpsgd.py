"""DP-SGD through Opacus: per-sample gradients clipped to max_grad_norm, Gaussian noise of the
planned multiplier, Poisson-sampled batches, every step recorded in the recipe's ledger.

Imported only when a recipe sets [train.privacy]; Opacus itself is imported inside the functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from toolchain.config.stages import PrivacyConfig
from toolchain.errors import BadInput
from toolchain.privacy.budget import PrivacyLedger, require_opacus


def _batchnorm_layers(model) -> list[str]:
    from torch.nn.modules.batchnorm import _BatchNorm

    return [name for name, m in model.named_modules() if isinstance(m, _BatchNorm)]


def dp_trainable(model, cfg: PrivacyConfig):
    """`model` as DP-SGD can train it: with fix_modules, Opacus's ModuleValidator.fix replaces
    BatchNorm by GroupNorm (a copy); otherwise a layer Opacus cannot train is refused by name."""
    require_opacus()
    from opacus.validators import ModuleValidator

    if cfg.fix_modules:
        import copy
        from unittest import mock

        # fix() clones through torch.save, which pickles the model's class by import path; zoo and
        # user models are loaded from files and have none. A deepcopy is the same clone.
        with mock.patch("opacus.validators.module_validator.clone_module", copy.deepcopy):
            model = ModuleValidator.fix(model)
    batchnorms = _batchnorm_layers(model)
    if batchnorms:
        # BatchNorm mixes the samples of a batch: one sample's gradient depends on the others.
        raise BadInput(
            f"DP-SGD cannot train BatchNorm layers ({', '.join(batchnorms)}): they mix samples within "
            "a batch",
            "replace them with GroupNorm in the model, or set [train.privacy] fix_modules = true",
        )
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        first = str(errors[0]).split(". ")[0]
        raise BadInput(
            f"DP-SGD (Opacus) cannot train this model: {first}",
            "replace that layer, or set [train.privacy] fix_modules = true",
        )
    return model


def _bake_masks(model) -> list[tuple[Any, Any]]:
    """Opacus refuses torch.nn.utils.prune's reparametrization (weight = weight_orig * mask, a
    buffer on a trainable layer); train plain weights instead and re-zero them after each step."""
    from torch.nn.utils import prune as tprune

    masks = []
    for module in model.modules():
        mask = getattr(module, "weight_mask", None)
        if mask is not None:
            mask = mask.detach().clone()
            tprune.remove(module, "weight")
            masks.append((module, mask))
    return masks


def _apply_masks(masks) -> None:
    import torch

    with torch.no_grad():
        for module, mask in masks:
            module.weight.mul_(mask)


def _restore_masks(masks) -> None:
    from torch.nn.utils import prune as tprune

    for module, mask in masks:
        tprune.custom_from_mask(module, "weight", mask)


def dp_fit(
    model,
    xt,
    epochs: int,
    batch_size: int,
    ledger: PrivacyLedger,
    make_optimizer: Callable,
    batch_loss: Callable,
    desc: str,
) -> None:
    """Train `model` in place with DP-SGD for `epochs`, continuing `ledger`'s accountant.

    `batch_loss(outputs, row_indices)` gives the mean loss of a batch (the indices select labels
    and distillation targets); `make_optimizer(params)` the recipe's optimizer, which Opacus wraps.
    """
    import torch
    from opacus import PrivacyEngine
    from tqdm import tqdm

    # Opacus warns that its RNG is not cryptographically secure (we seed it: reproducible runs,
    # docs/privacy.md says so) and about hooks on inputs that need no gradient: neither is actionable.
    warnings.filterwarnings("ignore", message="Secure RNG turned off", module="opacus")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    masks = _bake_masks(model)
    for module in model.modules():  # an in-place activation would overwrite the view Opacus's hooks keep
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    rows = torch.utils.data.TensorDataset(xt, torch.arange(len(xt)))
    loader = torch.utils.data.DataLoader(rows, batch_size=batch_size)
    engine = PrivacyEngine(accountant=ledger.config.accountant)
    engine.accountant.history = list(ledger.history)
    private, optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=make_optimizer(model.parameters()),
        data_loader=loader,
        noise_multiplier=ledger.noise_multiplier,
        max_grad_norm=ledger.config.max_grad_norm,
        poisson_sampling=True,
    )
    if abs(private_loader.sample_rate - ledger.sample_rate) > 1e-12:  # the plan's accounting would be wrong
        raise RuntimeError(
            f"Opacus samples at {private_loader.sample_rate}, the plan assumed {ledger.sample_rate}"
        )
    try:
        for _ in tqdm(range(epochs), desc=f"{desc} (DP-SGD)", unit="epoch", disable=None, leave=False):
            for xb, idx in private_loader:
                optimizer.zero_grad(set_to_none=True)
                batch_loss(private(xb), idx).backward()
                optimizer.step()
                _apply_masks(masks)
    finally:
        private._close()  # removes Opacus's hooks and per-sample gradient attributes
    _restore_masks(masks)
    ledger.history = [(float(s), float(q), int(n)) for s, q, n in engine.accountant.history]
