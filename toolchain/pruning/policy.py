"""Policy: how many channels each coupled group loses at one step, and which ones.

`amount` is a fraction of *channels*: per layer, every group loses that fraction of its original
width; globally, that fraction of all prunable channels is removed wherever scores are lowest
(so unimportant layers shrink more). Iterative schedules call this with a growing cumulative
fraction; widths are always measured against the original model, so three steps of 0.2 end at
exactly the same widths as one step of 0.6 would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["global", "per_layer"]


@dataclass(frozen=True)
class GroupScore:
    root: str  # name of the layer whose output channels define the group
    width: int  # current channels
    original: int  # channels before any pruning
    scores: list[float]  # one per current channel; lower = less important


@dataclass(frozen=True)
class Cut:
    root: str
    idxs: tuple[int, ...]  # current channel indices to remove


def _floor(original: int, round_to: int) -> int:
    """Never leave a group empty; with round_to, never leave fewer than one block."""
    return min(original, max(1, round_to))


def _keep_count(original: int, fraction: float, round_to: int) -> int:
    keep = original - math.floor(fraction * original + 1e-9)
    keep = math.ceil(keep / round_to) * round_to  # widths in multiples of round_to (SIMD lanes)
    return max(_floor(original, round_to), min(original, keep))


def _lowest(scores: list[float], n: int) -> tuple[int, ...]:
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    return tuple(sorted(order[:n]))


def plan_step(groups: list[GroupScore], fraction: float, scope: Scope, round_to: int = 1) -> list[Cut]:
    """Cuts that bring every group (per_layer) or the whole model (global) to `fraction` removed."""
    if scope == "per_layer":
        cuts = [Cut(g.root, _lowest(g.scores, g.width - _keep_count(g.original, fraction, round_to))) for g in groups]
        return [c for c in cuts if c.idxs]
    return _global_cuts(groups, fraction, round_to)


def _global_cuts(groups: list[GroupScore], fraction: float, round_to: int) -> list[Cut]:
    total_orig = sum(g.original for g in groups)
    already = sum(g.original - g.width for g in groups)
    to_remove = max(0, math.floor(fraction * total_orig + 1e-9) - already)
    ranked = sorted((s, gi, ci) for gi, g in enumerate(groups) for ci, s in enumerate(g.scores))
    left = [g.width for g in groups]
    chosen: dict[int, list[int]] = {}
    for _score, gi, ci in ranked:
        if to_remove == 0:
            break
        if left[gi] <= _floor(groups[gi].original, round_to):
            continue
        chosen.setdefault(gi, []).append(ci)
        left[gi] -= 1
        to_remove -= 1
    if round_to > 1:  # give back channels so every width is a multiple of round_to
        for gi, idxs in chosen.items():
            extra = left[gi] % round_to
            if extra:
                scores = groups[gi].scores
                idxs.sort(key=lambda i: -scores[i])
                del idxs[: round_to - extra]
    return [Cut(groups[gi].root, tuple(sorted(idxs))) for gi, idxs in sorted(chosen.items()) if idxs]


def score_groups(graph: Any, model, importance, ignored: list[Any], originals: dict[str, int]) -> list[GroupScore]:
    """Score every prunable group; groups the criterion cannot score (e.g. no BatchNorm) are skipped."""
    from toolchain.pruning.graph import root_types

    names = {m: n for n, m in model.named_modules()}
    out = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=root_types()):
        root = names[group[0].dep.target.module]
        scores = importance(group)
        if scores is None:
            continue
        width = len(group[0].idxs)
        out.append(GroupScore(root, width, originals.get(root, width), [float(s) for s in scores]))
    return out


def apply_cuts(graph: Any, model, cuts: list[Cut]) -> None:
    """Surgery: remove the channels in place; Torch-Pruning records each cut in its history."""
    modules = dict(model.named_modules())
    for cut in cuts:
        module = modules[cut.root]
        fn = graph.get_pruner_of_module(module).prune_out_channels
        graph.get_pruning_group(module, fn, list(cut.idxs)).prune()
