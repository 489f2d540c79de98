"""The drift reference a package carries: aggregate statistics of its inputs and outputs over the
calibration (training) data, as a small versioned JSON (`drift_reference.json`, docs/drift.md).

Only aggregates: per channel (axis 1) or feature a mean, std, a few quantiles and a fixed-bin
histogram whose bins each hold at least `min_bin_count` values (neighbours are merged until they
do), so no bin describes fewer than that many samples (issue 17).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolchain.errors import BadInput
from toolchain.package.manifest import DRIFT_REFERENCE_NAME

__all__ = ["DRIFT_REFERENCE_NAME", "build_reference", "reference_for_session"]
DRIFT_SCHEMA_VERSION = 1
MIN_BIN_COUNT = 10  # issue 17's default `min_bin_count`
BINS = 20  # fixed-width bins before merging: enough resolution for PSI, a few hundred bytes a channel
MAX_CHANNELS = 64  # more channels than this (e.g. a sequence's time axis) are pooled into one
MAX_SAMPLES = 2000  # a seeded subset bounds the model run at package time; PSI needs far fewer
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # not the extremes: a min or max is one sample's value
# Fixed bins span this central range; the outer bins are open-ended, so no edge is one sample's value.
RANGE_QUANTILES = (0.005, 0.995)
MAX_CLASSES = 1000  # a rank-2 float output with at most this many columns is read as class scores


def _r(v: float) -> float:
    """6 significant digits: statistics, not data, and the file stays a few KB."""
    return float(f"{float(v):.6g}")


def merge_small_bins(edges: list[float], counts: list[int], min_count: int = MIN_BIN_COUNT):
    """Merge neighbouring bins until every bin holds >= min_count (a single bin may hold fewer
    only when the total does). `edges` are the inner edges: len(counts) == len(edges) + 1."""
    out_edges: list[float] = []
    out_counts: list[int] = []
    acc = 0
    for i, c in enumerate(counts):
        acc += int(c)
        if acc >= min_count and i < len(counts) - 1:
            out_counts.append(acc)
            out_edges.append(float(edges[i]))
            acc = 0
    if acc or not out_counts:
        if out_counts and acc < min_count:  # a thin tail joins the bin before it
            out_counts[-1] += acc
            out_edges.pop()
        else:
            out_counts.append(acc)
    return out_edges, out_counts


def bin_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts of `values` in the bins (-inf, e0), [e0, e1), ..., [e_last, inf)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values.ravel(), side="right")
    return np.bincount(idx, minlength=len(edges) + 1)


def _histogram(values: np.ndarray, min_count: int) -> dict[str, Any]:
    lo, hi = np.quantile(values, RANGE_QUANTILES)
    edges = [] if hi <= lo else sorted({_r(e) for e in np.linspace(lo, hi, BINS + 1)[1:-1]})
    edges, counts = merge_small_bins(edges, bin_counts(values, edges).tolist(), min_count)
    return {"edges": edges, "counts": counts}


def channel_stats(values: np.ndarray, min_count: int = MIN_BIN_COUNT) -> dict[str, Any]:
    values = values.astype(np.float64).ravel()
    return {
        "count": int(values.size),
        "mean": _r(values.mean()),
        "std": _r(values.std()),
        "quantiles": {str(q): _r(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES))},
        "histogram": _histogram(values, min_count),
    }


def channel_values(arr: np.ndarray) -> list[np.ndarray]:
    """One flat array of values per channel (axis 1), or one for all when there are too many."""
    arr = np.asarray(arr)
    if arr.ndim < 2 or arr.shape[1] > MAX_CHANNELS:
        return [arr.ravel()]
    return [np.take(arr, c, axis=1).ravel() for c in range(arr.shape[1])]


def is_classes(arr: np.ndarray) -> bool:
    """Class scores: rank 2, float, 2..MAX_CLASSES columns; their argmax is what drifts."""
    return arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating) and 2 <= arr.shape[1] <= MAX_CLASSES


def class_values(arr: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Predicted class per sample, and the inner edges of one bin per class."""
    return np.argmax(arr, axis=1), [k + 0.5 for k in range(arr.shape[1] - 1)]


def tensor_stats(arr: np.ndarray, min_count: int = MIN_BIN_COUNT, *, output: bool = False) -> dict[str, Any]:
    arr = np.asarray(arr)
    doc: dict[str, Any] = {"samples": int(arr.shape[0]) if arr.ndim else 1, "sample_shape": list(arr.shape[1:])}
    if output and is_classes(arr):
        values, edges = class_values(arr)
        edges, counts = merge_small_bins(edges, bin_counts(values, edges).tolist(), min_count)
        return {**doc, "kind": "classes", "classes": int(arr.shape[1]),
                "histogram": {"edges": edges, "counts": counts}}
    chans = channel_values(arr)
    return {**doc, "kind": "values", "pooled": len(chans) == 1 and arr.ndim >= 2 and arr.shape[1] != 1,
            "channels": [channel_stats(v, min_count) for v in chans]}


def as_named(data: np.ndarray | dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Accept one array (for the first input, as before multi-input models) or name -> array."""
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        if missing:
            raise BadInput(f"reference data has no array for input {missing[0]!r}", f"give one per input: {names}")
        return {n: np.asarray(data[n]) for n in names}
    if len(names) != 1:
        raise BadInput(f"one reference array for a model with inputs {names}", "pass a dict input name -> array")
    return {names[0]: np.asarray(data)}


def subset(named: dict[str, np.ndarray], limit: int = MAX_SAMPLES, seed: int = 0) -> dict[str, np.ndarray]:
    n = min(len(a) for a in named.values())
    if n <= limit:
        return named
    idx = np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    return {k: a[idx] for k, a in named.items()}


def build_reference(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                    min_count: int = MIN_BIN_COUNT) -> dict[str, Any]:
    return {
        "schema_version": DRIFT_SCHEMA_VERSION,
        "min_bin_count": int(min_count),
        "inputs": {n: tensor_stats(a, min_count) for n, a in inputs.items()},
        "outputs": {n: tensor_stats(a, min_count, output=True) for n, a in outputs.items()},
    }


def reference_for_session(sess, data: np.ndarray | dict[str, np.ndarray],
                          min_count: int = MIN_BIN_COUNT) -> dict[str, Any]:
    """Package time: statistics of `data` (calibration/training inputs) and of the model's outputs on it."""
    from toolchain.drift.model import run_model

    names = [i.name for i in sess.get_inputs()]
    named = subset(as_named(data, names))
    outputs = run_model(sess, named)
    return build_reference(named, outputs, min_count)
