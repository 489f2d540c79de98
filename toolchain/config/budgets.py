"""Budgets: the limits a CI gate enforces. Every field is optional; unset means "not gated"."""

from __future__ import annotations

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

    def merged_over(self, base: Budgets) -> Budgets:
        """This budget's set fields win; unset ones fall back to `base`."""
        mine = self.model_dump(exclude_none=True)
        return base.model_copy(update=mine)
