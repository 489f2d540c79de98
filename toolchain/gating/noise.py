"""Statistics for gating on a noisy machine, and the measure-until-decided loop.

Why rounds: single inference times on a shared runner are not independent draws: the machine
drifts by tens of percent within a minute, so a confidence interval over thousands of single
samples is far too narrow. We time in *rounds* instead: each round runs every candidate for a
short slice in the order artifact, reference, reference, artifact (an ABBA block cancels drift
that is linear within the round), and reduces each slice to one statistic (the round's median
or p90, or the artifact/reference ratio of those). Rounds are close to independent, so a
distribution-free order-statistic interval over them is honest, and the ratio cancels the
drift that hits both candidates alike. The rule that turns an interval into a verdict is
`decide`; docs/gating.md explains it.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from toolchain.bench.timing import Deadline, repeat, time_calls

ARTIFACT, REFERENCE = "artifact", "reference"


def median_ci(values, confidence: float) -> tuple[float, float, float]:
    """(lower, upper, achieved coverage) of a distribution-free interval for the median.

    With n sorted values, [x_(j), x_(n+1-j)] covers the true median with probability
    1 - 2*P(Binomial(n, 1/2) < j). We take the largest j whose coverage is still >= the asked
    confidence; too few values for that gives (min, max) and its (lower) coverage.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("no values")
    alpha_half = (1.0 - confidence) / 2.0
    cdf, j = 0.0, 0  # cdf = P(B <= j - 1) = P(B < j) while j grows
    while True:
        nxt = cdf + math.comb(n, j) / 2.0**n
        if nxt > alpha_half or j + 1 > (n + 1) // 2:
            break
        cdf, j = nxt, j + 1
    j = max(j, 1)
    coverage = 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2.0**n
    return float(x[j - 1]), float(x[n - j]), coverage


@dataclass(frozen=True)
class Decision:
    """A verdict on `estimate <= limit` given an interval around the estimate."""

    passed: bool | None  # None: the interval straddles the limit and more rounds may settle it
    rule: str


STRADDLE_RULES = ("recheck", "pass", "fail", "estimate")


def decide(estimate: float, lo: float, hi: float, limit: float, final: bool, straddle: str = "pass") -> Decision:
    """Clearly under passes, clearly over fails; a straddle asks for more rounds. A straddle at
    the cap (the machine could not resolve the difference in the time allowed) is decided by
    `straddle`: "pass" (a gate must not flake on what it cannot measure; the report flags it),
    "fail" (never let an unresolved regression through) or "estimate" (the point estimate
    against the limit). The default rule, "recheck", is applied by the caller: it re-runs this
    with the final interval at MeasureSpec.final_confidence and the "pass" rule."""
    if hi <= limit:
        return Decision(True, "interval below limit")
    if lo > limit:
        return Decision(False, "interval above limit")
    if not final:
        return Decision(None, "straddle: measure more")
    passed = {"pass": True, "fail": False}.get(straddle, estimate <= limit)
    return Decision(passed, f"straddle at cap: {straddle} rule")


@dataclass(frozen=True)
class MeasureSpec:
    # 99% rather than 95%: the loop looks at the interval after every round, and each look is
    # another chance for a fluke to decide; the stricter level keeps the overall error small.
    confidence: float = 0.99
    # 8 rounds is the fewest for which a 99% order-statistic interval exists (coverage 99.2%).
    min_rounds: int = 8
    max_rounds: int = 60
    max_seconds: float = 20.0  # per gated target: CI time is money, a straddle at the cap is decided
    straddle: str = "recheck"  # rule for a straddle at the cap; see decide() and docs/gating.md
    # "recheck": once the looking is over, one last decision at 80%: a regression the 99%
    # interval could not settle but that sits clearly above the limit still fails, while an
    # interval that still straddles passes (flagged). Measured effect in benchmarks/results.
    final_confidence: float = 0.80
    slice_seconds: float = 0.08  # per candidate per round: long enough for ~20+ runs of a 1 ms model
    min_runs: int = 10  # per slice: a p90 needs some samples even for slow models
    max_runs: int = 2000  # per slice: tiny models would otherwise spend the slice in Python overhead
    warmup_seconds: float = 0.2


@dataclass
class Rounds:
    """Per-round timing samples (ms) of each candidate."""

    names: list[str]
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.samples[self.names[0]]) if self.names else 0

    def per_round(self, name: str, q: float) -> np.ndarray:
        return np.array([np.percentile(s, q) for s in self.samples[name]])

    def ratio(self, q: float) -> np.ndarray:
        """Per-round artifact/reference ratio of the q-th percentile."""
        return self.per_round(ARTIFACT, q) / self.per_round(REFERENCE, q)

    def pooled(self, name: str, q: float) -> float:
        return float(np.percentile(np.concatenate(self.samples[name]), q))

    def runs(self, name: str) -> int:
        return int(sum(s.size for s in self.samples[name]))


def estimate(values: np.ndarray, confidence: float) -> dict[str, float]:
    """Median of per-round values (p50s, p90s or their ratios) with its order-statistic interval."""
    lo, hi, cov = median_ci(values, confidence)
    return {"value": float(np.median(values)), "ci_low": lo, "ci_high": hi, "coverage": cov}



def _time_slice(fn: Callable[[], object], runs: int, clock=time.perf_counter) -> np.ndarray:
    return time_calls(fn, runs, clock=clock)


def _calibrate(fn: Callable[[], object], spec: MeasureSpec) -> int:
    """Warm up (first runs pay for allocation and lazy kernel setup) and size a slice."""
    deadline = Deadline(spec.warmup_seconds)
    n = repeat(fn, deadline=deadline, at_least=5)
    per_run = deadline.elapsed() / n
    return int(min(spec.max_runs, max(spec.min_runs, round(spec.slice_seconds / max(per_run, 1e-7)))))


def measure(
    candidates: Mapping[str, Callable[[], object]],
    spec: MeasureSpec,
    done: Callable[[Rounds], bool],
    clock: Callable[[], float] = time.perf_counter,
) -> Rounds:
    """Time rounds until `done(rounds)` (checked from min_rounds on) or a cap is reached.

    `candidates` holds ARTIFACT and optionally REFERENCE. Each round is one ABBA block (the
    reference's halves in the middle), so both see the same mean machine state.
    """
    names = [n for n in (ARTIFACT, REFERENCE) if n in candidates]
    # Every candidate runs the same count per slice (sized on the artifact): the first runs after
    # a switch pay for cold caches and the other session's spinning threads, and equal counts give
    # both candidates the same share of those runs, which matters for a p90.
    per_slice = _calibrate(candidates[ARTIFACT], spec)
    for name in names[1:]:
        _calibrate(candidates[name], spec)  # warm-up only
    runs = dict.fromkeys(names, per_slice)
    order = [ARTIFACT, REFERENCE, REFERENCE, ARTIFACT] if REFERENCE in names else [ARTIFACT, ARTIFACT]
    rounds = Rounds(names, {n: [] for n in names})
    start = clock()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed run is noise we can avoid, not machine behaviour
    try:
        while True:
            parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
            for name in order:
                parts[name].append(_time_slice(candidates[name], max(1, runs[name] // 2)))
            for name in names:
                rounds.samples[name].append(np.concatenate(parts[name]))
            rounds.seconds = clock() - start
            n = len(rounds)
            if n >= spec.max_rounds or (rounds.seconds >= spec.max_seconds and n >= 2):
                return rounds
            if n >= spec.min_rounds and done(rounds):
                return rounds
    finally:
        if gc_was_enabled:
            gc.enable()

