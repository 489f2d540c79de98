"""Structured-pruning amount (or number of dropped blocks) under an accuracy budget, by bisection
or by a sweep of evenly spaced points (`_Sweep`).

Accuracy after prune + fine-tune falls (roughly) monotonically with the channel fraction
removed, so bisection between a known-good amount (0: the unpruned model) and a known-bad one
finds the largest amount within the budget in `iterations` prune/fine-tune runs. Each run starts
from the same trained model, never from the previous candidate.

With an executor of N workers each round builds N candidates at once (toolchain.search.prune_tasks):
the point the bisection needs now and, speculatively, the points it would visit next if each
outcome went as predicted, an outcome predicted by interpolating accuracy linearly between the
nearest amounts already measured. The decisions are then taken in order exactly as the
sequential loop takes them; a speculative point the loop never reaches is not a candidate. A
right prediction saves a round (prune + fine-tune) per extra worker; a wrong one costs nothing
but the idle worker's share.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.search.budget import Candidate, SearchBudget, SearchReport, pick_best
from toolchain.search.measure import export_onnx, latency_p50, onnx_accuracy
from toolchain.search.prune_tasks import FILES, build_candidate, knob_name
from toolchain.search.tasks import Runner

Point = float | int
ITERATIONS = 4  # candidates a bisection may try after its first, unless told otherwise


@dataclass(frozen=True)
class _Bisection:
    """Where a bisection starts and how it moves: `first` is tried first; after each outcome
    `next_point(good, bad, evaluated)` gives the next point, or None when the search is over."""

    knob: str  # "amount" | "drop_blocks"
    first: Point
    iterations: int

    def next_point(self, good: Point, bad: Point | None, evaluated: int) -> Point | None:
        if bad is None or evaluated > self.iterations:
            return None  # the largest point allowed already fits, or the budget of tries is spent
        if self.knob == "amount":
            return round((good + bad) / 2, 4)
        return None if bad - good <= 1 else (good + bad) // 2


@dataclass(frozen=True)
class _Sweep:
    """Every point at once (`edgeopt search --sweep N`): independent candidates, so an executor of
    N workers builds them N at a time, and no monotonic fall of accuracy is assumed."""

    knob: str
    points: tuple[Point, ...]

    @classmethod
    def even(cls, knob: str, hi: Point, n: int) -> _Sweep:
        """`n` evenly spaced points in (0, hi]; block counts rounded, each tried once."""
        if knob == "amount":
            return cls(knob, tuple(round(hi * k / n, 4) for k in range(1, n + 1)))
        return cls(knob, tuple(sorted({max(1, round(hi * k / n)) for k in range(1, n + 1)})))


def _walk(plan: _Bisection, meets: Callable[[Point], bool | None]) -> tuple[list[Point], Point | None]:
    """The sequential bisection as far as `meets` knows outcomes: the points decided, in order,
    and the next point needed (None: the search is over)."""
    good, bad, path = 0, None, []
    point: Point | None = plan.first
    while point is not None:
        outcome = meets(point)
        if outcome is None:
            return path, point
        path.append(point)
        good, bad = (point, bad) if outcome else (good, point)
        point = plan.next_point(good, bad, len(path))
    return path, None


def _predict(known: dict[Point, float], point: Point) -> float:
    """Accuracy at `point`, interpolated between the nearest measured points; past the largest
    measured one, assumed to fail (pruning more rarely helps)."""
    below = max(p for p in known if p <= point)
    above = [p for p in known if p >= point]
    if not above:
        return float("-inf")
    hi = min(above)
    if hi == below:
        return known[hi]
    return known[below] + (known[hi] - known[below]) * (point - below) / (hi - below)


def _round(plan: _Bisection, known: dict[Point, float], measured: set, floor: float, width: int) -> list[Point]:
    """The next `width` points to build: the one the bisection needs, then the ones it would need
    next if each outcome went as predicted from `known` accuracies."""
    chosen: list[Point] = []

    def meets(point: Point) -> bool | None:
        if point in measured:
            return known[point] >= floor
        if point not in chosen:
            if len(chosen) == width:
                return None
            chosen.append(point)
        return _predict(known, point) >= floor

    _walk(plan, meets)
    return chosen


def _bisect(plan: _Bisection, build: Callable[[list[Point]], dict[Point, dict]], baseline: float, floor: float,
            width: int) -> list[tuple[Point, dict]]:
    """Run the bisection, `width` candidates per round; returns the decided points and their results."""
    known: dict[Point, float] = {0: baseline}
    results: dict[Point, dict] = {}
    while True:
        path, needed = _walk(plan, lambda p: results[p]["accuracy"] >= floor if p in results else None)
        if needed is None:
            return [(p, results[p]) for p in path]
        for point, result in build(_round(plan, known, set(results), floor, width)).items():
            results[point], known[point] = result, result["accuracy"]


def _keep(result: dict, knob: dict[str, Any], out_dir: Path, floor: float) -> Candidate:
    """Copy a decided candidate out of the cache into out_dir/candidates/<name>/."""
    name = knob_name(knob)
    cdir = out_dir / "candidates" / name
    cdir.mkdir(parents=True, exist_ok=True)
    for fname in FILES:
        shutil.copyfile(Path(result["entry"]) / fname, cdir / fname)
    detail = {k: result[k] for k in ("params_after", "macs_after", "accuracy_per_step", "amount", "drop_blocks",
                                     "blocks_dropped")}
    detail.update(weights=f"candidates/{name}/model.pt", plan=f"candidates/{name}/plan.json")
    return Candidate(name, f"candidates/{name}/model.onnx", result["accuracy"], result["bytes"],
                     meets_budget=result["accuracy"] >= floor, detail=detail)


def _baseline(model, data, budget: SearchBudget, out_dir: Path,
              exported: Path | None) -> tuple[list[Candidate], float, float]:
    """The unpruned model's candidate: `exported` (the run's cached fp32 export) or exported here."""
    base_path = out_dir / "candidates" / "baseline" / "model.onnx"
    if exported is not None:
        base_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exported, base_path)
    else:
        export_onnx(model, data.x_test, base_path)
    baseline = onnx_accuracy(base_path, data.x_test, data.y_test)
    floor = budget.allowed(baseline)
    return [Candidate("baseline", "candidates/baseline/model.onnx", baseline, base_path.stat().st_size,
                      meets_budget=True, baseline=True, detail={"amount": 0.0, "drop_blocks": 0})], baseline, floor


@dataclass(frozen=True)
class Parallel:
    """Where and how a bisection builds its candidates.

    executor: toolchain.executor (None: here, one at a time); cache_dir: a stage cache every worker
    mounts (None: a temp folder); source: how a worker rebuilds the model when it does not pickle
    (prune_tasks.RecipeWeights); export_cfg: the recipe's [export] (None: opset 18); baseline_onnx:
    the fp32 model already exported (None: exported here)."""

    executor: Any = None
    cache_dir: Path | None = None
    source: Any = None
    export_cfg: Any = None
    baseline_onnx: Path | None = None


def _search(plan: _Bisection | _Sweep, model, data, budget: SearchBudget, out_dir: Path, prune_cfg, train_cfg,
            how: Parallel) -> tuple[list[Candidate], float, float, list[tuple[Point, Candidate]]]:
    """Baseline, then the bisection's (or sweep's) candidates: (candidates, baseline, floor, [(point, candidate)])."""
    from toolchain.search.prune_tasks import warm

    runner = Runner(how.executor)
    runner.warm_up(warm)  # the workers import torch and its exporter while the driver scores the baseline
    candidates, baseline, floor = _baseline(model, data, budget, out_dir, how.baseline_onnx)
    source = how.source if how.source is not None and how.executor is not None else model  # no reload here
    with contextlib.ExitStack() as stack:
        cache_dir = how.cache_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeopt-search-"))

        def build(points: list[Point]) -> dict[Point, dict]:
            done = runner.map({f"prune:{p}": (build_candidate, (Path(cache_dir), source, data, {plan.knob: p},
                                                                prune_cfg, train_cfg, how.export_cfg))
                               for p in points})
            return {p: done[f"prune:{p}"] for p in points}

        built = (list(build(list(plan.points)).items()) if isinstance(plan, _Sweep)
                 else _bisect(plan, build, baseline, floor, runner.width))
        decided = [(p, _keep(r, {plan.knob: p}, out_dir, floor)) for p, r in built]
    return candidates + [c for _, c in decided], baseline, floor, decided


def search_prune_amount(model, data, budget: SearchBudget, out_dir: Path, *, prune_cfg=None, train_cfg=None,
                        hi: float = 0.9, iterations: int = ITERATIONS, sweep: int | None = None,
                        measure_latency: bool = True, parallel: Parallel | None = None) -> SearchReport:
    """Largest structured-pruning amount in (0, hi] whose ONNX accuracy meets `budget`: by
    bisection, or with `sweep` = N, the best of N evenly spaced amounts.

    `model` is the trained model (not modified); `prune_cfg` supplies criterion, scope, steps and
    fine-tuning (its kind and amount are overridden). Writes out_dir/best/ (model.onnx, model.pt,
    plan.json), every candidate under out_dir/candidates/, search_prune.json and Pareto PNGs.
    `parallel`: on which executor and through which cache candidates are built (Parallel).
    """
    from toolchain.stages.prune import PruneConfig
    from toolchain.stages.train import TrainConfig

    prune_cfg = prune_cfg or PruneConfig(kind="structured")
    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    plan = _Sweep.even("amount", hi, sweep) if sweep else _Bisection("amount", hi, iterations)
    candidates, baseline, floor, decided = _search(plan, model, data, budget, out_dir, prune_cfg, train_cfg,
                                                   parallel or Parallel())
    tried = [{"amount": p, "accuracy": c.accuracy, "meets_budget": c.meets_budget, "params": c.detail["params_after"],
              "macs": c.detail["macs_after"]} for p, c in decided]
    return _finish(plan, candidates, budget, baseline, floor, tried, decided, out_dir, data.x_test, measure_latency)


def _reverted(plan: _Bisection | _Sweep, decided: list[tuple[Point, Candidate]], floor: float) -> list[dict[str, Any]]:
    """Each failing point and the largest passing point known when it failed (a sweep: none
    reverted, every point is a candidate of its own)."""
    if isinstance(plan, _Sweep):
        return []
    knob, reverted, good = plan.knob, [], 0.0 if plan.knob == "amount" else 0
    for point, cand in decided:
        if cand.meets_budget:
            good = point
        else:
            reverted.append({knob: point, "back_to": good,
                             "reason": f"accuracy {cand.accuracy:.4f} below the budget floor {floor:.4f}"})
    return reverted


def search_drop_blocks(model, data, budget: SearchBudget, out_dir: Path, *, prune_cfg, train_cfg=None,
                       iterations: int = ITERATIONS, sweep: int | None = None, measure_latency: bool = True,
                       parallel: Parallel | None = None) -> SearchReport:
    """Most blocks to drop (pruning/depth.py) whose ONNX accuracy meets `budget`, by bisection
    over 1..all droppable blocks (or a sweep of N counts), with `prune_cfg`'s channel amount and
    schedule for every try. Same outputs and `parallel` options as search_prune_amount."""
    from toolchain.errors import BadInput
    from toolchain.pruning.depth import droppable_blocks
    from toolchain.pruning.graph import example_input
    from toolchain.stages.prune_structured import ignored_layer_names
    from toolchain.stages.train import TrainConfig

    train_cfg = train_cfg or TrainConfig()
    out_dir = Path(out_dir)
    example = example_input(data.input_shape)
    ignored = ignored_layer_names(model, example, prune_cfg.ignored_layers)
    most = len(droppable_blocks(model, example, ignored))
    if most == 0:
        raise BadInput("this model has no droppable block (none keeps its input's shape)",
                       "search the channel amount instead: --prune-amount")
    plan = _Sweep.even("drop_blocks", most, sweep) if sweep else _Bisection("drop_blocks", most, iterations)
    candidates, baseline, floor, decided = _search(plan, model, data, budget, out_dir, prune_cfg, train_cfg,
                                                   parallel or Parallel())
    tried = [{"drop_blocks": p, "accuracy": c.accuracy, "meets_budget": c.meets_budget,
              "params": c.detail["params_after"], "macs": c.detail["macs_after"],
              "blocks_dropped": c.detail["blocks_dropped"]} for p, c in decided]
    return _finish(plan, candidates, budget, baseline, floor, tried, decided, out_dir, data.x_test, measure_latency)


def _finish(plan: _Bisection | _Sweep, candidates, budget, baseline, floor, tried, decided, out_dir: Path, x,
            measure_latency) -> SearchReport:
    from toolchain.search.pareto import plot_pareto

    if measure_latency:
        lat = latency_p50({c.name: out_dir / c.path for c in candidates}, x)
        for c in candidates:
            c.latency_ms = lat[c.name]
    best, met = pick_best(candidates, budget.objective)
    best_dir = out_dir / "best"
    best_dir.mkdir(exist_ok=True)
    for key, fname in (("weights", "model.pt"), ("plan", "plan.json")):
        shutil.copyfile(out_dir / best.detail[key], best_dir / fname)
    shutil.copyfile(out_dir / best.path, best_dir / "model.onnx")
    kind = "prune_amount" if plan.knob == "amount" else "drop_blocks"
    report = SearchReport(kind, budget.model_dump(), baseline, floor, met, best.name, "best/model.onnx",
                          candidates, tried, _reverted(plan, decided, floor),
                          strategy="sweep" if isinstance(plan, _Sweep) else "bisection")
    report.plots = plot_pareto(candidates, floor, best.name, out_dir, "pareto_prune")
    report.save(out_dir / "search_prune.json")
    return report
