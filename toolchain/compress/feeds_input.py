"""A user's data (or `--data random`) -> checked Feeds for every input of the model.

Each input's array holds all samples stacked along that input's batch axis (what you would feed
the model with every sample in one batch: x [N, 3, H, W], a state h [2, N, 128]); an input
without a batch axis is fed as given on every run. Dynamic dims come from the data, or from
`--input-shape` for random data. A wrong dtype, rank or dimension is bad input that names the
input, what the model takes and what was given.
"""

from __future__ import annotations

import numpy as np

from toolchain.compress.shapes import random_array, run_shape
from toolchain.data import user as data_input
from toolchain.data.feeds import Feeds, TensorSpec, fixed_batch_of
from toolchain.errors import BadInput

RANDOM_SAMPLES = 128  # enough for minmax calibration of small models; evaluation is agreement only


def parse_input_ranges(specs: tuple[str, ...] | list[str]) -> dict[str, tuple[float, float]]:
    """`["ids=0,30000"]` -> {"ids": (0.0, 30000.0)}: random values in [LO, HI)."""
    ranges = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        try:
            lo, hi = (float(v) for v in rest.split(","))
        except ValueError:
            lo = hi = None
        if not sep or not name.strip() or lo is None or not lo < hi:
            raise BadInput(f"bad --input-range {spec!r}", "write NAME=LO,HI with LO < HI, e.g. input_ids=0,30000")
        ranges[name.strip()] = (lo, hi)
    return ranges


def random_feeds(inputs, shapes: dict, ranges: dict, n: int = RANDOM_SAMPLES) -> Feeds:
    """Seeded values per input dtype (shapes.random_array), one stream for all inputs."""
    unknown = sorted(set(ranges) - {s.name for s in inputs})
    if unknown:
        raise BadInput(f"--input-range names '{unknown[0]}', which is not an input of the model",
                       f"the inputs are {', '.join(s.name for s in inputs)}")
    rng = np.random.default_rng(data_input.SPLIT_SEED)
    arrays = {s.name: random_array(s, run_shape(s, shapes.get(s.name), n), rng, ranges.get(s.name)) for s in inputs}
    return Feeds(arrays, {s.name: s.batch_axis for s in inputs}, fixed_batch_of(inputs))


def to_feeds(raw: data_input.RawData, inputs, shapes: dict) -> tuple[Feeds, np.ndarray | None]:
    """Checked Feeds and labels from a user's data."""
    inputs = tuple(inputs)
    if not isinstance(raw.x, dict):
        if len(inputs) != 1:
            raise BadInput(
                f"{raw.source}: one array for a model with {len(inputs)} inputs ({', '.join(s.name for s in inputs)})",
                "store one array per input name in an .npz",
            )
        spec = inputs[0]
        x = np.asarray(raw.x)
        if _legacy(spec, shapes.get(spec.name)) and x.dtype.kind in "fiu":
            # One float input, samples on axis 0: flat CSV rows are reshaped (data_input.check).
            sample = run_shape(spec, shapes.get(spec.name), 1)[1:]
            checked = data_input.check(raw, sample)
            return Feeds({spec.name: checked.x.astype(spec.dtype)}, {spec.name: 0}, fixed_batch_of(inputs)), checked.y
        raw = data_input.RawData({spec.name: x}, raw.y, raw.source, raw.random)
    arrays = {s.name: _checked(s, np.asarray(raw.x[s.name]), shapes.get(s.name), raw.source) for s in inputs}
    counts = {s.name: arrays[s.name].shape[s.batch_axis] for s in inputs if s.batch_axis is not None}
    if len(set(counts.values())) > 1:
        raise BadInput(f"{raw.source}: inputs hold different numbers of samples ({counts})",
                       "give every input the same number of samples on its batch axis")
    n = min(counts.values()) if counts else 1
    if counts and n < 2:
        raise BadInput(f"{raw.source}: {n} sample(s)", "give at least 2: one to calibrate, one to evaluate")
    feeds = Feeds(arrays, {s.name: s.batch_axis for s in inputs}, fixed_batch_of(inputs))
    return feeds, data_input.check_labels(raw.y, n, raw.source) if counts else None


def _legacy(spec: TensorSpec, override) -> bool:
    if spec.dtype != "float32" or spec.batch_axis != 0:
        return False
    try:
        run_shape(spec, override, 1)
    except BadInput:
        return False
    return True


def _checked(spec: TensorSpec, arr: np.ndarray, override, source: str) -> np.ndarray:
    want = np.dtype(spec.dtype)
    ok = {"f": "fiub", "i": "iu", "u": "iu", "b": "b"}[want.kind] if want.kind in "fiub" else ""
    if arr.dtype.kind not in ok:
        raise BadInput(f"{source}: input '{spec.name}' is {arr.dtype}, the model takes {want}",
                       f"store '{spec.name}' as {want}")
    declared = spec.shape or ()
    shown = [d if isinstance(d, int) else (d or "?") for d in declared]
    if arr.ndim != len(declared):
        raise BadInput(
            f"{source}: input '{spec.name}' has shape {list(arr.shape)} (rank {arr.ndim}), the model takes {shown} (rank {len(declared)})",
            f"store '{spec.name}' with the model's rank, samples stacked on axis {spec.batch_axis}",
        )
    for axis, (d, got) in enumerate(zip(declared, arr.shape)):
        fixed = d if isinstance(d, int) else (override[axis] if override else None)
        if axis != spec.batch_axis and fixed is not None and fixed != got:
            raise BadInput(
                f"{source}: input '{spec.name}' has shape {list(arr.shape)}, the model takes {shown} (dimension {axis} must be {fixed})",
                f"store '{spec.name}' with dimension {axis} = {fixed}" + (", or change --input-shape" if override else ""),
            )
    arr = arr.astype(want)
    if want.kind == "f":
        data_input.check_finite(arr, source, spec.batch_axis)
    return arr
