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

from toolchain.config.stages import BenchConfig
from toolchain.config.target import RuntimeOptions
from toolchain.data.feeds import Feeds, as_feeds

TORCH_EAGER = "torch-eager"


def ort_default_memory(runtime: RuntimeOptions) -> RuntimeOptions:
    """The engine's default session options (for ORT: level "all", arena and memory pattern on, no
    config entries: RuntimeOptions' defaults) at the profile's thread counts. Threads are a speed
    choice, and ORT's own default (one per core) would tie the reference to the build host."""
    return RuntimeOptions(engine=runtime.engine, intra_op_threads=runtime.intra_op_threads,
                          inter_op_threads=runtime.inter_op_threads)


def _torch_runner(model, feed: dict[str, np.ndarray], names: tuple[str, ...]):
    import torch

    args = tuple(torch.as_tensor(feed[n]) for n in names)  # the model's inputs, in order

    def run():
        with torch.no_grad():
            model(*args)

    return run


def headline_batch(results: dict[str, Any], batch_sizes: list[int], label: str = "fp32") -> str:
    """The batch size the headline numbers use: the profile's first one `label` was timed at,
    else the first it was timed at (a fixed-batch model that fits none of the profile's)."""
    timed = results[label]["latency_ms"]
    return next((str(b) for b in batch_sizes if str(b) in timed), next(iter(timed), str(batch_sizes[0])))


def benchmark(candidates: dict[str, Path], x: np.ndarray | Feeds, y: np.ndarray | None, cfg: BenchConfig,
              torch_model=None) -> dict[str, Any]:
    """Measure every candidate artifact (label -> path); returns label -> metrics. `x` is a
    single input's samples (axis 0), or Feeds for every input of the model. Every phase is
    bounded by `spec.max_seconds` per candidate (a session load is timed, not interrupted); what
    the cap cut short is listed in the candidate's `capped`, skipped batch sizes in `skipped_batch_sizes`."""
    from toolchain.bench.session import batch_plan, session_fixed_batch

    spec = cfg.spec
    sessions, results = _load_all(candidates, x, y, cfg)
    # A bare array's model has its batch on input 0's dim 0; Feeds know their own fixed batch.
    feeds, known_batch = as_feeds(x, next(iter(sessions.values())).get_inputs()[0].name), isinstance(x, Feeds)
    fixed = {label: session_fixed_batch(s, feeds) for label, s in sessions.items()}
    capped: dict[str, list[str]] = {label: [] for label in candidates}
    batches, skipped = batch_plan(fixed, spec.batch_sizes)
    for label, why in skipped.items():
        results[label]["skipped_batch_sizes"] = why
    for label, r in results.items():
        if r["load_seconds"] > spec.max_seconds:
            capped[label].append(f"session load took {r['load_seconds']:.1f} s, over the {spec.max_seconds:g} s cap")
    if torch_model is not None:
        results[TORCH_EAGER] = _eager_accuracy(torch_model, x, y)
        capped[TORCH_EAGER] = []
    for b in batches:
        _time_batch(b, feeds.at_batch(b), feeds.names, sessions, fixed, results, capped, cfg, torch_model)

    if spec.thread_sweep:  # which thread count should the app use? (bench/threads.py)
        from toolchain.bench.threads import thread_sweep

        inputs = {b: feeds.at_batch(b) for b in batches}
        del sessions  # none may stay alive to contend with the sweep's
        runtimes = {label: cfg.runtime_for_label(label) for label in candidates}
        swept = thread_sweep(candidates, inputs, runtimes, spec.thread_sweep, spec, capped, fixed=fixed)
        for label, by_threads in swept.items():
            results[label]["threads"] = {str(n): {str(b): st.to_dict() for b, st in by_batch.items()}
                                         for n, by_batch in by_threads.items()}

    # memory at the first batch every candidate takes (batch_plan lists the profile's sizes first)
    mem_batch = next((b for b in batches if all(f in (None, b) for f in fixed.values())), spec.batch_sizes[0])
    _memory(results, candidates, cfg, capped, mem_batch, feeds.at_batch(mem_batch) if known_batch else None)
    for label, what in capped.items():
        if what:
            results[label]["capped"] = what
    return results


def _memory(results: dict, candidates: dict[str, Path], cfg: BenchConfig, capped: dict, batch: int,
            feed: dict | None) -> None:
    """Peak memory per candidate at the first batch size; `feed` None: memprobe makes its input."""
    from toolchain.bench.memory import memory_breakdown

    for label, path in candidates.items():
        runtime = cfg.memory_runtime.get(label, cfg.runtime_for_label(label))
        results[label].update(memory_breakdown(Path(path), runtime, batch=batch,
                                               repeats=cfg.memory_repeats, max_seconds=cfg.spec.max_seconds,
                                               feed=feed))
        results[label]["memory_runtime"] = runtime.model_dump(mode="json")
        if results[label]["memory_probes"] < cfg.memory_repeats:
            capped[label].append(f"memory: {results[label]['memory_probes']}/{cfg.memory_repeats} probes in the cap")


def _load_all(candidates: dict[str, Path], x: np.ndarray | Feeds, y: np.ndarray | None, cfg: BenchConfig):
    """(label -> session, label -> entry with bytes, load time, optimized op counts, accuracy)."""
    import time

    from toolchain.bench.session import predict
    from toolchain.runtime import load_session, runtime_for

    sessions, results = {}, {}
    for label, path in candidates.items():
        start = time.perf_counter()
        runtime = cfg.runtime_for_label(label)
        sessions[label] = load_session(path, runtime)
        entry: dict[str, Any] = {"bytes": Path(path).stat().st_size, "latency_ms": {},
                                 "load_seconds": time.perf_counter() - start,
                                 "optimized_ops": runtime_for(runtime).optimized_op_counts(Path(path))}
        if y is not None:  # top-1 accuracy on output 0
            entry["accuracy"] = float((predict(sessions[label], x).argmax(1) == y).mean())
        results[label] = entry
    return sessions, results


def _eager_accuracy(torch_model, x: np.ndarray | Feeds, y: np.ndarray | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"latency_ms": {}}
    if y is not None:
        from toolchain.stages.train import accuracy

        entry["accuracy"] = accuracy(torch_model, x, y)
    return entry


def _time_batch(b: int, feed: dict, input_names: tuple[str, ...], sessions: dict, fixed: dict, results: dict, capped: dict,
                cfg: BenchConfig, torch_model) -> None:
    """Time every session that takes batch `b` (interleaved), and torch eager paired with fp32."""
    fns = {}
    for label, sess in sessions.items():
        if fixed[label] is not None and fixed[label] != b:
            continue  # a fixed-shape artifact only runs its own batch size (batch_plan notes it)
        fns[label] = (lambda s=sess, feed=feed: s.run(None, feed))
    timed = _timed(fns, cfg)
    for label, st in timed.stats.items():
        results[label]["latency_ms"][str(b)] = st.to_dict()
    for label, what in timed.capped.items():
        capped[label].append(f"latency batch {b}: {what}")
    if torch_model is not None and "fp32" in fns:
        # Its own rounds, paired with ORT fp32: eager's multi-ms calls between the ORT
        # candidates' moved a pruned model's ratio from 3.6-4.2x to 5.1-5.8x (2026-11-27).
        pair = _timed({"fp32": fns["fp32"], TORCH_EAGER: _torch_runner(torch_model, feed, input_names)}, cfg)
        results[TORCH_EAGER]["latency_ms"][str(b)] = pair.stats[TORCH_EAGER].to_dict()
        results[TORCH_EAGER].setdefault("fp32_p50_same_rounds", {})[str(b)] = pair.stats["fp32"].p50
        for label, what in pair.capped.items():
            capped[label].append(f"eager pair batch {b}: {what}")


def _timed(fns, cfg: BenchConfig):
    import torch

    from toolchain.bench.latency import interleaved_capped

    # torch eager gets the same thread budget as the ORT sessions, so speedups compare like with like.
    previous = torch.get_num_threads()
    torch.set_num_threads(max(cfg.runtime.intra_op_threads, 1))
    try:
        s = cfg.spec
        return interleaved_capped(fns, warmup=s.warmup_runs, runs=s.runs, rounds=s.rounds, max_seconds=s.max_seconds)
    finally:
        torch.set_num_threads(previous)
