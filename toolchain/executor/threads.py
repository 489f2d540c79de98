"""A task's share of the cores: what a task uses when workers run side by side.

Torch gets one thread in every task: training on 1 and on 2 threads gives different weights
(measured), and results must not depend on where a task ran.

ONNX Runtime sizes a session's intra-op pool to all the machine's cores unless its options say
otherwise, and sessions made by library code the task does not own (the quantizer's calibration)
cannot be told. Two pool workers each running two ORT threads on two cores then contend: a
quantization search on 2 workers took 1.29x its sequential time, 0.875x with the share (2 cores,
measured before the search calibrated once). In a pool task, sessions whose options leave the
thread count to ORT get the task's share instead; an explicit count (a profile's
`intra_op_threads`) is kept. The outputs did not change with the count: the search's best.onnx
(benchmarks/search_scaling.py) and every deterministic batch artifact (tests/batch) are
byte-identical to the sequential run's.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

_share: int | None = None  # set for the duration of a pool task; None in the driver


def task_threads(default: int) -> int:
    """Intra-op threads for a session this code makes: the task's share inside a pool task, else `default`."""
    return _share or default


@contextlib.contextmanager
def task_share(ort_threads: int | None) -> Iterator[None]:
    """Run a task body with one torch thread and, when `ort_threads` is set, that many ORT threads
    for sessions that do not choose their own."""
    global _share
    restore_torch = _one_torch_thread()
    restore_ort = _ort_default_threads(ort_threads) if ort_threads else (lambda: None)
    _share = ort_threads
    try:
        yield
    finally:
        _share = None
        restore_ort()
        restore_torch()


def _one_torch_thread():
    """Pin torch to one thread; returns how to undo it. A fresh worker has not imported torch
    yet (a task that never uses it should not pay for importing it): OMP_NUM_THREADS, which
    torch reads at import, does the same there."""
    if "torch" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = "1"
        return lambda: None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return lambda: torch.set_num_threads(before)


def _ort_default_threads(threads: int):
    """Make `onnxruntime.SessionOptions()` start at `threads` intra-op threads in this process
    (a worker runs one task at a time); returns how to undo it."""
    import onnxruntime

    original = onnxruntime.SessionOptions

    def shared_options():
        options = original()
        options.intra_op_num_threads = threads
        return options

    onnxruntime.SessionOptions = shared_options
    return lambda: setattr(onnxruntime, "SessionOptions", original)
