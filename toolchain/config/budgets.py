"""Budgets: the limits a CI gate enforces, and the verdict of measured metrics against them.

Every field is optional; unset means "not gated". Pure data in, verdicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import Field

from toolchain.config.base import Strict


class Budgets(Strict):
    max_bytes: int | None = Field(None, gt=0, description="artifact size on disk, bytes")
    max_size_ratio: float | None = Field(None, gt=0, description="artifact bytes / fp32 artifact bytes")
    max_p50_ms: float | None = Field(None, gt=0, description="median latency at batch 1, ms")
    max_p90_ms: float | None = Field(None, gt=0, description="p90 latency at batch 1, ms")
    max_peak_memory_mb: float | None = Field(None, gt=0, description="peak RSS over an idle runtime, MB")
    max_accuracy_drop: float | None = Field(
        None, ge=0, le=1, description="fp32 accuracy minus artifact accuracy, as a fraction"
    )
    min_sqnr_db: float | None = Field(None, description=(
        "lowest SQNR of the artifact's outputs vs fp32 (dB), over every output and every slice of "
        "its feature axis; applies by default (DEFAULT_MIN_SQNR_DB) when there are no labels"))

    def merged_over(self, base: Budgets) -> Budgets:
        """This budget's set fields win; unset ones fall back to `base`."""
        mine = self.model_dump(exclude_none=True)
        return base.model_copy(update=mine)

# With no labels no accuracy budget can look at the artifact's outputs; without this default a
# broken int8 model (SQNR -12 dB, every detector score zeroed) passed as "all budgets met".
# 20 dB is 1% relative noise energy; healthy int8 models measure 25-45 dB here.
DEFAULT_MIN_SQNR_DB = 20.0

# budget name -> metric name it limits; `max_` budgets are upper limits, `min_` lower ones
BUDGET_METRICS = {
    "max_bytes": "bytes",
    "max_size_ratio": "size_ratio",
    "max_p50_ms": "p50_ms",
    "max_p90_ms": "p90_ms",
    "max_peak_memory_mb": "peak_memory_mb",
    "max_accuracy_drop": "accuracy_drop",
    "min_sqnr_db": "min_sqnr_db",
}


def within(budget: str, value: float, limit: float) -> bool:
    return value >= limit if budget.startswith("min_") else value <= limit


def with_default_fidelity(budgets: Budgets, labelled: bool) -> Budgets:
    """`budgets`, plus the default fidelity floor when there are no labels and none is set."""
    if labelled or budgets.min_sqnr_db is not None:
        return budgets
    return budgets.model_copy(update={"min_sqnr_db": DEFAULT_MIN_SQNR_DB})


@dataclass(frozen=True)
class Verdict:
    limit: float
    value: float | None
    passed: bool
    metric: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pass"] = d.pop("passed")
        return d


def evaluate(budgets: Budgets, metrics: Mapping[str, float | None]) -> dict[str, Verdict]:
    """One verdict per set budget. A budget whose metric was not measured fails: an unmeasured
    number must never pass a gate silently."""
    verdicts: dict[str, Verdict] = {}
    for name, limit in budgets.model_dump(exclude_none=True).items():
        metric = BUDGET_METRICS[name]
        value = metrics.get(metric)
        passed = value is not None and within(name, value, limit)
        verdicts[name] = Verdict(limit=float(limit), value=None if value is None else float(value), passed=passed, metric=metric)
    return verdicts
