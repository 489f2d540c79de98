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

from toolchain.bench.timing import Clock, Deadline, repeat, time_calls


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


@dataclass(frozen=True)
class Timed:
    stats: dict[str, LatencyStats]
    capped: dict[str, str]  # candidate -> what the time cap cut short (only candidates it cut)


def interleaved(
    candidates: Mapping[str, Callable[[], Any]],
    warmup: int,
    runs: int,
    rounds: int,
    max_seconds: float,
) -> dict[str, LatencyStats]:
    """Time each zero-argument callable; `runs` total per candidate split over `rounds`."""
    return interleaved_capped(candidates, warmup, runs, rounds, max_seconds).stats


def interleaved_capped(
    candidates: Mapping[str, Callable[[], Any]],
    warmup: int,
    runs: int,
    rounds: int,
    max_seconds: float,
    clock: Clock = time.perf_counter,
) -> Timed:
    """`interleaved`, saying which candidates the cap cut. Each candidate gets `max_seconds` in
    all, one equal share for its warm-up and one per round; a candidate that has overspent (a
    single call longer than a share) skips its remaining rounds once it has a sample. So a
    candidate costs at most `max_seconds` plus two calls, however slow the model."""
    names = list(candidates)
    if not names:  # nothing fits this batch size: nothing to time (not an error)
        return Timed({}, {})
    share = max_seconds / (rounds + 1)
    spent = dict.fromkeys(names, 0.0)
    warmed = {}
    for name in names:
        deadline = Deadline(share, clock)
        warmed[name] = repeat(candidates[name], at_most=warmup, deadline=deadline, at_least=min(warmup, 1))
        spent[name] += deadline.elapsed()
    samples: dict[str, list[np.ndarray]] = {n: [] for n in names}
    per_round = max(1, runs // rounds)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if spent[name] >= max_seconds and samples[name]:
                continue
            deadline = Deadline(share, clock)
            samples[name].append(time_calls(candidates[name], per_round, deadline, clock))
            spent[name] += deadline.elapsed()
    stats = {n: summarize(np.concatenate(samples[n])) for n in names}
    capped = {n: f"cap {max_seconds:g} s: {warmed[n]}/{warmup} warm-ups, {stats[n].runs}/{per_round * rounds} runs"
              for n in names if warmed[n] < warmup or stats[n].runs < per_round * rounds}
    return Timed(stats, capped)
