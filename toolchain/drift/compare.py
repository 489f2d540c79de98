"""Compare live inputs and outputs with a package's drift reference: PSI and KS per channel.

KS is computed from the two histograms' CDFs at the reference bin edges (no sampling, so the
same data gives the same answer): the exact KS statistic of the binned values, never larger than
that of the raw values. Its p-value is the one `scipy.stats.ks_2samp(method="asymp")` gives
(`kstwo` at n = round(n_ref * n_live / (n_ref + n_live))), with n counting samples, not values:
the pixels of one image are not independent draws, and counting them would flag noise.

A channel drifts when its shift is both large (PSI >= psi) and not chance (KS p-value below
ks_pvalue divided by the number of channels compared, a Bonferroni correction, so the family of
all channels of a package is held to ks_pvalue). PSI alone misfires on a few dozen samples
(benchmarks/results/drift_reliability.md: 20/20 unshifted wine draws), and a KS test alone on
very many samples can call shifts significant that are too small to matter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from toolchain.config.base import Strict, read_toml, validate
from toolchain.drift.reference import bin_counts, channel_values, class_values

PSI_FLOOR = 1e-4  # an empty bin on one side would make PSI infinite; this caps its term


class DriftThresholds(Strict):
    """The `[drift]` table of a thresholds file (docs/drift.md)."""

    # 0.2 is the customary "significant shift" line of PSI in credit scoring, where it comes from.
    psi: float = Field(0.2, gt=0, description="a channel drifts at PSI >= this (and a significant KS)")
    ks_pvalue: float = Field(0.01, gt=0, lt=1, description="family-wise KS significance over all channels")


class _ThresholdsFile(Strict):
    schema_version: int = Field(1, ge=1, le=1)
    drift: DriftThresholds = DriftThresholds()


def load_thresholds(path: Path | None) -> DriftThresholds:
    if path is None:
        return DriftThresholds()
    return validate(_ThresholdsFile, read_toml(path, "drift thresholds"), str(path)).drift


def psi(ref: np.ndarray, live: np.ndarray) -> float:
    p = np.maximum(ref / max(ref.sum(), 1), PSI_FLOOR)
    q = np.maximum(live / max(live.sum(), 1), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(ref: np.ndarray, live: np.ndarray, n_ref: int, n_live: int) -> tuple[float, float]:
    """(statistic, p-value) from the binned CDFs; n_* are sample counts."""
    from scipy.stats import kstwo

    cdf_ref = np.cumsum(ref) / max(ref.sum(), 1)
    cdf_live = np.cumsum(live) / max(live.sum(), 1)
    stat = float(np.max(np.abs(cdf_ref - cdf_live))) if len(ref) > 1 else 0.0
    en = max(round(n_ref * n_live / max(n_ref + n_live, 1)), 1)  # as ks_2samp(method="asymp") does
    return stat, float(kstwo.sf(stat, en)) if stat > 0 else 1.0


def _row(name: str, hist: dict, values: np.ndarray, n_ref: int, n_live: int, extra: dict) -> dict[str, Any]:
    ref = np.asarray(hist["counts"], dtype=np.float64)
    live = bin_counts(values, hist["edges"]).astype(np.float64)
    stat, pvalue = ks(ref, live, n_ref, n_live)
    return {"tensor": name, **extra, "psi": psi(ref, live), "ks_statistic": stat, "ks_pvalue": pvalue,
            "live_mean": float(values.mean()) if values.size else None}


def _rows(kind: str, name: str, ref: dict, arr: np.ndarray) -> list[dict[str, Any]]:
    n_ref, n_live = ref["samples"], int(arr.shape[0])
    if ref["kind"] == "classes":
        values, _ = class_values(arr)
        return [{"kind": kind, **_row(name, ref["histogram"], values, n_ref, n_live, {"channel": None})}]
    rows = []
    for c, (stats, values) in enumerate(zip(ref["channels"], channel_values(arr))):
        extra = {"channel": None if ref.get("pooled") else c, "ref_mean": stats["mean"]}
        rows.append({"kind": kind, **_row(name, stats["histogram"], values, n_ref, n_live, extra)})
    return rows


def compare(reference: dict, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray] | None = None,
            thresholds: DriftThresholds | None = None) -> dict[str, Any]:
    """The drift document: one row per channel of every input and output, flags and the verdict."""
    thresholds = thresholds or DriftThresholds()
    rows = [r for n, ref in reference["inputs"].items() for r in _rows("input", n, ref, inputs[n])]
    for n, ref in reference.get("outputs", {}).items():
        if outputs is not None and n in outputs:
            rows += _rows("output", n, ref, outputs[n])
    alpha = thresholds.ks_pvalue / max(len(rows), 1)
    for r in rows:
        r["drift"] = bool(r["psi"] >= thresholds.psi and r["ks_pvalue"] < alpha)
    flagged = sorted({f"{r['kind']} {r['tensor']}" for r in rows if r["drift"]})
    return {
        "schema_version": 1,
        "thresholds": {**thresholds.model_dump(), "ks_pvalue_per_channel": alpha},
        "samples": {n: int(a.shape[0]) for n, a in inputs.items()},
        "rows": rows,
        "flagged": flagged,
        "drift": bool(flagged),
    }
