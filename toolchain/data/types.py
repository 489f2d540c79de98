"""The one Dataset type: arrays plus what an app needs to feed the model the same way.

Also the helpers every bundled loader shares: the seeded stratified split and the checked
`[data.kwargs]` options.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from toolchain.config.data import DataConfig
from toolchain.data.feeds import Feeds
from toolchain.errors import BadInput


def canonical_strides(arr: np.ndarray) -> tuple[int, ...]:
    """The strides of a freshly allocated C-ordered array of `arr`'s shape and dtype."""
    strides, step = [], arr.itemsize
    for size in reversed(arr.shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def splits_fingerprint(data) -> str:
    """sha256 of the four splits of `data` (a Dataset, or any object with those attributes)."""
    h = hashlib.sha256()
    for arr in (data.x_train, data.y_train, data.x_test, data.y_test):
        if isinstance(arr, Feeds):
            arr.update_hash(h)
            continue
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Dataset:
    """Arrays plus what an app needs to feed the model the same way."""

    name: str
    x_train: np.ndarray | Feeds  # Feeds: a model with several inputs (token ids + attention mask)
    y_train: np.ndarray
    x_test: np.ndarray | Feeds
    y_test: np.ndarray
    labels: tuple[str, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    input_name: str = "x"

    def __post_init__(self):
        # Strides reach torch, not only values: a C-contiguous (N, 1, H, W) array whose size-1
        # axis has an odd stride looks channels_last to torch, which then traces differently
        # (measured: the exported graph gained a clone and _unsafe_view), while a pickled copy,
        # what a pool worker receives, has the canonical strides. Every array gets those here.
        for name in ("x_train", "y_train", "x_test", "y_test"):
            arr = getattr(self, name)
            if isinstance(arr, np.ndarray) and arr.strides != canonical_strides(arr):
                object.__setattr__(self, name, arr.copy(order="C"))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (no batch dimension); of the first input when there are several."""
        x = self.x_train.arrays[self.x_train.names[0]] if isinstance(self.x_train, Feeds) else self.x_train
        return tuple(x.shape[1:])

    @classmethod
    def split(cls, name: str, x: np.ndarray, y: np.ndarray, cfg: DataConfig, labels: tuple[str, ...],
              preprocessing: dict[str, Any]) -> Dataset:
        """A data set from all samples: stratified, seeded train/test split (see _split)."""
        if isinstance(x, Feeds):  # split sample indices, then take every input's rows
            i_tr, i_te, y_tr, y_te = stratified_split(np.arange(len(y)), y, cfg)
            x_tr, x_te = x.take(i_tr), x.take(i_te)
        else:
            x_tr, x_te, y_tr, y_te = stratified_split(x, y, cfg)
        return cls(name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, labels=labels,
                   preprocessing=preprocessing)

    def fingerprint(self) -> str:
        """sha256 of the splits, hashed once per object (every cached step keys on it; the shapes
        data set's 147 MB took 0.2 s a call)."""
        memo = self.__dict__.get("_fingerprint")
        if memo is None:
            memo = splits_fingerprint(self)
            object.__setattr__(self, "_fingerprint", memo)
        return memo


def stratified_split(x: np.ndarray, y: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, ...]:
    """Stratified, seeded split so the held-out set has every class in proportion."""
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(x, y, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=y))


def dataset_kwargs(cfg: DataConfig, defaults: dict[str, Any]) -> dict[str, Any]:
    """Dataset kwargs over `defaults`; unknown keys are rejected with the known ones listed."""
    unknown = sorted(set(cfg.kwargs) - set(defaults))
    if unknown:
        raise BadInput(
            f"dataset '{cfg.name}' has no option {', '.join(repr(k) for k in unknown)}",
            f"known [data.kwargs] keys: {', '.join(sorted(defaults))}",
        )
    return {**defaults, **cfg.kwargs}


def int_option(cfg: DataConfig, kw: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = kw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadInput(f"dataset '{cfg.name}': [data.kwargs] {key} = {value!r}", f"give an integer in {lo}..{hi}")
    return value


def balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Equal class counts (n % k extra go to the first classes), in a seeded random order."""
    return rng.permutation(np.arange(n) % k).astype(np.int64)
