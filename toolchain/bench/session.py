"""Helpers over an open session (any engine behind toolchain/runtime: they use only
get_inputs / get_outputs / run): input specs, fixed batches, batch plans, batched prediction."""

from __future__ import annotations

import numpy as np

_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
           "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
           "tensor(bool)": np.bool_, "tensor(float16)": np.float16, "tensor(int16)": np.int16,
           "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64}


def input_spec(session) -> list[tuple[str, list, type]]:
    """(name, shape with symbolic dims as None, numpy dtype) for each model input."""
    spec = []
    for inp in session.get_inputs():
        shape = [d if _is_fixed(d) else None for d in inp.shape]
        spec.append((inp.name, shape, numpy_dtype(inp.type)))
    return spec


def numpy_dtype(ort_type: str) -> type:
    """'tensor(float)' -> np.float32; unknown element types fall back to float32."""
    return _DTYPES.get(ort_type, np.float32)


def fixed_batch(session) -> int | None:
    """The batch size baked into the first input, or None when it is symbolic."""
    shape = session.get_inputs()[0].shape
    return shape[0] if shape and _is_fixed(shape[0]) else None


def session_fixed_batch(session, feeds) -> int | None:
    """The batch this artifact takes, read from its own inputs on the axes that hold samples (a
    fixed-shape target's artifact is fixed even where the original model was not)."""
    for inp in session.get_inputs():
        axis = feeds.axes.get(inp.name)
        if axis is not None and axis < len(inp.shape) and isinstance(inp.shape[axis], int) and inp.shape[axis] > 0:
            return inp.shape[axis]
    return None


def accepted_batch(session, feeds) -> int | None:
    """The batch to run `feeds` on `session` in: the artifact's fixed batch (a fixed-shape target
    fixes a model the feeds call dynamic), else the one the feeds carry; None: any batch."""
    return session_fixed_batch(session, feeds) or feeds.fixed_batch


def _is_fixed(dim) -> bool:
    """A fixed dimension. ORT reports a symbolic one as a str or None (also a -1 in the file),
    but a 0 that some exporters write for "unknown" as the int 0: dynamic, not a batch of 0."""
    return isinstance(dim, int) and dim > 0


def batch_plan(fixed: dict[str, int | None], batch_sizes: list[int]) -> tuple[list[int], dict[str, dict[str, str]]]:
    """(batch sizes to time, label -> {skipped profile batch size: why}). An artifact whose
    batch dimension is fixed runs only that batch: the profile's other sizes are skipped for it,
    and when none of them fits, it is timed at its own batch instead of not at all."""
    batches = list(batch_sizes)
    skipped: dict[str, dict[str, str]] = {}
    for label, fb in fixed.items():
        if fb is None:
            continue
        if fb not in batches:
            batches.append(fb)
        for b in batch_sizes:
            if b != fb:
                skipped.setdefault(label, {})[str(b)] = f"the model's batch dimension is fixed at {fb}"
    return batches, skipped


def predict(session, x, batch_size: int = 256) -> np.ndarray:
    """Run `x` (input 0's samples, or Feeds for every input) in batches the model accepts;
    returns output 0, whose axis 0 holds the samples."""
    from toolchain.data.feeds import Feeds

    if isinstance(x, Feeds):
        fixed = accepted_batch(session, x)
        outs = [session.run(None, feed)[0][:real] for feed, real in x.batches(fixed or batch_size, pad=fixed is not None)]
        return np.concatenate(outs)
    name = session.get_inputs()[0].name
    step = fixed_batch(session) or batch_size
    outs = []
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        pad = step - len(chunk) if fixed_batch(session) else 0
        if pad:  # a fixed-batch artifact needs full batches: pad, then drop the padding
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = session.run(None, {name: chunk})[0]
        outs.append(out[: len(out) - pad] if pad else out)
    return np.concatenate(outs)
