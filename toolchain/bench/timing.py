"""The one timing primitive every timing loop uses (bench/latency, bench/threads, gating/noise).

Each loop used to hand-roll `t0 = clock(); fn(); samples.append(clock() - t0)` with its own idea
of when to stop; a time cap that only some loops honoured let a slow model's warm-ups run for
minutes. Here a `Deadline` says when to stop, `time_calls` times calls until a count or the
deadline, and `repeat` runs untimed calls (warm-ups) the same way. A call already running is
never interrupted, so a loop overshoots its deadline by at most one call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

Clock = Callable[[], float]


class Deadline:
    """A wall-clock budget of `seconds` (None: unlimited) that starts when it is created."""

    def __init__(self, seconds: float | None, clock: Clock = time.perf_counter):
        self.seconds = seconds
        self._clock = clock
        self._start = clock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def left(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


def time_calls(fn: Callable[[], object], n: int, deadline: Deadline | None = None,
               clock: Clock = time.perf_counter) -> np.ndarray:
    """Milliseconds of each of up to `n` calls of `fn`; stops after the call during which
    `deadline` expired (so at least one call is timed when n >= 1)."""
    out = np.empty(n)
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
        if deadline is not None and deadline.expired():
            return out[: i + 1] * 1e3
    return out * 1e3


def repeat(fn: Callable[[], object], at_most: int | None = None, deadline: Deadline | None = None,
           at_least: int = 0) -> int:
    """Call `fn` untimed (warm-up): `at_least` times, then until `at_most` calls or the deadline
    (whichever comes first; neither given: just `at_least`). Returns the number of calls."""
    if at_most is None and deadline is None:
        at_most = at_least
    n = 0
    while n < at_least or ((at_most is None or n < at_most) and not (deadline is not None and deadline.expired())):
        fn()
        n += 1
    return n
