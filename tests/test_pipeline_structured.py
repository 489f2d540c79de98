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


def test_run_benchmarks_the_pruned_network_in_fp32_beside_its_int8_artifact(tmp_path):
    """With structured pruning the run also times the pruned model without int8, so a user sees
    when int8 kernels lose to fp32 on narrow layers (measured: MobileNetV2 pruned 75% at 224 px)."""
    from toolchain.pipeline import RunOptions, run_pipeline
    from toolchain.report import render_target, run_document

    recipe = Recipe(train={"epochs": 2}, prune={"kind": "structured", "amount": 0.5, "finetune_epochs": 1},
                    targets=["cpu-server"])
    result = run_pipeline(recipe, RunOptions(out_dir=tmp_path / "run"))
    m = result.targets["cpu-server"].metrics
    pf = m["pruned_fp32"]
    assert pf["bytes"] < m["fp32_bytes"] and pf["bytes"] > m["bytes"]  # smaller than fp32, larger than int8
    assert 0 < pf["accuracy"] <= 1 and pf["p50_ms"] > 0
    assert m["int8_speedup_vs_pruned_fp32"] == pf["p50_ms"] / m["latency_ms"]["p50"]
    row = next(line for line in render_target("cpu-server", result.targets["cpu-server"]).splitlines()
               if "pruned fp32" in line)
    assert f"{pf['p50_ms']:.4f} (pruned)" in row
    doc = run_document(result)["targets"]["cpu-server"]
    assert doc["pruned_fp32"]["bytes"] == pf["bytes"]

    # an unpruned (magnitude) recipe has no such candidate: same network, nothing to compare
    plain = run_pipeline(Recipe(train={"epochs": 2}, prune={"kind": "none"}, targets=["cpu-server"]),
                         RunOptions(out_dir=tmp_path / "plain"))
    assert "pruned_fp32" not in plain.targets["cpu-server"].metrics
