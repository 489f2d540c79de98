"""Structured pruning: physically remove channels (filters) so the exported graph is smaller
and faster, not just sparser.

The stage strings together the pruning package: analysis (dependency graph, classifier guard),
scoring (importance criterion), policy (how many channels per group per step) and surgery
(Torch-Pruning cuts, recorded as a replayable plan). With `steps` > 1 it alternates a cut and a
short fine-tune, so each cut is scored on a model that has recovered from the previous one.
With `drop_blocks`, whole shape-preserving blocks go first (pruning/depth.py): fewer nodes, not
only thinner ones.
"""

from __future__ import annotations

import copy
from typing import Any

from toolchain.errors import BadInput
from toolchain.pruning.depth import droppable_blocks, rank_blocks, replace_with_identity
from toolchain.pruning.graph import build_graph, check_runs, example_input, find_classifier, resolve_layers
from toolchain.pruning.measure import params_and_macs
from toolchain.pruning.norms import per_channel_group_norms, resync_group_norms
from toolchain.pruning.plan import PrunePlan
from toolchain.pruning.policy import apply_cuts, plan_step, score_groups
from toolchain.pruning.scoring import NEEDS_GRADIENTS, accumulate_gradients, make_importance
from toolchain.stages.train import TrainConfig, accuracy, distillation, fit


def ignored_layer_names(model, example, configured: list[str] | tuple[str, ...]) -> list[str]:
    """The configured layers plus the classifier: cutting its outputs would delete classes."""
    names = list(configured)
    classifier = find_classifier(model, example)
    if classifier is not None and classifier not in names:
        names.append(classifier)
    return names


def _plan(graph, data, dropped, cfg, ignored: list[str]) -> PrunePlan:
    """What was cut, as data: replayable on a fresh model (pruning/plan.py)."""
    return PrunePlan(
        input_shape=tuple(int(s) for s in data.input_shape),
        history=tuple((n, bool(o), tuple(int(i) for i in idxs)) for n, o, idxs in graph.pruning_history()),
        dropped_blocks=tuple(dropped),
        meta={"criterion": cfg.criterion, "scope": cfg.scope, "amount": cfg.amount, "steps": cfg.steps,
              "ignored_layers": ignored},
    )


def structured_prune(model, data, cfg, train_cfg: TrainConfig, ledger=None) -> tuple[Any, dict[str, Any]]:
    """Return a channel-pruned, fine-tuned copy of `model` and its metrics (with the plan as data).

    `cfg` is a PruneConfig with kind = "structured"; `model` is not modified. With [train.privacy]
    every fine-tune is DP-SGD accounted in `ledger`.
    """
    work = copy.deepcopy(model).eval()
    # the unpruned model teaches every fine-tune step
    distill = distillation(model, data, cfg.distill, cfg.distill_temperature)
    example = example_input(data.input_shape)
    before = params_and_macs(work, example)
    ignored = ignored_layer_names(work, example, cfg.ignored_layers)
    # Resolved before the block drops: an unknown name fails before any work, and a dropped block
    # never holds an ignored layer, so these module objects stay in the model.
    ignored_modules = resolve_layers(work, ignored)
    ranked, dropped = drop_least_important_blocks(work, example, data, cfg.drop_blocks, ignored)
    unpruned = copy.deepcopy(work)  # after the block drops: what a failing channel cut is diagnosed on
    graph = build_graph(work, example)
    importance = make_importance(cfg.criterion)
    ft_cfg = train_cfg.model_copy(update={"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr})

    per_channel_norms = per_channel_group_norms(work)
    originals: dict[str, int] = {}
    step_acc = []
    for step in range(1, cfg.steps + 1):
        if cfg.criterion in NEEDS_GRADIENTS:
            accumulate_gradients(work, data.x_train, data.y_train)
        groups = score_groups(graph, work, importance, ignored_modules, originals)
        if not groups:
            raise BadInput(f"criterion '{cfg.criterion}' found no prunable channel groups in this model",
                           "use criterion = \"l2\" (bn_scale needs BatchNorm layers), or shorten ignored_layers")
        if step == 1:
            originals = {g.root: g.original for g in groups}
        apply_cuts(graph, work, plan_step(groups, cfg.amount * step / cfg.steps, cfg.scope, cfg.round_to))
        resync_group_norms(work, per_channel_norms)
        work.zero_grad(set_to_none=True)
        check_runs(work, example, unpruned, ignored)
        if cfg.finetune_epochs:
            fit(work, data.x_train, data.y_train, ft_cfg, desc=f"fine-tune {step}/{cfg.steps}", copy_model=False,
                distill=distill, ledger=ledger)
        step_acc.append(accuracy(work, data.x_test, data.y_test))

    work.eval()
    after = params_and_macs(work, example)
    plan = _plan(graph, data, dropped, cfg, ignored)
    metrics = {
        "accuracy": step_acc[-1],
        "accuracy_per_step": step_acc,
        "params_before": before["params"], "params_after": after["params"],
        "macs_before": before["macs"], "macs_after": after["macs"],
        # Fraction of parameters physically removed (comparable with magnitude pruning's zeros).
        "sparsity": 1 - after["params"] / max(before["params"], 1),
        "channels_removed": sum(originals.values()) - sum(_widths(graph, work, ignored_modules).values()),
        "plan": plan.to_dict(),
    }
    if cfg.drop_blocks:
        metrics["blocks_dropped"] = dropped
        metrics["block_loss_increase"] = {name: round(delta, 6) for name, delta in ranked}  # all candidates, ranked
    return work, metrics


def drop_least_important_blocks(work, example, data, n: int, ignored: list[str]) -> tuple[list[tuple[str, float]], list[str]]:
    """In place on `work`: replace the `n` blocks whose removal hurts the loss least by the identity."""
    if not n:
        return [], []
    blocks = droppable_blocks(work, example, ignored)
    if n > len(blocks):
        raise BadInput(f"[prune] drop_blocks = {n}, but this model has {len(blocks)} droppable blocks "
                       f"({', '.join(blocks) or 'none: no block keeps its input shape'})",
                       f"set drop_blocks to at most {len(blocks)}")
    ranked = rank_blocks(work, blocks, data.x_train, data.y_train)
    dropped = sorted((name for name, _ in ranked[:n]), key=blocks.index)
    replace_with_identity(work, dropped)
    return ranked, dropped


def _widths(graph, model, ignored_modules) -> dict[str, int]:
    from toolchain.pruning.graph import root_types

    names = {m: n for n, m in model.named_modules()}
    return {names[g[0].dep.target.module]: len(g[0].idxs)
            for g in graph.get_all_groups(ignored_layers=ignored_modules, root_module_types=root_types())}
