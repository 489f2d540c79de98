"""The gate: resolve PATH, measure what the budgets need, decide each budget.

Exact metrics (bytes, size ratio, recorded accuracy drop, peak memory, whose spread is
~1% here) are compared directly via `toolchain.config.budgets.evaluate`. Latency budgets go through the
noise-aware loop: rounds continue until every latency interval is clear of its limit or a cap
is hit (`toolchain.gating.noise`). docs/gating.md states the rule.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config.budgets import evaluate
from toolchain.config.target import TargetProfile, load_target
from toolchain.gating import sources
from toolchain.gating.baseline import Baseline, baseline_artifact
from toolchain.gating.budgets_file import GateBudgets, budgets_for
from toolchain.gating.collect import peak_memory, time_rounds
from toolchain.gating.noise import ARTIFACT, MeasureSpec, Rounds, decide, estimate

_LATENCY_BUDGETS = {"max_p50_ms": 50, "max_p90_ms": 90}  # budget -> percentile
DEFAULT_SPEC = MeasureSpec()
REGRESSION = "max_regression"


@dataclass(frozen=True)
class GateInputs:
    budgets: dict[str, GateBudgets]
    budgets_source: str
    targets: tuple[str, ...] = ()
    baseline: Baseline | None = None
    baseline_file: Path | None = None
    targets_dir: Path | None = None
    spec: MeasureSpec | None = None  # None: DEFAULT_SPEC


@dataclass(frozen=True)
class Reference:
    path: Path | None
    kind: str  # "baseline-artifact" | "fp32" | "none"
    ratio_p50: float = 1.0  # the artifact/reference ratio the baseline had (1 for its own artifact)
    ratio_p90: float = 1.0


def choose_reference(subject: sources.Subject, b: Baseline | None, baseline_file: Path | None) -> Reference:
    """The baseline's own artifact beats the fp32 artifact: timing old against new answers the
    regression question directly. Without either, regressions compare absolute times."""
    if b is None:
        return Reference(None, "none")
    own = baseline_artifact(b, baseline_file)
    if own is not None:
        return Reference(own, "baseline-artifact")
    if subject.fp32_artifact is not None and b.fp32_ratio is not None:
        return Reference(subject.fp32_artifact, "fp32", b.fp32_ratio.p50.value, b.fp32_ratio.p90.value)
    return Reference(None, "none")


Check = tuple[str, float, Callable[[Rounds, float], dict[str, float]]]


def _latency_check(q: int, transform: Callable[[np.ndarray], np.ndarray], ratio: bool):
    """The median over rounds of each round's q-th percentile (or of the round's artifact/reference
    ratio of them, which cancels the drift both saw), with its order-statistic interval.

    Per round, not pooled: on a shared 2-core runner latency is bimodal (a 2-thread inference
    waits whenever another process holds a core), and a pooled p90 sits on the edge between the
    modes, so a few rounds' more contention moved an unchanged model's pooled p90 by -40% to
    +220% in our reliability runs, while the median of per-round p90 ratios measured -14.9% to +0.6%
    (benchmarks/results/gate_reliability.md)."""
    fn = (lambda r: r.ratio(q)) if ratio else (lambda r: r.per_round(ARTIFACT, q))
    return lambda r, conf: estimate(transform(fn(r)), conf)


def _latency_checks(budgets: GateBudgets, b: Baseline | None, ref: Reference) -> dict[str, Check]:
    """budget name -> (metric, limit, estimator of the value to keep <= limit)."""
    same = lambda x: x
    checks: dict[str, Check] = {}
    for name, q in _LATENCY_BUDGETS.items():
        limit = getattr(budgets, name)
        if limit is not None:
            checks[name] = (f"p{q}_ms", float(limit), _latency_check(q, same, ratio=False))
    if budgets.max_regression is not None and b is not None:
        for q, base_ratio, base_ms in ((50, ref.ratio_p50, b.metrics.p50_ms.value), (90, ref.ratio_p90, b.metrics.p90_ms.value)):
            base = base_ratio if ref.path is not None else base_ms
            checks[f"{REGRESSION}.p{q}_ms"] = (f"p{q}_ms regression", float(budgets.max_regression),
                                               _latency_check(q, lambda x, base=base: x / base - 1.0, ref.path is not None))
    return checks


def _latency_verdicts(checks: dict[str, Check], rounds: Rounds, spec: MeasureSpec, final: bool) -> dict[str, dict[str, Any]]:
    out = {}
    recheck = spec.straddle == "recheck"
    for name, (metric, limit, fn) in checks.items():
        est = fn(rounds, spec.confidence)
        d = decide(est["value"], est["ci_low"], est["ci_high"], limit, final, "pass" if recheck else spec.straddle)
        out[name] = {"metric": metric, "limit": limit, "value": est["value"], "pass": d.passed, "decided_by": d.rule,
                     "ci_low": est["ci_low"], "ci_high": est["ci_high"], "coverage": est["coverage"]}
        if final and recheck and d.rule.startswith("straddle"):
            last = fn(rounds, spec.final_confidence)
            d = decide(last["value"], last["ci_low"], last["ci_high"], limit, True, "pass")
            where = {"interval below limit": "below", "interval above limit": "above"}.get(d.rule, "still straddles")
            out[name].update({"pass": d.passed, "final_ci_low": last["ci_low"], "final_ci_high": last["ci_high"],
                              "decided_by": f"straddle at cap: {100 * spec.final_confidence:.0f}% interval {where}"
                                            + (" (inconclusive, passed)" if where == "still straddles" else "")})
    return out


def _exact(metric: str, limit: float, value: float | None, note: str = "", lower: bool = False) -> dict[str, Any]:
    # an unmeasured number never passes silently; `lower`: the limit is a floor (min_ budgets)
    passed = value is not None and (value >= limit if lower else value <= limit)
    doc = {"metric": metric, "limit": float(limit), "value": value, "pass": passed,
           "decided_by": "exact" if value is not None else "not measured"}
    if note and value is None:
        doc["note"] = note
    return doc


def gate_subject(subject: sources.Subject, profile: TargetProfile, inputs: GateInputs) -> dict[str, Any]:
    budgets = budgets_for(inputs.budgets, subject.target, inputs.budgets_source)
    # a baseline of another target says nothing about this one (run directories hold several)
    b = inputs.baseline if inputs.baseline is not None and inputs.baseline.target == subject.target else None
    ref = choose_reference(subject, b, inputs.baseline_file) if budgets.max_regression is not None else Reference(None, "none")
    metrics: dict[str, Any] = {"bytes": subject.artifact.stat().st_size}
    fp32_bytes = subject.fp32_artifact.stat().st_size if subject.fp32_artifact else subject.recorded.get("fp32_bytes")
    metrics["size_ratio"] = metrics["bytes"] / fp32_bytes if fp32_bytes else None
    metrics["accuracy_drop"] = subject.recorded.get("accuracy_drop")
    metrics["min_sqnr_db"] = subject.recorded.get("min_sqnr_db")
    doc: dict[str, Any] = {"kind": subject.kind, "artifact": subject.display or str(subject.artifact), "metrics": metrics,
                           "reference": {"kind": ref.kind, "path": str(ref.path) if ref.path else None}}
    if ref.path is not None:
        doc["reference"]["baseline_ratio"] = {"p50": ref.ratio_p50, "p90": ref.ratio_p90}

    checks = _latency_checks(budgets, b, ref)
    batch = 1
    verdicts: dict[str, dict[str, Any]] = {}
    if checks:
        spec = inputs.spec or DEFAULT_SPEC
        done = lambda r: all(v["pass"] is not None for v in _latency_verdicts(checks, r, spec, final=False).values())
        rounds, batch = time_rounds(subject.artifact, ref.path, profile.runtime, spec, done)
        metrics["p50_ms"], metrics["p90_ms"] = rounds.pooled(ARTIFACT, 50), rounds.pooled(ARTIFACT, 90)
        if ref.path is not None:
            metrics["ratio_to_reference_p50"] = float(np.median(rounds.ratio(50)))
        doc["measurement"] = {"rounds": len(rounds), "runs": rounds.runs(ARTIFACT), "seconds": rounds.seconds,
                              "confidence": spec.confidence, "batch": batch}
        verdicts.update(_latency_verdicts(checks, rounds, spec, final=True))

    needs_memory = budgets.max_peak_memory_mb is not None or (budgets.max_regression is not None and b is not None)
    if needs_memory:
        metrics["peak_memory_mb"] = peak_memory(subject.artifact, profile.runtime, batch)

    exact_budgets = budgets.absolute().model_copy(update={"max_p50_ms": None, "max_p90_ms": None})
    for name, v in evaluate(exact_budgets, metrics).items():
        note = "needs an fp32 reference: gate a run directory or a package" if name == "max_size_ratio" else (
            "recorded by `edgeopt run` / `compress` only: gate its run directory or package"
            if name in ("max_accuracy_drop", "min_sqnr_db") else "")
        verdicts[name] = _exact(v.metric, v.limit, v.value, note, lower=name.startswith("min_"))
    if budgets.max_regression is not None:
        if b is None:
            verdicts[REGRESSION] = _exact("regression", budgets.max_regression, None,
                                          "needs --baseline FILE (edgeopt baseline save) recorded for this target")
        else:
            verdicts[f"{REGRESSION}.bytes"] = _exact("bytes regression", budgets.max_regression,
                                                     metrics["bytes"] / b.metrics.bytes - 1.0)
            base_mem = b.metrics.peak_memory_mb
            mem = None if not base_mem else metrics["peak_memory_mb"] / base_mem - 1.0
            verdicts[f"{REGRESSION}.peak_memory_mb"] = _exact("peak_memory_mb regression",
                                                              budgets.max_regression, mem, "the baseline has no peak memory")
    doc["budgets"] = verdicts
    doc["passed"] = all(v["pass"] for v in verdicts.values())
    return doc


def _select(subjects: list[sources.Subject], inputs: GateInputs) -> list[sources.Subject]:
    """Without --target, a run directory is gated for the targets the budgets file names."""
    if inputs.targets:
        return subjects
    chosen = [s for s in subjects if s.target in inputs.budgets]
    if not chosen:
        from toolchain.errors import ConfigError

        raise ConfigError(
            f"{inputs.budgets_source} has no table for any target here ({', '.join(s.target for s in subjects)})",
            f"add a [{subjects[0].target}] table or pass --target",
        )
    return chosen


def gate_path(path: Path, inputs: GateInputs) -> dict[str, Any]:
    """The gate document: {"targets": {name: {...,"budgets": {...}, "passed"}}, "passed", ...}."""
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    path = Path(path)
    if inputs.baseline is None:
        wants = [t for t, b in inputs.budgets.items() if b.max_regression is not None and (not inputs.targets or t in inputs.targets)]
        if wants:
            from toolchain.errors import ConfigError

            raise ConfigError(f"{inputs.budgets_source}: max_regression for {', '.join(wants)} needs a baseline",
                              "pass --baseline FILE (from `edgeopt baseline save`) or drop max_regression")
    else:
        for t in inputs.targets:
            if t != inputs.baseline.target:
                from toolchain.errors import ConfigError

                raise ConfigError(f"the baseline was recorded for target '{inputs.baseline.target}', not '{t}'",
                                  f"pass --target {inputs.baseline.target} or a baseline saved for '{t}'")
    with tempfile.TemporaryDirectory(prefix="edgeopt-gate-") as work:
        subjects = _select(sources.resolve(path, inputs.targets, Path(work)), inputs)
        # fail fast on bad names before spending minutes measuring
        profiles = {s.target: load_target(s.target, inputs.targets_dir) for s in subjects}
        for s in subjects:
            budgets_for(inputs.budgets, s.target, inputs.budgets_source)
        targets = {s.target: gate_subject(s, profiles[s.target], inputs) for s in subjects}
    doc = {"schema_version": 1, "path": str(path), "budgets_file": inputs.budgets_source, "targets": targets,
           "passed": all(t["passed"] for t in targets.values()), "host": host_info(), "versions": library_versions()}
    if inputs.baseline is not None:
        doc["baseline"] = {"file": str(inputs.baseline_file), "target": inputs.baseline.target,
                           "same_cpu": inputs.baseline.host.get("cpu") == host_info()["cpu"]}
    return doc
