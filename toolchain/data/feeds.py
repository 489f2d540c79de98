"""Model inputs as data: what each input takes (TensorSpec) and the samples fed to it (Feeds).

A model may take any number of inputs of any dtype (float images, int64 token ids, bool masks,
recurrent state). Samples are stacked along each input's *batch axis*: axis 0 for most inputs,
axis 1 for a state tensor laid out [layers, batch, hidden]; an input without a batch axis (a
sample-rate scalar) is fed the same array on every run. One Feeds object carries all of them,
so calibration, benchmarking, evaluation and golden samples slice every input the same way.
Stages still accept a bare array for a single-input model (`as_feeds`), which is what
`edgeopt run` passes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Dim = int | str | None  # int: fixed; str: a symbolic name; None: dynamic without a name


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as declared by the model."""

    name: str
    dtype: str  # numpy dtype name: "float32", "int64", "bool", ...
    shape: tuple[Dim, ...] | None  # None: the model does not declare a rank
    batch_axis: int | None = 0  # axis that holds samples; None: fed whole on every run

    @property
    def dynamic_axes(self) -> list[int]:
        return [i for i, d in enumerate(self.shape or ()) if not isinstance(d, int)]

    def to_dict(self) -> dict[str, Any]:
        shape = None if self.shape is None else [d if d is not None else "?" for d in self.shape]
        return {"name": self.name, "dtype": self.dtype, "shape": shape, "batch_axis": self.batch_axis}


@dataclass(frozen=True)
class Feeds:
    """name -> every sample of that input, stacked along its batch axis (None: not batched)."""

    arrays: Mapping[str, np.ndarray]
    axes: Mapping[str, int | None]
    fixed_batch: int | None = None  # the model takes exactly this many samples per run
    names: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if not self.names:
            object.__setattr__(self, "names", tuple(self.arrays))

    def __len__(self) -> int:
        """Number of samples; 1 when no input has a batch axis (the data is one run)."""
        batched = [self.arrays[n].shape[a] for n, a in self.axes.items() if a is not None]
        return min(batched) if batched else 1

    @property
    def batched(self) -> bool:
        return any(a is not None for a in self.axes.values())

    def take(self, index) -> Feeds:
        """The samples at `index` (an int array), in that order."""
        arrays = {
            n: arr if self.axes[n] is None else np.take(arr, index, axis=self.axes[n])
            for n, arr in self.arrays.items()
        }
        return Feeds(arrays, dict(self.axes), self.fixed_batch, self.names)

    def _slice(self, start: int, stop: int) -> dict[str, np.ndarray]:
        out = {}
        for n in self.names:
            arr, axis = self.arrays[n], self.axes[n]
            if axis is not None:
                index = [slice(None)] * arr.ndim
                index[axis] = slice(start, stop)
                arr = arr[tuple(index)]
            # np.ascontiguousarray would turn a 0-d input (a sample-rate scalar) into shape (1,).
            out[n] = np.require(arr, requirements="C")
        return out

    def batches(self, size: int, pad: bool = False) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """(feed dict, real samples in it) for consecutive chunks of `size`; `pad` fills a short
        last chunk with copies of its last sample (a fixed-batch model takes only full ones)."""
        n = len(self)
        if not self.batched:
            yield self._slice(0, 1), 1
            return
        for start in range(0, n, size):
            stop = min(start + size, n)
            if pad and stop - start < size:
                index = np.concatenate([np.arange(start, stop), np.full(size - (stop - start), stop - 1)])
                yield self.take(index)._slice(0, size), stop - start
            else:
                yield self._slice(start, stop), stop - start

    def at_batch(self, b: int) -> dict[str, np.ndarray]:
        """A feed of exactly `b` samples: the first ones, tiled when there are fewer."""
        n = len(self)
        if not self.batched:
            return self._slice(0, 1)
        if b <= n:
            return self._slice(0, b)
        return self.take(np.arange(b) % n)._slice(0, b)

    def update_hash(self, h) -> None:
        for n in self.names:
            arr = self.arrays[n]
            h.update(f"{n}:{self.axes[n]}:{arr.dtype}:{arr.shape}".encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(f"fixed_batch={self.fixed_batch}".encode())

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        self.update_hash(h)
        return h.hexdigest()


def as_feeds(x: np.ndarray | Feeds, input_name: str) -> Feeds:
    """A bare array is the single input's samples along axis 0 (what `edgeopt run` passes)."""
    if isinstance(x, Feeds):
        return x
    return Feeds({input_name: x}, {input_name: 0})


def batch_axes(specs: list[TensorSpec] | tuple[TensorSpec, ...]) -> list[int | None]:
    """Which axis of each input holds samples, from the declared shapes alone.

    The batch is the symbolic name found at axis 0 on the most inputs (a state input [2, B, H]
    then gets axis 1, where the same name sits); an unnamed dynamic axis 0 is a batch axis too.
    With every axis 0 fixed, the batch is the first input's dim 0, and each input takes the
    first axis of that size (an input without one is fed whole)."""
    shapes = [s.shape or () for s in specs]
    named = [sh[0] for sh in shapes if sh and isinstance(sh[0], str)]
    if named:
        symbol = max(dict.fromkeys(named), key=named.count)
        return [
            sh.index(symbol) if symbol in sh else (0 if sh and sh[0] is None else None) for sh in shapes
        ]
    if any(sh and sh[0] is None for sh in shapes):
        return [0 if sh and sh[0] is None else None for sh in shapes]
    first = next((sh[0] for sh in shapes if sh), None)
    return [next((i for i, d in enumerate(sh) if d == first), None) if first else None for sh in shapes]


def fixed_batch_of(specs: list[TensorSpec] | tuple[TensorSpec, ...]) -> int | None:
    """The model's batch size when its batch axes are fixed numbers, else None."""
    sizes = {s.shape[s.batch_axis] for s in specs if s.shape and s.batch_axis is not None}
    fixed = [d for d in sizes if isinstance(d, int)]
    return fixed[0] if fixed and len(sizes) == 1 else None
