"""Benchmark: what users pay for, for every candidate artifact side by side in one run.

Bytes on disk; latency percentiles at the profile's thread count and batch sizes (interleaved
rounds, see bench/latency.py); peak memory in a fresh process (bench/memory.py), also split
into ORT's own floor and the model's share above it; accuracy on the held-out split. PyTorch
eager is timed as a reference in rounds of its own, paired with ORT fp32. With `thread_sweep`, every artifact is also
timed at each listed thread count (bench/threads.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from toolchain.config.base import Strict
from toolchain.config.target import BenchmarkSpec, RuntimeOptions
from toolchain.feeds import Feeds, as_feeds

TORCH_EAGER = "torch-eager"


class BenchConfig(Strict):
    runtime: RuntimeOptions
    spec: BenchmarkSpec
    memory_repeats: int = Field(3, ge=1)
    # label -> session options for that candidate's memory probe only (latency always uses
    # `runtime`). The fp32 reference is what a user gets from ORT by default, not the profile.
    memory_runtime: dict[str, RuntimeOptions] = Field(default_factory=dict)


def ort_default_memory(runtime: RuntimeOptions) -> RuntimeOptions:
    """ORT's default session options (level "all", arena and memory pattern on, no config
    entries: RuntimeOptions' defaults) at the profile's thread counts. Threads are a speed
    choice, and ORT's own default (one per core) would tie the reference to the build host."""
    return RuntimeOptions(intra_op_threads=runtime.intra_op_threads, inter_op_threads=runtime.inter_op_threads)


def _torch_runner(model, xb: np.ndarray):
    import torch

    t = torch.as_tensor(xb)

    def run():
        with torch.no_grad():
            model(t)

    return run


def benchmark(candidates: dict[str, Path], x: np.ndarray | Feeds, y: np.ndarray | None, cfg: BenchConfig, torch_model=None) -> dict[str, Any]:
    """Measure every candidate artifact (label -> path); returns label -> metrics. `x` is a
    single input's samples (axis 0), or Feeds for every input of the model."""
    from toolchain.bench.graph_ops import optimized_op_counts
    from toolchain.bench.session import fixed_batch, load_session, predict

    sessions = {label: load_session(path, cfg.runtime) for label, path in candidates.items()}
    # A bare array's model has its batch on input 0's dim 0; Feeds know their own fixed batch.
    feeds, known_batch = as_feeds(x, next(iter(sessions.values())).get_inputs()[0].name), isinstance(x, Feeds)
    results: dict[str, dict[str, Any]] = {}
    for label, sess in sessions.items():
        entry: dict[str, Any] = {"bytes": Path(candidates[label]).stat().st_size, "latency_ms": {},
                                 "optimized_ops": optimized_op_counts(Path(candidates[label]), cfg.runtime)}
        if y is not None:  # top-1 accuracy on output 0
            entry["accuracy"] = float((predict(sess, x).argmax(1) == y).mean())
        results[label] = entry
    if torch_model is not None:
        import torch

        results[TORCH_EAGER] = {"latency_ms": {}}
        if y is not None:
            with torch.no_grad():
                entry_acc = torch_model(torch.as_tensor(feeds.arrays[feeds.names[0]])).argmax(1).numpy()
            results[TORCH_EAGER]["accuracy"] = float((entry_acc == y).mean())

    for b in cfg.spec.batch_sizes:
        xb = feeds.at_batch(b)
        fns = {}
        for label, sess in sessions.items():
            fb = feeds.fixed_batch if known_batch else fixed_batch(sess)
            if fb is not None and fb != b:
                continue  # a fixed-shape artifact only runs its own batch size
            fns[label] = (lambda s=sess, xb=xb: s.run(None, xb))
        stats = _timed(fns, cfg)
        for label, st in stats.items():
            results[label]["latency_ms"][str(b)] = st.to_dict()
        if torch_model is not None and "fp32" in fns:
            # Its own rounds, paired with ORT fp32: eager's multi-ms calls between the ORT
            # candidates' moved a pruned model's ratio from 3.6-4.2x to 5.1-5.8x (2026-11-27).
            pair = _timed({"fp32": fns["fp32"], TORCH_EAGER: _torch_runner(torch_model, xb[feeds.names[0]])}, cfg)
            results[TORCH_EAGER]["latency_ms"][str(b)] = pair[TORCH_EAGER].to_dict()
            results[TORCH_EAGER].setdefault("fp32_p50_same_rounds", {})[str(b)] = pair["fp32"].p50

    if cfg.spec.thread_sweep:  # which thread count should the app use? (bench/threads.py)
        from toolchain.bench.threads import thread_sweep

        inputs = {b: feeds.at_batch(b) for b in cfg.spec.batch_sizes}
        del sessions, fns  # the closures hold sessions too: none may stay alive to contend with the sweep's
        swept = thread_sweep(candidates, inputs, cfg.runtime, cfg.spec.thread_sweep, cfg.spec,
                             fixed=feeds.fixed_batch if known_batch else "input0")
        for label, by_threads in swept.items():
            results[label]["threads"] = {str(n): {str(b): st.to_dict() for b, st in by_batch.items()}
                                         for n, by_batch in by_threads.items()}

    _memory(results, candidates, cfg, feeds.at_batch(cfg.spec.batch_sizes[0]) if known_batch else None)
    return results


def _memory(results: dict, candidates: dict[str, Path], cfg: BenchConfig, feed: dict | None) -> None:
    """Peak memory per candidate at the first batch size; `feed` None: memprobe makes its input."""
    from toolchain.bench.memory import memory_breakdown

    for label, path in candidates.items():
        runtime = cfg.memory_runtime.get(label, cfg.runtime)
        results[label].update(memory_breakdown(Path(path), runtime, batch=cfg.spec.batch_sizes[0],
                                               repeats=cfg.memory_repeats, feed=feed))
        results[label]["memory_runtime"] = runtime.model_dump(mode="json")


def _timed(fns, cfg: BenchConfig):
    import torch

    from toolchain.bench.latency import interleaved

    # torch eager gets the same thread budget as the ORT sessions, so speedups compare like with like.
    previous = torch.get_num_threads()
    torch.set_num_threads(max(cfg.runtime.intra_op_threads, 1))
    try:
        s = cfg.spec
        return interleaved(fns, warmup=s.warmup_runs, runs=s.runs, rounds=s.rounds, max_seconds=s.max_seconds)
    finally:
        torch.set_num_threads(previous)
