"""Budgets, candidates and the report: plain data, so the CLI can print or save them as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from toolchain.config.base import Strict


class SearchBudget(Strict):
    max_drop: float = Field(0.01, ge=0, lt=1, description="largest allowed accuracy drop vs the fp32 baseline")
    # absolute: drop in accuracy points (0.01 = 1 point); relative: drop / baseline accuracy.
    drop_kind: Literal["absolute", "relative"] = "absolute"
    objective: Literal["latency", "bytes"] = "latency"

    def allowed(self, baseline: float) -> float:
        """Lowest accuracy that still meets the budget."""
        return baseline - (self.max_drop * baseline if self.drop_kind == "relative" else self.max_drop)


@dataclass
class Candidate:
    name: str
    path: str  # artifact file, relative to the search's out_dir
    accuracy: float
    bytes: int
    latency_ms: float | None = None  # p50, 1 thread; filled by one interleaved timing of all candidates
    meets_budget: bool = False
    baseline: bool = False  # the uncompressed reference: plotted and reported, never chosen
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. excluded nodes, amount, params


@dataclass
class SearchReport:
    kind: str  # "quantization" | "prune_amount"
    budget: dict[str, Any]
    baseline_accuracy: float
    min_accuracy: float
    met: bool  # False: no compressed candidate met the budget; `best` is then the most accurate one
    best: str  # candidate name
    best_path: str
    candidates: list[Candidate]
    tried: list[dict[str, Any]]  # every step, in order, with its outcome
    reverted: list[dict[str, Any]]  # what was undone or fell back, and why
    plots: list[str] = field(default_factory=list)
    speedup_vs_fp32: float | None = None  # fp32 p50 / best p50, same interleaved rounds (quantization search)
    int8_slower_than_fp32: bool = False  # objective latency and every int8 variant within budget lost to fp32
    strategy: str | None = None  # pruning searches: "bisection" or "sweep" (every point built at once)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return Path(path)


TIE = 0.05


def pick_best(candidates: list[Candidate], objective: str) -> tuple[Candidate, bool]:
    """Best compressed candidate by objective among those meeting the budget; else the most
    accurate compressed one (best effort, flagged by the returned False)."""
    compressed = [c for c in candidates if not c.baseline]
    feasible = [c for c in compressed if c.meets_budget]
    if not feasible:
        return max(compressed, key=lambda c: (c.accuracy, -c.bytes)), False

    def primary(c: Candidate) -> float:
        if objective == "bytes":
            return c.bytes
        return c.latency_ms if c.latency_ms is not None else float("inf")

    # Latencies within TIE of the fastest are measurement noise on a shared machine: among
    # those, fewer bytes then higher accuracy decide, so noise cannot pick a needlessly big model.
    fastest = min(primary(c) for c in feasible)
    close = [c for c in feasible if primary(c) <= fastest * (1 + TIE)]
    return min(close, key=lambda c: (c.bytes, -c.accuracy, primary(c))), True
