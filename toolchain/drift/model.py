"""Run a model over many samples in the batch sizes it accepts (a fixed-batch .ort takes 1)."""

from __future__ import annotations

import numpy as np

CHUNK = 256  # samples per run for dynamic-batch models: bounded memory, few calls


def run_feeds(sess, feeds) -> dict[str, np.ndarray | None]:
    """Output name -> outputs for every sample of `feeds` (toolchain.data.feeds.Feeds: inputs may
    hold samples off axis 0, or none), stacked on axis 0; None for an output whose axis 0 does not
    follow the batch (e.g. a state [layers, batch, hidden]), which no sample-wise statistic fits."""
    from toolchain.bench.session import accepted_batch, numpy_dtype

    dtypes = {m.name: np.dtype(numpy_dtype(m.type)) for m in sess.get_inputs()}
    fixed = accepted_batch(sess, feeds)
    names = [o.name for o in sess.get_outputs()]
    parts: dict[str, list[np.ndarray] | None] = {n: [] for n in names}
    for feed, real in feeds.batches(fixed or CHUNK, pad=fixed is not None):
        size = fixed or real
        feed = {k: np.asarray(a, dtype=dtypes[k]) for k, a in feed.items()}  # e.g. float64 data, float32 model
        for name, out in zip(names, sess.run(None, feed)):
            out = np.asarray(out)
            if parts[name] is None or not feeds.batched or out.ndim == 0 or out.shape[0] != size:
                parts[name] = None
            else:
                parts[name].append(out[:real])
    return {n: None if p is None else np.concatenate(p) for n, p in parts.items()}
