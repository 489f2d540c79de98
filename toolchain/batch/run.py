"""The batch driver: check everything, plan the task graph, run it on an executor, write
`batch.json`, `summary.md` and (with --junit) JUnit XML.

Layout under --out: `cache/` (the stage cache every task shares, unless --cache names a directory
or URL; a URL's entries are read through local copies in `cache-staging/`), `runs/<name>--<target>/`
(one `edgeopt run` / `edgeopt compress` directory each, report.json written last), `batch.json`.
A driver killed and started again resumes: finished stages are cache hits, run directories are
rewritten atomically, batch.json appears only when every run is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.batch import tasks as T
from toolchain.batch.spec import CompressSpec, RecipeSpec, Spec
from toolchain.config.recipe import Recipe
from toolchain.config.target import TargetProfile, load_target
from toolchain.errors import BadInput, ConfigError
from toolchain.executor import Task, TaskOutcome, make_executor, run_graph
from toolchain.fsio import run_lock, sha256_json, write_json_atomic, write_text_atomic
from toolchain.pipeline.cache import log_to_stderr

BATCH_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BatchOptions:
    out_dir: Path
    targets: tuple[str, ...]
    targets_dir: Path | None = None
    executor: str = "local"
    workers: int | None = None  # local: default one per CPU
    ray_address: str | None = None
    cache_dir: Path | str | None = None  # default <out_dir>/cache; or a URL (pipeline/store.py)
    rebench: bool = False
    gate: Path | None = None  # a budgets file (docs/gating.md) every run is judged on

    @property
    def cache(self) -> str:
        return str(self.cache_dir) if self.cache_dir is not None else str(Path(self.out_dir) / "cache")

    @property
    def staging(self) -> Path:
        from toolchain.pipeline.store import STAGING

        return Path(self.out_dir) / STAGING


def run_name(spec: Spec, target: str) -> str:
    return f"{spec.name}--{target}"


def check_cache_writable(opts: BatchOptions) -> None:
    """A cache that cannot be written (or reached, or whose URL needs a missing package) is
    refused before any work, naming it."""
    from toolchain.pipeline.store import check_cache

    check_cache(opts.cache, opts.out_dir)


def preflight(specs: list[Spec], opts: BatchOptions) -> tuple[dict[str, TargetProfile], dict[str, Any]]:
    """Targets, recipes' model and dataset names, the gate's budgets: all refused before any work."""
    from toolchain.pipeline.run import RunOptions, preflight, resolve_targets

    if not opts.targets:
        raise BadInput("no target given", "pass --targets T1,T2 (`edgeopt targets` lists them)")
    profiles = {name: load_target(name, opts.targets_dir) for name in opts.targets}
    for spec in specs:
        if isinstance(spec, RecipeSpec):
            ropts = RunOptions(out_dir=opts.out_dir, targets=opts.targets, targets_dir=opts.targets_dir)
            resolve_targets(spec.recipe, ropts)
            preflight(spec.recipe, ropts)
    gate = _gate_budgets(opts) if opts.gate is not None else {}
    return profiles, gate


def _gate_budgets(opts: BatchOptions) -> dict[str, Any]:
    from toolchain.gating.budgets_file import budgets_for, load_budgets

    tables = load_budgets(opts.gate, opts.targets_dir)
    chosen = {t: budgets_for(tables, t, str(opts.gate)) for t in opts.targets}
    for target, budgets in chosen.items():
        if budgets.max_regression is not None:
            raise ConfigError(
                f"{opts.gate} [{target}]: max_regression needs a baseline, which a batch has not",
                "drop it here and gate the run directory with `edgeopt gate --baseline`",
            )
    return {t: b.absolute() for t, b in chosen.items()}


def training_identity(recipe: Recipe) -> str:
    """Equal for recipes whose training is the same cache entry (same model, data and training
    settings), so a parallel batch trains it once instead of once per worker that needs it. Only
    scheduling depends on it: were it wrong, a recipe would train for itself, as before."""
    parts = {"model": recipe.model, "data": recipe.data, "train": recipe.train}
    if recipe.train.privacy is not None:  # the DP noise is solved for the fine-tunes too (steps.train)
        parts["prune"] = recipe.prune
    return sha256_json({k: v.model_dump(mode="json") for k, v in parts.items()})[:16]


def plan(specs: list[Spec], profiles: dict[str, TargetProfile], opts: BatchOptions) -> list[Task]:
    """Per training (recipes may share one): a train task; per recipe: its other shared stages,
    then per target the deterministic stages on any worker and the benchmark + run directory as
    a timing task. Per user model: one timing task per target."""
    runs_dir, cache, staging, graph = Path(opts.out_dir) / "runs", opts.cache, opts.staging, []
    for spec in specs:
        if isinstance(spec, CompressSpec):
            for target in profiles:
                args = (
                    spec.model,
                    spec.data,
                    spec.name,
                    target,
                    opts.targets_dir,
                    runs_dir / run_name(spec, target),
                    opts.rebench,
                )
                graph.append(
                    Task(f"run:{run_name(spec, target)}", T.compress_run, args, timing_target=target)
                )
            continue
        trained, shared = f"train:{training_identity(spec.recipe)}", f"shared:{spec.name}"
        if trained not in {t.key for t in graph}:
            graph.append(Task(trained, T.train_stage, (spec.recipe, cache, staging)))
        graph.append(Task(shared, T.shared_stages, (spec.recipe, cache, staging), deps=(trained,)))
        for target, profile in profiles.items():
            name = run_name(spec, target)
            graph.append(
                Task(f"target:{name}", T.target_stages, (spec.recipe, profile, cache, staging), deps=(shared,))
            )
            args = (spec.recipe, target, opts.targets_dir, runs_dir / name, cache, staging, opts.rebench)
            graph.append(
                Task(f"run:{name}", T.finish_recipe_run, args, deps=(f"target:{name}",), timing_target=target)
            )
    return graph


def run_batch(specs: list[Spec], opts: BatchOptions) -> dict[str, Any]:
    profiles, gate = preflight(specs, opts)
    check_cache_writable(opts)
    graph = plan(specs, profiles, opts)
    executor = make_executor(
        opts.executor, opts.workers, opts.ray_address
    )  # a bad address: before any output
    try:
        with run_lock(opts.out_dir):
            started = time.perf_counter()
            outcomes = run_graph(executor, graph, log_to_stderr)
            doc = batch_document(specs, profiles, opts, outcomes, gate, time.perf_counter() - started)
            write_text_atomic(Path(opts.out_dir) / "summary.md", render_summary(doc) + "\n")
            write_json_atomic(Path(opts.out_dir) / "batch.json", doc)
    finally:
        executor.close()
    return doc


def _task_rows(outcomes: dict[str, TaskOutcome]) -> list[dict[str, Any]]:
    return [
        {
            "task": o.key,
            "seconds": round(o.seconds, 3),
            "wall": round(o.wall, 3),
            "overhead": round(max(o.wall - o.seconds, 0.0), 3),
            "host": o.host,
            "attempts": o.attempts,
            "done_at": round(o.done_at, 3),
        }
        for o in outcomes.values()
    ]


def batch_document(
    specs: list[Spec],
    profiles: dict[str, TargetProfile],
    opts: BatchOptions,
    outcomes: dict[str, TaskOutcome],
    gate: dict[str, Any],
    wall: float,
) -> dict[str, Any]:
    from toolchain.config.budgets import evaluate

    runs = {}
    for spec in specs:
        for target in profiles:
            name = run_name(spec, target)
            outcome = outcomes[f"run:{name}"]
            summary = outcome.value
            budgets = summary["budgets"]
            if gate:
                budgets = {k: v.to_dict() for k, v in evaluate(gate[target], summary["metrics"]).items()}
            runs[name] = {
                "spec": spec.source,
                "name": spec.name,
                "target": target,
                "dir": str(Path(summary["report"]).parent),
                "report": summary["report"],
                "artifact": summary["artifact"],
                "shipped": summary["shipped"],
                "budgets": budgets,
                "passed": all(v["pass"] for v in budgets.values()),
                "metrics": {k: summary["metrics"].get(k) for k in _SUMMARY_METRICS},
                "benchmark_host": outcome.host,
            }
    return {
        "schema_version": BATCH_SCHEMA_VERSION,
        "out_dir": str(Path(opts.out_dir).resolve()),
        "executor": opts.executor,
        "ray_address": opts.ray_address,
        "gate": str(opts.gate) if opts.gate else None,
        "passed": all(r["passed"] for r in runs.values()),
        "wall_seconds": round(wall, 3),
        "runs": runs,
        "tasks": _task_rows(outcomes),
    }


_SUMMARY_METRICS = ("bytes", "size_ratio", "p50_ms", "accuracy_drop", "min_sqnr_db")


def render_summary(doc: dict[str, Any]) -> str:
    """A Markdown table: one row per run, the host its benchmark ran on."""
    lines = [
        "| run | target | shipped | bytes | size ratio | p50 ms | accuracy drop | budgets | benchmarked on |",
        "|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in doc["runs"].values():
        m = r["metrics"]
        host = r["benchmark_host"]
        where = host.get("hostname", "?") + (f" (node {host['node'][:8]})" if host.get("node") else "")
        failed = [k for k, v in r["budgets"].items() if not v["pass"]]
        lines.append(
            f"| {r['name']} | {r['target']} | {r['shipped']} | {_num(m['bytes'], ',.0f')} | "
            f"{_num(m['size_ratio'], '.3f')} | {_num(m['p50_ms'], '.4g')} | {_num(m['accuracy_drop'], '.4f')} | "
            f"{'pass' if r['passed'] else 'FAIL ' + ', '.join(failed)} | {where} |"
        )
    lines.append("")
    lines.append(
        f"{len(doc['runs'])} runs, {'all budgets met' if doc['passed'] else 'BUDGET FAILED'}, "
        f"{doc['wall_seconds']:.1f} s on executor {doc['executor']}"
    )
    return "\n".join(lines)


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def junit_document(doc: dict[str, Any]) -> dict[str, Any]:
    """batch.json in the shape gating/junit.py renders: one suite per run, one case per budget."""
    return {
        "targets": {
            name: {
                # the run's recorded value, compared exactly (no latency re-measurement as in `edgeopt gate`)
                "budgets": {
                    k: {"decided_by": "value recorded by the run", **v} for k, v in r["budgets"].items()
                },
                "artifact": r["artifact"],
                "reference": {"kind": "recorded metrics"},
                "measurement": {"seconds": 0.0},
            }
            for name, r in doc["runs"].items()
        }
    }
