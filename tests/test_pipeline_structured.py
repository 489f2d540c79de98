"""Structured pruning through the cached pipeline steps: the plan is saved beside the weights and
replayed when a later stage (export, benchmark) loads the pruned model from the cache."""

from __future__ import annotations

import json

import numpy as np
import torch

from toolchain import steps
from toolchain.cache import StageCache
from toolchain.config.recipe import Recipe


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_structured_prune_entry_replays_into_a_smaller_model_that_exports(tmp_path):
    recipe = Recipe(train={"epochs": 2}, prune={"kind": "structured", "amount": 0.5, "finetune_epochs": 1})
    cache = StageCache(tmp_path)
    data = steps.dataset(recipe)
    trained = steps.train(cache, recipe, data)
    pruned = steps.prune(cache, recipe, data, trained)
    assert pruned.record["plan"] == "plan.json" and pruned.path("plan.json").is_file()
    assert json.loads(pruned.path("plan.json").read_text())["schema_version"] == 1

    full, small = steps.load_model(recipe, trained), steps.load_model(recipe, pruned)
    assert _params(small) < 0.4 * _params(full)
    with torch.no_grad():
        logits = small(torch.as_tensor(data.x_test[:8])).numpy()
    assert logits.shape == (8, 10) and np.isfinite(logits).all()

    exported = steps.export(cache, recipe, data, pruned, label="export[pruned]")  # parity-checked inside
    assert exported.record["parity"]["max_abs_diff"] < 1e-4
    # the cache hit path loads through the same replay
    again = steps.prune(StageCache(tmp_path), recipe, data, trained)
    assert again.hit and _params(steps.load_model(recipe, again)) == _params(small)
