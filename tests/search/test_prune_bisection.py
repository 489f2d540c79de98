"""The pruning bisection on N workers takes the decisions of the sequential one: the same points,
in the same order, whatever the predictions; with a smooth accuracy curve it needs fewer rounds."""

from __future__ import annotations

import math

import pytest

from toolchain.search.prune import _bisect, _Bisection, _predict, _Sweep

FLOOR = 0.9


def _curve(kind: str):
    """Accuracy after pruning `amount`: smooth, a cliff, or noisy but monotone-ish."""
    if kind == "smooth":
        return lambda a: 0.99 - 0.2 * a
    if kind == "cliff":
        return lambda a: 0.98 if a < 0.61 else 0.3
    return lambda a: 0.99 - 0.25 * a + 0.03 * math.sin(40 * a)


def _run(plan, curve, width):
    rounds, built = [], []

    def build(points):
        assert points and len(points) <= width and not set(points) & set(built)  # each point built once
        rounds.append(points)
        built.extend(points)
        return {p: {"accuracy": curve(p)} for p in points}

    decided = _bisect(plan, build, 0.99, FLOOR, width)
    return [p for p, _ in decided], rounds, built


@pytest.mark.parametrize("kind", ["smooth", "cliff", "noisy"])
@pytest.mark.parametrize("plan", [_Bisection("amount", 0.9, 4), _Bisection("amount", 0.9, 7),
                                  _Bisection("drop_blocks", 17, 4)])
def test_every_width_decides_the_points_of_the_sequential_bisection(kind, plan):
    by_amount = _curve(kind)
    curve = by_amount if plan.knob == "amount" else (lambda n: by_amount(n / 20))
    path, rounds, _ = _run(plan, curve, 1)
    assert rounds == [[p] for p in path] and len(path) >= 3
    for width in (2, 3):
        wide_path, wide_rounds, built = _run(plan, curve, width)
        assert wide_path == path and set(path) <= set(built)
        assert len(wide_rounds) <= len(rounds)


def test_a_smooth_curve_takes_fewer_rounds_on_two_workers():
    plan = _Bisection("amount", 0.9, 4)
    path, rounds, _ = _run(plan, _curve("smooth"), 1)
    _, wide_rounds, built = _run(plan, _curve("smooth"), 2)
    assert path == [0.9, 0.45, 0.675, 0.5625, 0.5062] and len(rounds) == 5
    # a straight line is predicted exactly: every speculative point is one the bisection needs
    assert wide_rounds == [[0.9, 0.45], [0.675, 0.5625], [0.5062]] and len(built) == 5


def test_prediction_interpolates_between_measured_points_and_fails_past_them():
    known = {0: 0.99, 0.5: 0.89}
    assert _predict(known, 0.25) == pytest.approx(0.94)
    assert _predict(known, 0.5) == 0.89 and _predict(known, 0.7) == float("-inf")


def test_a_sweep_spaces_its_points_evenly_and_tries_each_block_count_once():
    assert _Sweep.even("amount", 0.9, 8).points == (0.1125, 0.225, 0.3375, 0.45, 0.5625, 0.675, 0.7875, 0.9)
    assert _Sweep.even("drop_blocks", 3, 8).points == (1, 2, 3)  # 8 points over 3 blocks: each count once
    assert _Sweep.even("drop_blocks", 17, 4).points == (4, 8, 13, 17)
