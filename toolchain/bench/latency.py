"""Latency percentiles with interleaved rounds.

Shared machines drift by tens of percent within a minute. Timing candidate A for ten seconds
and then B would attribute that drift to the models, so every round runs each candidate for a
slice of its runs, in an order rotated per round, and percentiles pool all rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    runs: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(
        p50=float(p50), p90=float(p90), p99=float(p99), mean=float(a.mean()), std=float(a.std()),
        min=float(a.min()), max=float(a.max()), runs=int(a.size),
    )


def interleaved(
    candidates: Mapping[str, Callable[[], Any]],
    warmup: int,
    runs: int,
    rounds: int,
    max_seconds: float,
) -> dict[str, LatencyStats]:
    """Time each zero-argument callable; `runs` total per candidate split over `rounds`."""
    names = list(candidates)
    for name in names:
        for _ in range(warmup):
            candidates[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    spent: dict[str, float] = {n: 0.0 for n in names}
    per_round = max(1, runs // rounds)
    clock = time.perf_counter
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn = candidates[name]
            budget = max_seconds / rounds
            start_round = clock()
            for _ in range(per_round):
                t0 = clock()
                fn()
                samples[name].append((clock() - t0) * 1e3)
                if clock() - start_round > budget:
                    break
            spent[name] += clock() - start_round
    return {n: summarize(samples[n]) for n in names}
