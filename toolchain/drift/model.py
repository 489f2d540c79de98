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
