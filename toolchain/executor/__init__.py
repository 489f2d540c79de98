"""The executor seam: the work of a batch or a search as tasks on a process pool or a Ray cluster.

A task is a picklable, module-level function plus its arguments. Tasks hand artifacts to each
other through the content-addressed stage cache (a directory every worker mounts), never
through the driver's memory: a task's return value is a small JSON-able summary. Dependencies
only order tasks (the later task finds the earlier one's entries in the cache as hits).

A task whose worker dies is retried (at most MAX_RETRIES times); what it had published stays
in the cache, what it had half-built is a temp folder nobody trusts.

Timing tasks (`Task.timing_target`) measure latency: they get a node to themselves (Ray: all of
a node's CPUs, or the node carrying the custom resource `target:<name>`); the local executor
runs them after the parallel part, one at a time, in the driver process.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolchain.errors import BadInput

MAX_RETRIES = 2
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Task:
    key: str  # unique within a graph: how dependencies and results name it
    fn: Callable[..., Any]  # module-level (pickled by reference)
    args: tuple = ()
    deps: tuple[str, ...] = ()
    timing_target: str | None = None  # measures latency for this target: a node of its own


@dataclass
class TaskOutcome:
    key: str
    value: Any
    seconds: float  # the task's own work, measured where it ran
    wall: float  # submit -> result, seen from the driver: wall - seconds is queueing plus scheduling overhead
    host: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    done_at: float = 0.0  # seconds since the graph started: when the driver had the result


class WorkerLost(Exception):
    """The process or node running a task died: the task is retried."""


def where() -> dict[str, Any]:
    """Where this process runs, for the report's host labels."""
    from toolchain.hostinfo import host_info

    return {"hostname": socket.gethostname(), "pid": os.getpid(), "cpu": host_info()["cpu"]}


def run_task(fn: Callable[..., Any], args: tuple, ort_threads: int | None = None) -> dict[str, Any]:
    """The body every worker runs: one torch thread, and `ort_threads` for ORT sessions that do
    not choose their own (the task's share of the cores; see toolchain.executor.threads)."""
    from toolchain.executor.threads import task_share

    started = time.perf_counter()
    with task_share(ort_threads):
        value = fn(*args)
    return {"value": value, "seconds": time.perf_counter() - started, "host": where()}


class Executor(Protocol):
    name: str

    def may_start(self, task: Task, busy: bool, running: int) -> bool:
        """Whether `task` may start now; `busy`: some non-timing task is queued or running;
        `running`: how many tasks are in flight."""

    def submit(self, task: Task) -> Any: ...

    def wait(self, handles: list[Any]) -> list[Any]:
        """Block until at least one handle is done; return the done ones."""

    def collect(self, handle: Any) -> dict[str, Any]:
        """run_task's result; raises WorkerLost when the worker died, the task's error otherwise."""

    def close(self) -> None: ...


def make_executor(name: str, workers: int | None = None, ray_address: str | None = None) -> Executor:
    if name == "ray":
        from toolchain.executor.ray_cluster import RayExecutor

        return RayExecutor(ray_address)
    if ray_address:
        raise BadInput(
            "--ray-address applies to --executor ray only", "add --executor ray, or drop --ray-address"
        )
    from toolchain.executor.local import LocalExecutor

    return LocalExecutor(workers)


def run_graph(
    executor: Executor, tasks: list[Task], log: Callable[[str], None] = lambda _m: None
) -> dict[str, TaskOutcome]:
    """Run `tasks` in dependency order, as many at once as the executor allows."""
    pending = {t.key: t for t in tasks}
    unknown = {d for t in tasks for d in t.deps} - set(pending)
    if unknown:
        raise ValueError(f"tasks depend on unknown keys: {sorted(unknown)}")
    done: dict[str, TaskOutcome] = {}
    running: dict[Any, tuple[Task, float]] = {}
    attempts: dict[str, int] = {}
    began = time.perf_counter()
    while pending or running:
        busy = any(t.timing_target is None for t in pending.values()) or any(
            t.timing_target is None for t, _ in running.values()
        )
        for task in [t for t in pending.values() if all(d in done for d in t.deps)]:
            if executor.may_start(task, busy, len(running)):
                attempts[task.key] = attempts.get(task.key, 0) + 1
                log(
                    f"task {task.key}: started"
                    + (f" (attempt {attempts[task.key]})" if attempts[task.key] > 1 else "")
                )
                submitted = time.perf_counter()
                running[executor.submit(task)] = (task, submitted)
                del pending[task.key]
        if not running:
            raise ValueError(f"tasks that can never start (a dependency cycle?): {sorted(pending)}")
        for handle in executor.wait(list(running)):
            task, submitted = running.pop(handle)
            try:
                result = executor.collect(handle)
            except WorkerLost as err:
                if attempts[task.key] > MAX_RETRIES:
                    raise RuntimeError(
                        f"task {task.key} lost its worker {attempts[task.key]} times: {err}"
                    ) from err
                log(f"task {task.key}: worker lost ({err}); retrying")
                pending[task.key] = task
                continue
            now = time.perf_counter()
            outcome = TaskOutcome(
                task.key,
                result["value"],
                result["seconds"],
                now - submitted,
                result["host"],
                attempts[task.key],
                done_at=now - began,
            )
            done[task.key] = outcome
            log(
                f"task {task.key}: done in {outcome.seconds:.1f} s on {outcome.host.get('node') or outcome.host['hostname']}"
            )
    return done
