"""Analysis: Torch-Pruning's dependency graph, plus the checks that turn its failure modes into
user errors that name a layer.

Torch-Pruning traces the model once and links every channel dimension that must be cut together
(a residual add, a depthwise conv, a concatenation, a flatten into a Linear). Some Python-level
tricks in `forward` (channel slicing, hand-written reshapes) are invisible to it: tracing succeeds
but the cut model no longer runs. We detect that by running the cut model once, and then find
the culprit by cutting one channel per group on scratch copies.
"""

from __future__ import annotations

import copy
from typing import Any

from toolchain.errors import BadInput


class UntraceableLayer(BadInput):
    """The dependency graph cannot follow a layer's channels, so cutting them breaks the model."""


def root_types():
    """Layer types whose output channels start a coupled group."""
    import torch

    return (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)


def example_input(input_shape: tuple[int, ...] | list[int]):
    import torch

    return torch.zeros((1, *input_shape))


def build_graph(model, example) -> Any:
    """Trace `model` (must be in eval mode so BatchNorm statistics are not touched)."""
    import torch_pruning as tp

    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    except Exception as err:  # noqa: BLE001 - tracing errors come from arbitrary user forward() code
        raise UntraceableLayer(
            f"the pruning dependency graph cannot trace this model ({type(err).__name__}: {str(err).splitlines()[0][:160]})",
            "make forward() a plain tensor computation, or use [prune] kind = \"magnitude\"",
        ) from None


def find_classifier(model, example) -> str | None:
    """Name of the last Linear/Conv whose output width equals the model's number of outputs.

    Cutting the classifier's outputs would delete classes, so it is ignored by default.
    """
    import torch

    with torch.no_grad():
        n_out = model(example).shape[1]  # (batch, classes) logits, or (batch, classes, ...) maps
    found = None
    for name, module in model.named_modules():
        width = getattr(module, "out_features", getattr(module, "out_channels", None))
        if isinstance(module, root_types()) and width == n_out:
            found = name
    return found


def resolve_layers(model, names: list[str] | tuple[str, ...]) -> list[Any]:
    """Module objects for `names`; an unknown name is a user error listing real ones."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        known = [n for n, m in modules.items() if isinstance(m, root_types())]
        raise BadInput(f"ignored layer '{missing[0]}' is not in the model",
                       f"use module names from named_modules(), e.g. {', '.join(known[:6])}")
    return [modules[n] for n in names]


def check_runs(pruned, example, original, ignored: list[str]) -> None:
    """Run the cut model once; if it fails, name the group of `original` whose cut breaks it."""
    import torch

    try:
        with torch.no_grad():
            pruned.eval()(example)
        return
    except RuntimeError:
        pass
    raise diagnose(original, example, ignored)


def diagnose(original, example, ignored: list[str]) -> UntraceableLayer:
    """Cut one channel of each group of a scratch copy of `original` until the forward pass breaks."""
    for name in _group_roots(original, example, ignored):
        failing = _breaks_when_cut(original, example, name)
        if failing is not None:
            return UntraceableLayer(
                f"cannot prune the output channels of layer '{name}': they reach {failing} through an "
                "operation the dependency graph does not follow (e.g. channel slicing or a manual reshape)",
                f"add '{name}' to [prune] ignored_layers",
            )
    return UntraceableLayer("the pruned model no longer runs: a layer's channels were not traced",
                            "add the layers around custom forward() code to [prune] ignored_layers")


def _group_roots(model, example, ignored: list[str]) -> list[str]:
    scratch = copy.deepcopy(model).eval()
    graph = build_graph(scratch, example)
    names = {m: n for n, m in scratch.named_modules()}
    skip = resolve_layers(scratch, ignored)
    return [names[g[0].dep.target.module] for g in graph.get_all_groups(ignored_layers=skip, root_module_types=root_types())]


def _breaks_when_cut(model, example, root: str) -> str | None:
    """Cut channel 0 of `root`'s group on a scratch copy; return the module that then fails."""
    import torch

    scratch = copy.deepcopy(model).eval()
    graph = build_graph(scratch, example)
    module = dict(scratch.named_modules())[root]
    graph.get_pruning_group(module, graph.get_pruner_of_module(module).prune_out_channels, [0]).prune(record_history=False)
    stack: list[str] = []
    names = {m: n for n, m in scratch.named_modules()}

    def enter(mod, _args) -> None:
        stack.append(names[mod])

    def leave(mod, _args, _out) -> None:  # must return None: a value would replace the output
        stack.pop()

    hooks = [h for m in scratch.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    try:
        with torch.no_grad():
            scratch(example)
        return None
    except RuntimeError:
        # The innermost module still running when it failed; "" is the model's own forward().
        return (f"'{stack[-1]}'" if stack[-1] else "the model's own forward()") if stack else f"'{root}'"
    finally:
        for h in hooks:
            h.remove()
