"""Measuring a subject: ONNX Runtime sessions, the noise-aware latency loop, peak memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from toolchain.config.target import RuntimeOptions
from toolchain.gating.noise import ARTIFACT, REFERENCE, MeasureSpec, Rounds, measure


def runner(path: Path, runtime: RuntimeOptions) -> tuple[Callable[[], object], int]:
    """A zero-argument callable running one inference on seeded random inputs, and its batch.

    Gates time batch 1 (the budgets say "at batch 1") unless the artifact bakes in another."""
    import numpy as np

    from toolchain.bench.session import fixed_batch, input_spec
    from toolchain.runtime import load_session

    sess = load_session(path, runtime)
    batch = fixed_batch(sess) or 1
    rng = np.random.default_rng(0)
    feed = {name: rng.random([batch if d is None else d for d in shape]).astype(dtype)
            for name, shape, dtype in input_spec(sess)}
    return (lambda: sess.run(None, feed)), batch


def time_rounds(
    artifact: Path,
    reference: Path | None,
    runtime: RuntimeOptions,
    spec: MeasureSpec,
    done: Callable[[Rounds], bool],
) -> tuple[Rounds, int]:
    run_a, batch = runner(artifact, runtime)
    candidates = {ARTIFACT: run_a}
    if reference is not None:
        candidates[REFERENCE] = runner(reference, runtime)[0]
    return measure(candidates, spec, done), batch


def peak_memory(path: Path, runtime: RuntimeOptions, batch: int) -> float:
    from toolchain.bench.memory import peak_memory_mb

    return peak_memory_mb(Path(path), runtime, batch=batch)["peak_memory_mb"]
