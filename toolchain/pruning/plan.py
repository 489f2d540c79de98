"""The pruning plan as data: Torch-Pruning's `pruning_history()` plus what replay needs.

A structurally pruned state dict has different tensor shapes than the zoo factory builds, so a
loader builds the factory's model, replays the plan on it, then loads the weights. Replay is
exact because the history lists, step by step, which channel indices each cut removed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import BadInput

PLAN_SCHEMA_VERSION = 2  # 2 added dropped_blocks; version 1 plans (no drops) still load
_READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class PrunePlan:
    input_shape: tuple[int, ...]  # one sample, no batch dim: tracing needs an example input
    # [layer name, True = output channels / False = input channels, [removed indices]], in order.
    history: tuple[tuple[str, bool, tuple[int, ...]], ...]
    meta: dict[str, Any] = field(default_factory=dict)  # criterion, amount...: informative only
    # blocks replaced by the identity before any channel cut (pruning/depth.py), replayed first
    dropped_blocks: tuple[str, ...] = ()
    schema_version: int = PLAN_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [[n, bool(o), [int(i) for i in idxs]] for n, o, idxs in self.history]
        d["input_shape"] = list(self.input_shape)
        d["dropped_blocks"] = list(self.dropped_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrunePlan:
        if d.get("schema_version") not in _READABLE_VERSIONS:
            raise BadInput(f"pruning plan schema_version {d.get('schema_version')!r} is not supported",
                           f"re-run the prune step to write a version {PLAN_SCHEMA_VERSION} plan")
        try:
            history = tuple((str(n), bool(o), tuple(int(i) for i in idxs)) for n, o, idxs in d["history"])
            return cls(tuple(int(s) for s in d["input_shape"]), history, dict(d.get("meta", {})),
                       tuple(str(n) for n in d.get("dropped_blocks", ())))
        except (KeyError, TypeError, ValueError) as err:
            raise BadInput(f"malformed pruning plan ({type(err).__name__}: {err})", "re-run the prune step") from None

    def save(self, path: Path) -> Path:
        from toolchain.fsio import atomic_path

        with atomic_path(Path(path)) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> PrunePlan:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise BadInput(f"cannot read pruning plan {Path(path).name} ({type(err).__name__})", "re-run the prune step") from None


def replay_plan(model, plan: PrunePlan):
    """Return a copy of `model` with the plan's cuts applied; `model` is unchanged."""
    from toolchain.pruning.depth import replace_with_identity
    from toolchain.pruning.graph import build_graph, example_input
    from toolchain.pruning.norms import per_channel_group_norms, resync_group_norms

    fresh = copy.deepcopy(model).eval()
    replace_with_identity(fresh, plan.dropped_blocks)
    modules = dict(fresh.named_modules())
    unknown = sorted({n for n, _o, _i in plan.history if n not in modules})
    if unknown:
        raise BadInput(f"pruning plan names layer '{unknown[0]}', which this model does not have",
                       "replay the plan on a model built by the same factory and kwargs")
    graph = build_graph(fresh, example_input(plan.input_shape))
    per_channel_norms = per_channel_group_norms(fresh)
    try:
        graph.load_pruning_history([[n, o, list(i)] for n, o, i in plan.history])
    except (IndexError, RuntimeError) as err:
        raise BadInput(f"pruning plan does not fit this model ({type(err).__name__}: {str(err)[:120]})",
                       "replay the plan on a model built by the same factory and kwargs") from None
    resync_group_norms(fresh, per_channel_norms)  # as the pruning stage left them
    return fresh
