"""Structured-pruning amount (or number of dropped blocks) under an accuracy budget, by bisection.

Accuracy after prune + fine-tune falls (roughly) monotonically with the channel fraction
removed, so bisection between a known-good amount (0: the unpruned model) and a known-bad one
finds the largest amount within the budget in `iterations` prune/fine-tune runs. Each run starts
from the same trained model, never from the previous candidate.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from toolchain.search.budget import Candidate, SearchBudget, SearchReport, pick_best
from toolchain.search.measure import export_onnx, latency_p50, onnx_accuracy


def _candidate(model, data, knob: dict[str, Any], prune_cfg, train_cfg, out_dir: Path, floor: float) -> Candidate:
    """Prune a fresh copy of `model` with `knob` ({"amount": a} or {"drop_blocks": n}) applied."""
    from toolchain.pruning.plan import PrunePlan
    from toolchain.stages.prune import prune
    from toolchain.torch_io import save_state_dict

    ((key, value),) = knob.items()
    name = f"amount_{value:.4f}" if key == "amount" else f"{key}_{value}"
    cdir = out_dir / "candidates" / name
    cdir.mkdir(parents=True, exist_ok=True)
    cfg = prune_cfg.model_copy(update={"kind": "structured", **knob})
    pruned, metrics = prune(model, data, cfg, train_cfg)
    save_state_dict(pruned, cdir / "model.pt")
    PrunePlan.from_dict(metrics["plan"]).save(cdir / "plan.json")
    onnx_path = export_onnx(pruned, data.x_test, cdir / "model.onnx")
    acc = onnx_accuracy(onnx_path, data.x_test, data.y_test)
    detail = {k: metrics[k] for k in ("params_after", "macs_after", "accuracy_per_step")}
    detail.update(amount=cfg.amount, drop_blocks=cfg.drop_blocks, blocks_dropped=metrics.get("blocks_dropped", []),
                  weights=f"candidates/{name}/model.pt", plan=f"candidates/{name}/plan.json")
    return Candidate(name, f"candidates/{name}/model.onnx", acc, onnx_path.stat().st_size,
                     meets_budget=acc >= floor, detail=detail)


def _baseline(model, data, budget: SearchBudget, out_dir: Path) -> tuple[list[Candidate], float, float]:
    base_path = export_onnx(model, data.x_test, out_dir / "candidates" / "baseline" / "model.onnx")
    baseline = onnx_accuracy(base_path, data.x_test, data.y_test)
    floor = budget.allowed(baseline)
    return [Candidate("baseline", "candidates/baseline/model.onnx", baseline, base_path.stat().st_size,
                      meets_budget=True, baseline=True, detail={"amount": 0.0, "drop_blocks": 0})], baseline, floor


def search_prune_amount(model, data, budget: SearchBudget, out_dir: Path, *, prune_cfg=None, train_cfg=None,
                        hi: float = 0.9, iterations: int = 4, measure_latency: bool = True) -> SearchReport:
    """Largest structured-pruning amount in (0, hi] whose ONNX accuracy meets `budget`.

    `model` is the trained model (not modified); `prune_cfg` supplies criterion, scope, steps and
    fine-tuning (its kind and amount are overridden). Writes out_dir/best/ (model.onnx, model.pt,
    plan.json), every candidate under out_dir/candidates/, search_prune.json and Pareto PNGs.
    """
    from toolchain.stages.prune import PruneConfig
    from toolchain.stages.train import TrainConfig

    prune_cfg = prune_cfg or PruneConfig(kind="structured")
    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    candidates, baseline, floor = _baseline(model, data, budget, out_dir)
    tried: list[dict[str, Any]] = []
    reverted: list[dict[str, Any]] = []
    good, bad = 0.0, None
    amount = hi
    for _ in range(iterations + 1):
        cand = _candidate(model, data, {"amount": amount}, prune_cfg, train_cfg, out_dir, floor)
        candidates.append(cand)
        tried.append({"amount": amount, "accuracy": cand.accuracy, "meets_budget": cand.meets_budget,
                      "params": cand.detail["params_after"], "macs": cand.detail["macs_after"]})
        if cand.meets_budget:
            good = amount
            if bad is None:
                break  # the largest amount allowed already fits: nothing to search
        else:
            bad = amount
            reverted.append({"amount": amount, "back_to": good,
                             "reason": f"accuracy {cand.accuracy:.4f} below the budget floor {floor:.4f}"})
        amount = round((good + bad) / 2, 4)
    return _finish(candidates, budget, baseline, floor, tried, reverted, out_dir, data.x_test, measure_latency)


def search_drop_blocks(model, data, budget: SearchBudget, out_dir: Path, *, prune_cfg, train_cfg=None,
                       iterations: int = 4, measure_latency: bool = True) -> SearchReport:
    """Most blocks to drop (pruning/depth.py) whose ONNX accuracy meets `budget`, by bisection
    over 1..all droppable blocks, with `prune_cfg`'s channel amount and schedule for every try.
    Same outputs as search_prune_amount (best/, candidates/, search_prune.json, Pareto PNGs)."""
    from toolchain.errors import BadInput
    from toolchain.pruning.depth import droppable_blocks
    from toolchain.pruning.graph import example_input
    from toolchain.stages.prune_structured import ignored_layer_names
    from toolchain.stages.train import TrainConfig

    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    example = example_input(data.input_shape)
    ignored = ignored_layer_names(model, example, prune_cfg.ignored_layers)
    most = len(droppable_blocks(model, example, ignored))
    if most == 0:
        raise BadInput("this model has no droppable block (none keeps its input's shape)",
                       "search the channel amount instead: --prune-amount")
    candidates, baseline, floor = _baseline(model, data, budget, out_dir)
    tried: list[dict[str, Any]] = []
    reverted: list[dict[str, Any]] = []
    good, bad, n = 0, None, most
    for _ in range(iterations + 1):
        cand = _candidate(model, data, {"drop_blocks": n}, prune_cfg, train_cfg, out_dir, floor)
        candidates.append(cand)
        tried.append({"drop_blocks": n, "accuracy": cand.accuracy, "meets_budget": cand.meets_budget,
                      "params": cand.detail["params_after"], "macs": cand.detail["macs_after"],
                      "blocks_dropped": cand.detail["blocks_dropped"]})
        if cand.meets_budget:
            good = n
            if bad is None:
                break  # every droppable block can go
        else:
            bad = n
            reverted.append({"drop_blocks": n, "back_to": good,
                             "reason": f"accuracy {cand.accuracy:.4f} below the budget floor {floor:.4f}"})
        if bad - good <= 1:
            break
        n = (good + bad) // 2
    return _finish(candidates, budget, baseline, floor, tried, reverted, out_dir, data.x_test, measure_latency,
                   kind="drop_blocks")


def _finish(candidates, budget, baseline, floor, tried, reverted, out_dir: Path, x, measure_latency,
            kind: str = "prune_amount") -> SearchReport:
    from toolchain.search.pareto import plot_pareto

    if measure_latency:
        lat = latency_p50({c.name: out_dir / c.path for c in candidates}, x)
        for c in candidates:
            c.latency_ms = lat[c.name]
    best, met = pick_best(candidates, budget.objective)
    best_dir = out_dir / "best"
    best_dir.mkdir(exist_ok=True)
    for key, fname in (("weights", "model.pt"), ("plan", "plan.json")):
        shutil.copyfile(out_dir / best.detail[key], best_dir / fname)
    shutil.copyfile(out_dir / best.path, best_dir / "model.onnx")
    report = SearchReport(kind, budget.model_dump(), baseline, floor, met, best.name, "best/model.onnx",
                          candidates, tried, reverted)
    report.plots = plot_pareto(candidates, floor, best.name, out_dir, "pareto_prune")
    report.save(out_dir / "search_prune.json")
    return report
