"""Log one `edgeopt search` to MLflow: a parent run for the search, one nested run per candidate.

Parent: the recipe and the budget as params, the knob, target, best candidate and verdict as tags,
the baseline and best numbers as metrics, the search report JSON and the Pareto PNGs as
artifacts. Each candidate: accuracy, bytes and p50 latency (and any numeric detail, e.g. a pruning
amount) as metrics, its other details (e.g. the nodes kept in fp32) as params, so MLflow's run
comparison shows the whole front. Same skip-or-exit-2 rule as every tracked command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.tracking import flatten as flat
from toolchain.tracking import log, store

_CANDIDATE_NUMBERS = ("accuracy", "bytes", "latency_ms", "meets_budget", "baseline")


def track_search(
    document: dict[str, Any],
    run_dir: Path,
    search_dir: Path,
    track: str | None,
    required: bool = False,
    *,
    recipe: dict[str, Any],
    recipe_hash: str,
    target: str,
    knob: str,
) -> str | None:
    """`document` is SearchReport.to_dict() (plus recipe_hint), written with its plots in
    `search_dir`; `run_dir` is the recipe's run directory (the embedded store sits beside it, as
    for `edgeopt run`); `recipe` the recipe as JSON. Return the MLflow run id."""
    if track is None:
        return None
    kwargs = {"doc": document, "out_dir": str(search_dir), "recipe": recipe, "what": [recipe_hash, target, knob]}
    return log.log_with(Path(run_dir), track, required, "toolchain.tracking.search:log_search", kwargs)


def log_search(client, uri: str, doc: dict[str, Any], out_dir: str, recipe: dict[str, Any], what: list[str]) -> str:
    """Log one search (SearchReport.to_dict()'s shape) with `client`; the parent run id."""
    from mlflow.entities import RunStatus

    recipe_hash, target, knob = what
    out_dir = Path(out_dir)
    name = recipe.get("name", "search")
    run_doc = {
        "recipe": {"name": name, "hash": recipe_hash},
        "passed": doc.get("met"),
        "out_dir": str(out_dir),
    }
    tags = {
        **log.run_tags(run_doc, "search"),
        "edgeopt.target": target,
        "edgeopt.search": knob,
        "edgeopt.best": str(doc.get("best")),
    }
    parent = client.create_run(
        store.experiment_id(client, uri), run_name=f"search {name} {target}", tags=tags
    )
    run_id, status = parent.info.run_id, RunStatus.to_string(RunStatus.FAILED)
    try:
        best = next((c for c in doc.get("candidates", []) if c["name"] == doc.get("best")), {})
        metrics = flat.metrics(
            {k: doc.get(k) for k in ("baseline_accuracy", "min_accuracy", "met", "speedup_vs_fp32")}
        )
        metrics.update(flat.metrics({k: best.get(k) for k in ("accuracy", "bytes", "latency_ms")}, "best"))
        metrics["candidates"] = float(len(doc.get("candidates", [])))
        log.log_batch(
            client,
            run_id,
            params=flat.params({"recipe": recipe, "budget": doc.get("budget") or {}}),
            metrics=metrics,
        )
        for cand in doc.get("candidates", []):
            _log_candidate(client, parent.info.experiment_id, run_id, cand, cand["name"] == doc.get("best"))
        for report in sorted(out_dir.glob("search_*.json")):
            client.log_artifact(run_id, str(report))
        for png in log.plots(out_dir):
            client.log_artifact(run_id, str(png), "plots")
        status = RunStatus.to_string(RunStatus.FINISHED)
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def _log_candidate(client, experiment_id: str, parent_id: str, cand: dict[str, Any], best: bool) -> None:
    from mlflow.entities import RunStatus

    tags = {
        "mlflow.parentRunId": parent_id,
        "edgeopt.candidate": str(cand["name"]),
        "edgeopt.best": str(best).lower(),
        "edgeopt.meets_budget": str(bool(cand.get("meets_budget"))).lower(),
    }
    child = client.create_run(experiment_id, run_name=str(cand["name"]), tags=tags)
    detail = cand.get("detail") or {}
    metrics = flat.metrics({k: cand.get(k) for k in _CANDIDATE_NUMBERS})
    metrics.update(flat.metrics(detail, "detail"))
    params = {k: v for k, v in flat.params(detail, "detail").items() if k not in metrics}
    params["path"] = str(cand.get("path"))
    log.log_batch(client, child.info.run_id, params=params, metrics=metrics)
    client.set_terminated(child.info.run_id, status=RunStatus.to_string(RunStatus.FINISHED))
