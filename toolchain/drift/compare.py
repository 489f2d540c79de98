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

from typing import Any

import numpy as np

from toolchain.config.base import validate
from toolchain.config.drift import DriftSettings, DriftThresholds
from toolchain.drift.reference import SKIPPED_KINDS, bin_counts, channel_values, class_values

PSI_FLOOR = 1e-4  # an empty bin on one side would make PSI infinite; this caps its term


def resolve_thresholds(profile: dict[str, Any] | None, *overrides: tuple[str, dict[str, float]],
                       source: str = "package") -> tuple[DriftThresholds, dict[str, str]]:
    """The thresholds to apply and where each came from: the target profile recorded in the
    package (its `[drift]`; defaults for packages built before it existed), then each
    (name, keys it sets) of `overrides` in order, later ones winning (a budgets file, then flags)."""
    recorded = (profile or {}).get("drift")
    settings = DriftSettings() if recorded is None else validate(DriftSettings, recorded, f"{source}: target profile [drift]")
    values = settings.thresholds().model_dump()
    sources = dict.fromkeys(values, "default" if recorded is None else "profile")
    for name, keys in overrides:
        for key, value in keys.items():
            if value is not None:
                values[key], sources[key] = value, name
    return validate(DriftThresholds, values, " and ".join(n for n, _ in overrides) or source), sources


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
            thresholds: DriftThresholds | None = None, outputs_skipped: str | None = None) -> dict[str, Any]:
    """The drift document: one row per channel of every input and output, flags and the verdict;
    the inputs and outputs the reference records as constant or state are listed as skipped with
    the reason (so are all outputs, with `outputs_skipped`, when the model could not be run)."""
    thresholds = thresholds or DriftThresholds()
    rows, skipped = [], []
    for kind, refs, arrays in (("input", reference["inputs"], inputs), ("output", reference.get("outputs", {}), outputs)):
        for n, ref in refs.items():
            if ref["kind"] in SKIPPED_KINDS:
                skipped.append({"kind": kind, "tensor": n, "as": ref["kind"], "reason": ref["reason"]})
            elif kind == "output" and outputs_skipped:
                skipped.append({"kind": kind, "tensor": n, "as": ref["kind"], "reason": outputs_skipped})
            elif arrays is not None and n in arrays:
                rows += _rows(kind, n, ref, arrays[n])
    alpha = thresholds.ks_pvalue / max(len(rows), 1)
    for r in rows:
        r["drift"] = bool(r["psi"] >= thresholds.psi and r["ks_pvalue"] < alpha)
    flagged = sorted({f"{r['kind']} {r['tensor']}" for r in rows if r["drift"]})
    compared = {n for n, ref in reference["inputs"].items() if ref["kind"] not in SKIPPED_KINDS}
    return {
        "schema_version": 1,
        "thresholds": {**thresholds.model_dump(), "ks_pvalue_per_channel": alpha},
        "samples": {n: int(a.shape[0]) for n, a in inputs.items() if n in compared},
        "rows": rows,
        "skipped": skipped,
        "flagged": flagged,
        "drift": bool(flagged),
    }
