"""Run a model over many samples in the batch sizes it accepts (a fixed-batch .ort takes 1)."""

from __future__ import annotations

import numpy as np

CHUNK = 256  # samples per run for dynamic-batch models: bounded memory, few calls


def run_model(sess, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Output name -> stacked outputs for every sample of `inputs` (input name -> array)."""
    from toolchain.bench.session import numpy_dtype

    metas = sess.get_inputs()
    dtypes = {m.name: np.dtype(numpy_dtype(m.type)) for m in metas}
    first = metas[0].shape[0] if metas[0].shape else None
    step = first if isinstance(first, int) else CHUNK
    n = min(len(a) for a in inputs.values())
    names = [o.name for o in sess.get_outputs()]
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, n - n % step if isinstance(first, int) else n, step):
        feeds = {k: np.ascontiguousarray(a[start:start + step], dtype=dtypes[k]) for k, a in inputs.items()}
        for part, out in zip(parts, sess.run(None, feeds)):
            part.append(np.asarray(out))
    return {name: np.concatenate(part) for name, part in zip(names, parts) if part}


def run_feeds(sess, feeds) -> dict[str, np.ndarray | None]:
    """Output name -> outputs for every sample of `feeds` (toolchain.data.feeds.Feeds: inputs may
    hold samples off axis 0, or none), stacked on axis 0; None for an output whose axis 0 does not
    follow the batch (e.g. a state [layers, batch, hidden]), which no sample-wise statistic fits."""
    from toolchain.bench.session import session_fixed_batch

    fixed = session_fixed_batch(sess, feeds) or feeds.fixed_batch
    names = [o.name for o in sess.get_outputs()]
    parts: dict[str, list[np.ndarray] | None] = {n: [] for n in names}
    for feed, real in feeds.batches(fixed or CHUNK, pad=fixed is not None):
        size = fixed or real
        for name, out in zip(names, sess.run(None, feed)):
            out = np.asarray(out)
            if parts[name] is None or not feeds.batched or out.ndim == 0 or out.shape[0] != size:
                parts[name] = None
            else:
                parts[name].append(out[:real])
    return {n: None if p is None else np.concatenate(p) for n, p in parts.items()}
