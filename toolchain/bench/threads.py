"""Latency per intra-op thread count: which thread count should the app configure?

A profile's thread count is a guess, and the right answer depends on the model and the batch:
on the 2-core reference machine 2 threads made digits 1.55x *slower* at batch 1 and
resnet-small 1.35x faster at batch 8 (timed alone, 2026-11-26). So the benchmark can time each
artifact at several counts and report the fastest per batch size.

Sessions with different thread counts are never alive at the same time: ORT's pool threads
spin after each run and steal the cores from whichever session runs next (measured: 2-thread
figures swung the most when several sessions were live). Each round opens one session per
(artifact, thread count) in rotated order, times a slice of the runs at every batch size and
closes it, so drift is spread over all counts the same way interleaved() spreads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolchain.bench.latency import LatencyStats, summarize
from toolchain.bench.timing import Deadline, repeat, time_calls
from toolchain.config.target import BenchmarkSpec, RuntimeOptions


def thread_sweep(
    artifacts: Mapping[str, Path],
    inputs: Mapping[int, dict[str, np.ndarray] | np.ndarray],
    runtime: RuntimeOptions | Mapping[str, RuntimeOptions],
    counts: list[int],
    spec: BenchmarkSpec,
    capped: dict[str, list[str]] | None = None,
    fixed: int | None | str | Mapping[str, int | None] = "input0",
) -> dict[str, dict[int, dict[int, LatencyStats]]]:
    """label -> thread count -> batch size -> latency, for every artifact the batch fits.
    `inputs` are feed dicts (or input 0's array) per batch size; `fixed` is the model's fixed batch
    (None: dynamic), or "input0": read it from each artifact's first input.

    Each (artifact, thread count) gets `spec.max_seconds` in all, its session loads included
    (one per round): once spent, it skips the remaining rounds, and `capped[label]` names it."""
    from toolchain.bench.session import fixed_batch
    from toolchain.runtime import load_session

    pairs = [(label, n) for label in artifacts for n in counts]
    samples: dict[tuple[str, int, int], list[np.ndarray]] = {}
    spent = dict.fromkeys(pairs, 0.0)
    per_round = max(1, spec.runs // spec.rounds)
    budget = spec.max_seconds / spec.rounds / max(len(inputs), 1)
    warmup = max(1, spec.warmup_runs // spec.rounds)  # a fresh session needs its warm-up every round
    for r in range(spec.rounds):
        for label, n in pairs[r % len(pairs):] + pairs[: r % len(pairs)]:
            if spent[(label, n)] >= spec.max_seconds:
                _note(capped, label, f"threads {n}: {spec.max_seconds:g} s cap reached, later rounds skipped")
                continue
            pair_clock = Deadline(None)
            options = runtime[label] if isinstance(runtime, Mapping) else runtime
            sess = load_session(artifacts[label], options.model_copy(update={"intra_op_threads": n}))
            fb = fixed[label] if isinstance(fixed, Mapping) else fixed_batch(sess) if fixed == "input0" else fixed
            for b, xb in inputs.items():
                if fb is not None and fb != b:
                    continue  # a fixed-shape artifact only runs its own batch size
                feed = xb if isinstance(xb, dict) else {sess.get_inputs()[0].name: xb}
                times = _time_feed(sess, feed, warmup, per_round, budget)
                samples.setdefault((label, n, b), []).append(times)
            del sess  # its pool threads go before the next session's start
            spent[(label, n)] += pair_clock.elapsed()
    out: dict[str, dict[int, dict[int, LatencyStats]]] = {}
    for (label, n, b), times in samples.items():
        out.setdefault(label, {}).setdefault(n, {})[b] = summarize(np.concatenate(times))
    return out


def _time_feed(sess, feed: dict, warmup: int, per_round: int, budget: float) -> np.ndarray:
    """Warm-up then timed runs of one feed, sharing `budget` seconds (at least one of each)."""
    deadline = Deadline(budget)

    def call():
        return sess.run(None, feed)

    repeat(call, at_most=warmup, deadline=deadline, at_least=1)
    return time_calls(call, per_round, deadline)


def _note(capped: dict[str, list[str]] | None, label: str, what: str) -> None:
    if capped is not None and what not in capped.setdefault(label, []):
        capped[label].append(what)


def fastest_threads(p50_by_threads: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """batch size -> the thread count with the lowest p50 (ties: fewer threads)."""
    batches = sorted({b for by_batch in p50_by_threads.values() for b in by_batch}, key=int)
    best = {}
    for b in batches:
        timed = [(p50_by_threads[n][b], int(n)) for n in p50_by_threads if b in p50_by_threads[n]]
        best[b] = min(timed)[1]
    return best
