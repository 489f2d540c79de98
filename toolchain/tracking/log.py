"""Log one finished edgeopt run to MLflow: a parent run, and one nested run per target.

Parent: the recipe (or compress options) as params, library versions, host, git commit and
the overall verdict as tags, report.json and any Pareto PNGs as artifacts. Each target: the
target profile as params (read from its package's manifest), every measured number and each
weighed candidate's numbers as metrics, the shipped candidate and budget verdicts as tags, the
package zip as an artifact. Tracking never changes the run: when the store cannot be used the
artifacts stay written and one warning line says tracking was skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from toolchain.tracking import flatten as flat
from toolchain.tracking import store, worker

# Nested blocks logged their own way (tags, candidate metrics) or not numbers at all.
_NOT_METRICS = ("budgets", "selection", "candidates", "artifact", "fp32_artifact", "package")


def track_run(document: dict[str, Any], out_dir: Path, track: str | None, required: bool = False,
              params: dict[str, Any] | None = None, kind: str = "run") -> str | None:
    """Log the run described by `document` (report.json's shape); return the MLflow run id.

    `track` None: not asked for, nothing happens. "" : MLFLOW_TRACKING_URI or the embedded
    store beside `out_dir`. With `required`, an unusable store raises TrackingUnavailable (exit 2)
    after the run's artifacts are written; otherwise it is one warning line on stderr.
    """
    if track is None:
        return None
    kwargs = {"document": document, "out_dir": str(out_dir), "params": params or {}, "kind": kind}
    return log_with(out_dir, track, required, "toolchain.tracking.log:log_document", kwargs)


def log_with(out_dir: Path, track: str, required: bool, function: str, kwargs: dict[str, Any]) -> str | None:
    """Open the store `track` names and call `function(client, uri, **kwargs)` -> run id (a
    "module:name" path and JSON arguments: it runs in the tracking worker when --track started
    one), under the skip-or-exit-2 rule of track_run (shared by every tracked command)."""
    kwargs = json.loads(json.dumps(kwargs, default=str))  # what the worker gets, in either process (Paths as text)
    # stdout carries the command's report (one JSON document under --json); MLflow may print
    with contextlib.redirect_stdout(sys.stderr):
        return _track(Path(out_dir), track, required, function, kwargs)


def _track(out_dir: Path, track: str, required: bool, function: str, kwargs: dict[str, Any]) -> str | None:
    try:
        uri = store.resolve_uri(track, out_dir.resolve().parent)  # a bad MLFLOW_TRACKING_URI: a skip too
        why = store.unreachable(uri)
        if why is not None:
            raise store.TrackingUnavailable(why, "start the server or fix --track/MLFLOW_TRACKING_URI")
        if worker.started():
            return worker.call(uri, function, kwargs)
        return worker.call_here(uri, function, kwargs)
    except store.TrackingUnavailable as err:
        if required:
            raise
        print(f"edgeopt: warning: tracking skipped: {err.problem}; the run's artifacts are in {out_dir}",
              file=sys.stderr, flush=True)
        return None


def log_document(client, uri: str, document: dict[str, Any], out_dir: str, params: dict[str, Any], kind: str) -> str:
    """Log a run or compress (report.json's shape) with `client`; the run id."""
    from mlflow.entities import RunStatus

    out_dir = Path(out_dir)
    name = document.get("recipe", {}).get("name", out_dir.name)
    parent = client.create_run(store.experiment_id(client, uri), run_name=f"{kind} {name}", tags=run_tags(document, kind))
    run_id = parent.info.run_id
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        log_batch(client, run_id, params=flat.params(params),
               metrics={"passed": float(bool(document.get("passed"))), "targets": float(len(document.get("targets", {})))})
        for target, doc in document.get("targets", {}).items():
            _log_target(client, parent.info.experiment_id, run_id, target, doc)
        _log_files(client, run_id, out_dir)
        status = RunStatus.to_string(RunStatus.FINISHED)
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def run_tags(document: dict[str, Any], kind: str) -> dict[str, str]:
    recipe = document.get("recipe", {})
    tags = {"edgeopt.kind": kind, "edgeopt.recipe": str(recipe.get("name")), "edgeopt.recipe_hash": str(recipe.get("hash")),
            "edgeopt.passed": str(bool(document.get("passed"))).lower(), "edgeopt.out_dir": str(document.get("out_dir")),
            "host": platform.node(), "host.cpu": str(document.get("baseline", {}).get("host", {}).get("cpu", ""))}
    tags.update({f"version.{lib}": str(v) for lib, v in (document.get("versions") or {}).items()})
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {flat.key(k): v[:5000] for k, v in tags.items()}


def git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _log_target(client, experiment_id: str, parent_id: str, target: str, doc: dict[str, Any]) -> None:
    from mlflow.entities import RunStatus

    verdicts = doc.get("budgets") or {}
    tags = {"mlflow.parentRunId": parent_id, "edgeopt.target": target, "edgeopt.passed": str(bool(doc.get("passed"))).lower(),
            "edgeopt.shipped": str(doc.get("shipped", "int8"))}
    tags.update({flat.key(f"budget.{b}"): "pass" if v.get("pass") else "fail" for b, v in verdicts.items()})
    child = client.create_run(experiment_id, run_name=target, tags=tags)
    metrics = flat.metrics({k: v for k, v in doc.items() if k not in _NOT_METRICS})
    metrics.update(flat.metrics({b: {"value": v.get("value"), "limit": v.get("limit")} for b, v in verdicts.items()}, "budget"))
    for label, cand in ((doc.get("selection") or {}).get("candidates") or {}).items():
        metrics.update(flat.metrics({k: v for k, v in cand.items() if k != "failed_budgets"}, f"candidate.{label}"))
        metrics[flat.key(f"candidate.{label}.failed_budgets")] = float(len(cand.get("failed_budgets") or ()))
    package = Path(doc["package"]) if doc.get("package") else None
    log_batch(client, child.info.run_id, params=flat.params(_profile(package)), metrics=metrics)
    if package is not None and package.is_file():
        client.log_artifact(child.info.run_id, str(package), "package")
    client.set_terminated(child.info.run_id, status=RunStatus.to_string(RunStatus.FINISHED))


def _profile(package: Path | None) -> dict[str, Any]:
    """The target profile the package was built for, from its manifest (params per target)."""
    if package is None or not package.is_file():
        return {}
    try:
        with zipfile.ZipFile(package) as zf:
            manifest = json.loads(zf.read("manifest.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return {}
    return {"target_profile": manifest.get("target_profile") or {}, "package": {"name": manifest.get("name"),
            "artifact": manifest.get("artifact"), "recipe_hash": manifest.get("recipe_hash")}}


def _log_files(client, run_id: str, out_dir: Path) -> None:
    report = out_dir / "report.json"
    if report.is_file():
        client.log_artifact(run_id, str(report))
    for png in plots(out_dir):
        client.log_artifact(run_id, str(png), "plots")


def plots(out_dir: Path) -> list[Path]:
    """The PNGs under `out_dir`, not walking into stage caches (cached outputs are not results,
    and a long-used cache holds thousands of files)."""
    found = []
    for root, dirs, files in os.walk(out_dir):
        dirs[:] = sorted(d for d in dirs if d != "cache")
        found += [Path(root) / f for f in sorted(files) if f.endswith(".png")]
    return found


def log_batch(client, run_id: str, params: dict[str, str], metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric, Param

    # One call per run: the client splits it into as few store writes as MLflow's per-request
    # caps allow (100 params, 1000 entities), each one SQLite transaction.
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()])
