"""`--executor local`: a process pool sized to the machine; with one worker, everything runs in
this process. No dependency beyond the standard library."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from toolchain.executor import Task, WorkerLost, run_task


def machine_workers() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or machine_workers()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_of: dict[Future, ProcessPoolExecutor | None] = {}  # which pool ran a future

    @property
    def task_threads(self) -> int:
        """Each pool task's share of the cores: the workers run side by side."""
        return max(machine_workers() // self.workers, 1)

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the driver may hold torch's and ORT's thread pools, which a fork copies broken
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def may_start(self, task: Task, busy: bool, running: int) -> bool:
        # Timing waits for the parallel part to finish, then runs alone, in this process (see submit).
        return task.timing_target is None or (not busy and running == 0)

    def submit(self, task: Task) -> Future:
        if self.workers == 1 or task.timing_target is not None:
            return _run_here(task)
        try:
            future = self._ensure_pool().submit(run_task, task.fn, task.args, self.task_threads)
        except BrokenProcessPool:  # a worker died since the last wait: a new pool for what follows
            self._pool = None
            future = self._ensure_pool().submit(run_task, task.fn, task.args, self.task_threads)
        self._pool_of[future] = self._pool
        return future

    def wait(self, handles: list[Future]) -> list[Future]:
        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        return list(done)

    def collect(self, handle: Future) -> dict[str, Any]:
        pool = self._pool_of.pop(handle, None)
        try:
            return handle.result()
        except BrokenProcessPool as err:
            if pool is not None and pool is self._pool:  # not a pool already replaced after the same death
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise WorkerLost(str(err) or "a worker process died") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _run_here(task: Task) -> Future:
    """Run in this process, now: one worker, or a timing task that must have the machine alone."""
    future: Future = Future()
    try:
        future.set_result(run_task(task.fn, task.args))
    except Exception as err:  # noqa: BLE001 - handed to collect() like a pool worker's error
        future.set_exception(err)
    return future
