"""Drift settings: the thresholds `edgeopt drift` flags a channel at, and how coarse the stored
reference histograms must be (docs/drift.md).

A target profile's `[drift]` table is recorded in every package built for it, so a package
carries the thresholds it should be monitored with; a budgets file's `[drift]` table (or the
flags of `edgeopt drift`) overrides them without rebuilding anything.
"""

from __future__ import annotations

from pydantic import Field

from toolchain.config.base import Strict

# 0.2 is the customary "significant shift" line of PSI in credit scoring, where PSI comes from;
# on its own it flags noise on a few dozen samples, hence the KS test beside it.
DEFAULT_PSI = 0.2
# Family-wise over all channels of a package (Bonferroni), so a 64-channel input is not flagged
# by chance more often than a 1-channel one: benchmarks/results/drift_reliability.md measures
# 0/20 false flags on the bundled datasets at these two defaults.
DEFAULT_KS_PVALUE = 0.01
# Issue 17 (privacy): no statistic a package stores may describe fewer than 10 samples; reference
# histogram bins holding fewer are merged with a neighbour at package time.
DEFAULT_MIN_BIN_COUNT = 10


class DriftThresholds(Strict):
    """When `edgeopt drift` flags a channel: both a large shift and one that is not chance."""

    psi: float = Field(
        DEFAULT_PSI, gt=0, description="a channel drifts at PSI >= this (and a significant KS test)"
    )
    ks_pvalue: float = Field(
        DEFAULT_KS_PVALUE,
        gt=0,
        lt=1,
        description=(
            "family-wise KS significance: a channel drifts at a KS p-value below this divided by the number of channels"
        ),
    )


class DriftSettings(DriftThresholds):
    """A target profile's `[drift]`: the thresholds its packages carry, and the reference's coarseness."""

    min_bin_count: int = Field(
        DEFAULT_MIN_BIN_COUNT,
        ge=1,
        description=(
            "reference histogram bins holding fewer samples are merged with a neighbour at package time, so no stored "
            "statistic describes fewer than this many samples (privacy)"
        ),
    )

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(psi=self.psi, ks_pvalue=self.ks_pvalue)
