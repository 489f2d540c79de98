"""Tracking in a child process, so importing mlflow happens beside the run, not inside it.

Importing mlflow and its SQLAlchemy store costs 2-3 s of CPU, most of what `--track` adds
(benchmarks/results/tracking_overhead.md). A thread in the run's process competes with the run
for the GIL; a child process runs on another core. So `--track` starts this worker as soon as the
option is parsed, at a lower CPU priority (it must not slow the run's own benchmarks); the worker
imports mlflow, then waits for one request on stdin: a logging function named by its module path,
its JSON arguments and the store URI. It calls the function with an open client and answers with
one JSON line on stdout. A command that ends without tracking (bad input, an error) closes the
pipe, and the worker exits without touching any store.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

from toolchain.tracking import store

# The worker yields the CPU to the run it tracks (0 = same priority, 19 = the lowest).
NICENESS = 10
_worker: list[subprocess.Popen] = []
_ENTRY = "import sys; from toolchain.tracking.worker import main; sys.exit(main())"


class TrackingCrashed(RuntimeError):
    """The logging code itself failed (a bug, not an unusable store): an internal error, exit 3."""


def start() -> None:
    """Start the worker once per process; it imports mlflow while the run works."""
    if _worker:
        return
    package_root = str(Path(__file__).resolve().parents[2])  # the toolchain the parent runs, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    _worker.append(subprocess.Popen([sys.executable, "-c", _ENTRY], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, env=env, text=True))
    atexit.register(stop)


def started() -> bool:
    return bool(_worker) and _worker[0].poll() is None


def stop() -> None:
    """End a worker that got no request (the command ended some other way)."""
    for proc in _worker:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    _worker.clear()


def call(uri: str, function: str, kwargs: dict[str, Any]) -> str:
    """Have the worker call `function(client, uri, **kwargs)`; its return value, a run id.
    TrackingUnavailable when the store cannot be used, TrackingCrashed when the code failed."""
    proc = _worker.pop()
    request = json.dumps({"uri": uri, "function": function, "kwargs": kwargs})
    try:
        reply_text, _ = proc.communicate(request + "\n")
    except BrokenPipeError:  # it died before reading: its exit code says more than the pipe
        proc.wait()
        reply_text = ""
    lines = reply_text.strip().splitlines()
    if not lines:
        raise TrackingCrashed(f"the tracking process exited with code {proc.returncode} before answering")
    reply = json.loads(lines[-1])
    if "unavailable" in reply:
        raise store.TrackingUnavailable(*reply["unavailable"])
    if "crash" in reply:
        raise TrackingCrashed(reply["crash"])
    return reply["run_id"]


def call_here(uri: str, function: str, kwargs: dict[str, Any]) -> str:
    """The same call in this process (no worker was started, e.g. the library used directly)."""
    store.load_mlflow()
    errors = store.mlflow_errors()
    try:
        return _resolve(function)(store.open_client(uri), uri, **kwargs)
    except errors as err:
        raise store.TrackingUnavailable(f"{uri}: {type(err).__name__}: {first_line(err)}", "check the tracking store") from None


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""


def _resolve(function: str):
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


def _serve(request: dict[str, Any], import_failure: store.TrackingUnavailable | None) -> dict[str, Any]:
    if import_failure is not None:
        return {"unavailable": [import_failure.problem, import_failure.fix]}
    try:
        return {"run_id": call_here(request["uri"], request["function"], request["kwargs"])}
    except store.TrackingUnavailable as err:
        return {"unavailable": [err.problem, err.fix]}
    except Exception as err:  # noqa: BLE001 - the parent reports it as an internal error
        detail = traceback.format_exc(limit=-3).strip().splitlines()
        return {"crash": f"{type(err).__name__}: {first_line(err)} ({detail[-3].strip() if len(detail) > 2 else ''})"}


def main() -> int:
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    import_failure = None
    try:
        store.load_mlflow()
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (the embedded store's, the heaviest part)
    except store.TrackingUnavailable as err:
        import_failure = err
    except ImportError:  # mlflow imported, its SQLAlchemy extras did not: a server URI still works
        pass
    line = sys.stdin.readline()
    reply = None
    if line:  # else the command ended without tracking
        with contextlib.redirect_stdout(sys.stderr):  # mlflow may print; stdout carries the reply only
            reply = _serve(json.loads(line), import_failure)
        sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Every store write above is committed; tearing down mlflow's and SQLAlchemy's modules would
    # cost the waiting run about a second more (measured), for nothing.
    os._exit(0)
