"""Synthetic inputs drawn from aggregate statistics of real data (issue 17).

Packages ship golden smoke inputs, and quantization may calibrate on data that is not the
training set. Neither needs real rows: both need inputs of the right shape, dtype and range.
So per channel (axis 1 after the batch axis: an image's colour channel over N, H, W; a tabular
feature; a sequence channel over its length) we keep only the mean, std, min and max, and draw:
floats normal(mean, std) clipped to [min, max]; integers uniformly in [min, max]; bools with
P(True) = the mean. Seeded, so the same data gives byte-identical draws on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.data.feeds import Feeds

SYNTHETIC_SEED = 0


@dataclass(frozen=True)
class InputStats:
    """Aggregates of one input: one value per channel (a single pooled channel for rank < 2)."""

    dtype: str
    sample_shape: tuple[int, ...]  # one sample (batch axis removed), or the whole array when not batched
    batch_axis: int | None
    mean: np.ndarray
    std: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _samples_first(arr: np.ndarray, batch_axis: int | None) -> np.ndarray:
    """[samples, ...]: the batch axis moved to 0; an input fed whole is one sample."""
    return arr[None] if batch_axis is None else np.moveaxis(arr, batch_axis, 0)


def _channels(arr: np.ndarray) -> list[np.ndarray]:
    """One array of values per channel (axis 1), or all values as one channel for rank < 2."""
    if arr.ndim < 2:
        return [arr.reshape(-1)]
    return [arr[:, c] for c in range(arr.shape[1])]


def input_stats(arr: np.ndarray, batch_axis: int | None = 0) -> InputStats:
    arr = np.asarray(arr)
    first = _samples_first(arr, batch_axis)
    chans = _channels(first)
    # Per channel, in float64 without copying the whole array (a 64 px RGB set is ~100 MB).
    as_bool = arr.dtype.kind == "b"
    mean = [np.mean(c, dtype=np.float64) for c in chans]
    std = [0.0 if as_bool else np.std(c, dtype=np.float64) for c in chans]
    lo = [np.min(c).astype(np.float64) if c.size else 0.0 for c in chans]
    hi = [np.max(c).astype(np.float64) if c.size else 0.0 for c in chans]
    return InputStats(
        arr.dtype.name,
        tuple(first.shape[1:]),
        batch_axis,
        *(np.asarray(v, dtype=np.float64) for v in (mean, std, lo, hi)),
    )


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcastable over [n, C, ...]: channel values on axis 1."""
    return values.reshape((1, -1) + (1,) * (ndim - 2)) if ndim >= 2 else values.reshape(1)


def draw(stats: InputStats, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples (one run when the input is not batched), laid out like the source input."""
    shape = (1 if stats.batch_axis is None else n, *stats.sample_shape)
    dtype = np.dtype(stats.dtype)
    ndim = len(shape)
    mean, std, lo, hi = (_per_channel(v, ndim) for v in (stats.mean, stats.std, stats.lo, stats.hi))
    if dtype.kind == "b":
        out = rng.random(shape) < mean
    elif dtype.kind in "iu":
        out = np.floor(lo + rng.random(shape) * (hi - lo + 1)).clip(lo, hi).astype(dtype)
    else:
        out = np.clip(rng.standard_normal(shape) * std + mean, lo, hi).astype(dtype)
    return (
        out.reshape(stats.sample_shape) if stats.batch_axis is None else np.moveaxis(out, 0, stats.batch_axis)
    )


def synthetic_like(x: np.ndarray | Feeds, n: int, seed: int = SYNTHETIC_SEED) -> np.ndarray | Feeds:
    """`n` synthetic samples with `x`'s per-channel statistics: an array for an array (samples on
    axis 0), Feeds for Feeds (same inputs, batch axes and fixed batch)."""
    rng = np.random.default_rng(seed)
    if not isinstance(x, Feeds):
        return draw(input_stats(x, 0), n, rng)
    arrays = {name: draw(input_stats(x.arrays[name], x.axes[name]), n, rng) for name in x.names}
    return Feeds(arrays, dict(x.axes), x.fixed_batch, x.names)
