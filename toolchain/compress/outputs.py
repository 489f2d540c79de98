"""Run a model over Feeds and collect every output, for evaluation and the preflight checks.

Outputs are joined along their own batch axis when the model names one (a state [2, B, 128]
joins on axis 1); otherwise each run's output is stacked on a new axis 0. A fixed-batch model
runs full batches only (a short tail is dropped; with fewer samples than one batch it is
padded with copies), so no padded value ever reaches a metric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.data.feeds import Feeds, TensorSpec
from toolchain.errors import BadInput

EVAL_BATCH = 64  # samples per run for dynamic-batch models: bounded memory on large inputs


def compared_outputs(outputs: tuple[TensorSpec, ...], wanted: tuple[str, ...]) -> tuple[TensorSpec, ...]:
    """The outputs `--output` names (all of them by default), in the order given."""
    if not wanted:
        return outputs
    by_name = {o.name: o for o in outputs}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise BadInput(f"--output names '{unknown[0]}', which is not an output of the model",
                       f"the outputs are {', '.join(by_name)}")
    return tuple(by_name[w] for w in dict.fromkeys(wanted))


def _runs(feeds: Feeds):
    b = feeds.fixed_batch
    if b is None:
        yield from feeds.batches(EVAL_BATCH)
        return
    n = len(feeds)
    if n < b:  # one padded batch: its outputs are kept whole (a fixed model has no shorter run)
        yield from feeds.batches(b, pad=True)
        return
    yield from feeds.take(np.arange(n - n % b)).batches(b)


def run_outputs(
    path: Path, feeds: Feeds, outputs: tuple[TensorSpec, ...], runtime=None
) -> tuple[dict[str, np.ndarray], int]:
    """(name -> that output over every evaluated sample, how many samples were evaluated)."""
    from toolchain.runtime import load_session

    sess = load_session(path, runtime)
    names = [o.name for o in outputs]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    samples = 0
    for feed, real in _runs(feeds):
        samples += real
        for name, arr in zip(names, sess.run(names, feed)):
            parts[name].append(np.asarray(arr))
    joined = {}
    for spec in outputs:
        arrays = parts[spec.name]
        axis = spec.batch_axis
        same_rank = len({a.ndim for a in arrays}) == 1
        if axis is not None and same_rank and arrays[0].ndim > axis:
            try:
                joined[spec.name] = np.concatenate(arrays, axis=axis)
                continue
            except ValueError:  # other dims differ between runs: fall back to flat values
                pass
        shapes = {a.shape for a in arrays}
        joined[spec.name] = np.stack(arrays) if len(shapes) == 1 else np.concatenate([a.ravel() for a in arrays])
    return joined, samples
