"""The drift reference a package carries: aggregate statistics of its inputs and outputs over the
calibration (training) data, as a small versioned JSON (`drift_reference.json`, docs/drift.md).

Only aggregates: per channel (axis 1) or feature a mean, std, a few quantiles and a fixed-bin
histogram whose bins each hold at least `min_bin_count` values (neighbours are merged until they
do), so no bin describes fewer than that many samples (issue 17).

An input without samples on axis 0 has no per-sample statistic that means anything: one fed
whole on every run (a scalar sample rate) is recorded as kind "constant", one whose samples sit on
another axis (a recurrent state [layers, batch, hidden]) as kind "state", each with the reason;
`edgeopt drift` skips them and says why. So does an output without samples on axis 0.
Schema 2 added those kinds and each input's `batch_axis`; schema 1 files hold only "values" and
"classes" entries and are read as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolchain.config.drift import DEFAULT_MIN_BIN_COUNT
from toolchain.data.feeds import Feeds, TensorSpec, batch_axes
from toolchain.errors import BadInput
from toolchain.package.manifest import DRIFT_REFERENCE_NAME

__all__ = ["DRIFT_REFERENCE_NAME", "build_reference", "reference_for_session"]
DRIFT_SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
MIN_BIN_COUNT = DEFAULT_MIN_BIN_COUNT  # issue 17: a target profile's [drift] min_bin_count
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


SKIPPED_KINDS = ("constant", "state")
_UNBATCHED_OUTPUT = {"kind": "state", "reason": "no samples on axis 0 (e.g. the next recurrent state): not a feature"}


def skipped_entry(arr: np.ndarray, axis: int | None) -> dict[str, Any]:
    """What is recorded for an input without samples on axis 0, and why it is not compared."""
    arr = np.asarray(arr)
    if axis is None or arr.ndim == 0:
        return {"kind": "constant", "batch_axis": None, "shape": list(arr.shape), "dtype": arr.dtype.name,
                "reason": "fed whole on every run (e.g. a sample rate): no samples to describe"}
    return {"kind": "state", "batch_axis": int(axis), "shape": list(arr.shape[:axis] + arr.shape[axis + 1:]),
            "dtype": arr.dtype.name,
            "reason": f"samples on axis {axis}, not 0 (e.g. a recurrent state carried between runs): not a feature"}


def session_specs(sess) -> list[TensorSpec]:
    """The session's inputs with the batch axis each one's declared shape implies."""
    from toolchain.bench.session import numpy_dtype

    specs = [TensorSpec(i.name, np.dtype(numpy_dtype(i.type)).name, tuple(i.shape) if i.shape is not None else None)
             for i in sess.get_inputs()]
    return [TensorSpec(s.name, s.dtype, s.shape, a) for s, a in zip(specs, batch_axes(specs))]


def as_feeds(data: np.ndarray | dict[str, np.ndarray] | Feeds, specs: list[TensorSpec]) -> Feeds:
    """One array (for a single-input model), name -> array, or Feeds; batch axes from `specs`
    unless Feeds say otherwise (a 0-d array never has one)."""
    names = [s.name for s in specs]
    if isinstance(data, Feeds):
        arrays, axes = dict(data.arrays), dict(data.axes)
    elif isinstance(data, dict):
        arrays, axes = {n: np.asarray(a) for n, a in data.items()}, {s.name: s.batch_axis for s in specs}
    elif len(names) != 1:
        raise BadInput(f"one reference array for a model with inputs {names}", "pass a dict input name -> array")
    else:
        arrays, axes = {names[0]: np.asarray(data)}, {names[0]: 0}
    missing = [n for n in names if n not in arrays]
    if missing:
        raise BadInput(f"reference data has no array for input {missing[0]!r}", f"give one per input: {names}")
    axes = {n: None if np.ndim(arrays[n]) == 0 else axes.get(n, 0) for n in names}
    return Feeds({n: arrays[n] for n in names}, axes, data.fixed_batch if isinstance(data, Feeds) else None, tuple(names))


def subset(feeds: Feeds, limit: int = MAX_SAMPLES, seed: int = 0) -> Feeds:
    n = len(feeds)
    if not feeds.batched or n <= limit:
        return feeds
    return feeds.take(np.sort(np.random.default_rng(seed).choice(n, limit, replace=False)))


def build_reference(inputs: dict[str, np.ndarray] | Feeds, outputs: dict[str, np.ndarray | None],
                    min_count: int = MIN_BIN_COUNT) -> dict[str, Any]:
    """`inputs` as name -> samples on axis 0, or Feeds (inputs off axis 0 are recorded as skipped);
    an output of None had no samples on axis 0."""
    if not isinstance(inputs, Feeds):
        inputs = Feeds(dict(inputs), {n: 0 for n in inputs})
    ins = {}
    for n in inputs.names:
        arr, axis = inputs.arrays[n], inputs.axes[n]
        ins[n] = {**tensor_stats(arr, min_count), "batch_axis": 0} if axis == 0 and np.ndim(arr) else skipped_entry(arr, axis)
    outs = {n: dict(_UNBATCHED_OUTPUT) if a is None else tensor_stats(a, min_count, output=True)
            for n, a in outputs.items()}
    return {"schema_version": DRIFT_SCHEMA_VERSION, "min_bin_count": int(min_count), "inputs": ins, "outputs": outs}


def reference_for_session(sess, data, min_count: int = MIN_BIN_COUNT) -> dict[str, Any]:
    """Package time: statistics of `data` (calibration/training inputs: an array, name -> array,
    or Feeds) and of the model's outputs on it."""
    from toolchain.drift.model import run_feeds

    feeds = subset(as_feeds(data, session_specs(sess)))
    return build_reference(feeds, run_feeds(sess, feeds), min_count)
