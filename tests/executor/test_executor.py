"""The executor seam: dependency order, timing tasks alone and last (local), a dead worker's
task retried (bounded), and cache entries published safely by concurrent writers."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from toolchain.executor import MAX_RETRIES, Task, make_executor, run_graph
from toolchain.executor.local import LocalExecutor
from toolchain.fsio import publish_dir
from toolchain.pipeline.cache import StageCache


def stamp(log: str, name: str, seconds: float = 0.0) -> str:
    """A toy task: append 'start name' and 'end name' to a shared log file."""
    with open(log, "a") as f:
        f.write(f"start {name} {os.getpid()}\n")
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"end {name} {os.getpid()}\n")
    return name


def die_once(marker: str) -> str:
    """Kills its worker process the first time it runs (a lost worker), succeeds the next."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return "survived"


def always_die() -> None:
    os._exit(1)


def session_threads() -> dict:
    """The intra-op threads a library's `SessionOptions()` starts with, one set explicitly, and the
    search's own session count, inside a task."""
    import onnxruntime

    from toolchain.executor.threads import task_threads

    explicit = onnxruntime.SessionOptions()
    explicit.intra_op_num_threads = 3  # a profile's own count is kept
    return {"default": onnxruntime.SessionOptions().intra_op_num_threads, "explicit": explicit.intra_op_num_threads,
            "search": task_threads(2)}


def _graph(log: str) -> list[Task]:
    return [
        Task("a", stamp, (log, "a", 0.3)),
        Task("b", stamp, (log, "b", 0.3)),
        Task("c", stamp, (log, "c"), deps=("a", "b")),
        Task("bench1", stamp, (log, "bench1"), deps=("a",), timing_target="cpu-server"),
        Task("bench2", stamp, (log, "bench2"), deps=("c",), timing_target="arm-mobile"),
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_dependencies_first_and_timing_tasks_alone_after_the_parallel_part(tmp_path, workers):
    log = str(tmp_path / "log")
    executor = LocalExecutor(workers)
    try:
        outcomes = run_graph(executor, _graph(log))
    finally:
        executor.close()
    assert {k: o.value for k, o in outcomes.items()} == {
        "a": "a",
        "b": "b",
        "c": "c",
        "bench1": "bench1",
        "bench2": "bench2",
    }
    lines = Path(log).read_text().split("\n")[:-1]
    order = [line.split()[:2] for line in lines]
    assert order.index(["start", "c"]) > max(order.index(["end", "a"]), order.index(["end", "b"]))
    # timing: after every compute task ended, never overlapping each other, in the driver process
    last_compute_end = max(order.index(["end", n]) for n in "abc")
    bench = [i for i, (_, n) in enumerate(order) if n.startswith("bench")]
    assert min(bench) > last_compute_end
    assert [order[i][0] for i in bench] == ["start", "end", "start", "end"]
    assert {line.split()[2] for line in lines if "bench" in line} == {str(os.getpid())}
    if workers == 2:  # a and b ran in pool workers, at the same time
        assert order.index(["start", "b"]) < order.index(["end", "a"]) or order.index(
            ["start", "a"]
        ) < order.index(["end", "b"])
        assert {line.split()[2] for line in lines if line.split()[1] in "ab"} != {str(os.getpid())}


def test_a_task_whose_worker_dies_is_retried(tmp_path):
    executor = LocalExecutor(2)
    try:
        outcomes = run_graph(
            executor,
            [
                Task("flaky", die_once, (str(tmp_path / "marker"),)),
                Task("after", stamp, (str(tmp_path / "log"), "after"), deps=("flaky",)),
            ],
        )
    finally:
        executor.close()
    assert outcomes["flaky"].value == "survived"
    assert outcomes["flaky"].attempts == 2
    assert outcomes["after"].attempts == 1


def test_retries_are_bounded(tmp_path):
    executor = LocalExecutor(2)
    try:
        with pytest.raises(RuntimeError, match=f"lost its worker {MAX_RETRIES + 1} times"):
            run_graph(executor, [Task("doomed", always_die)])
    finally:
        executor.close()


def test_a_task_error_reaches_the_driver_as_itself(tmp_path):
    from toolchain.errors import BadInput

    executor = make_executor("local", 2)
    try:
        with pytest.raises(FileNotFoundError):
            run_graph(executor, [Task("missing", Path.read_text, (tmp_path / "absent",))])
    finally:
        executor.close()
    with pytest.raises(BadInput, match="--ray-address applies to --executor ray only"):
        make_executor("local", 1, "127.0.0.1:1")


def test_publish_dir_keeps_the_first_writer_and_never_replaces_a_published_entry(tmp_path):
    dest = tmp_path / "stage" / "key"
    complete = lambda d: (d / "record.json").is_file()
    with publish_dir(dest, complete) as tmp:
        (tmp / "record.json").write_text("first")
    inode = dest.stat().st_ino
    with publish_dir(dest, complete) as tmp:  # a second writer of the same key, finishing later
        (tmp / "record.json").write_text("second")
    assert (dest / "record.json").read_text() == "first"
    assert dest.stat().st_ino == inode
    assert [p.name for p in dest.parent.iterdir()] == ["key"]  # the loser's temp folder is gone
    # a leftover that was never published whole is replaced
    broken = tmp_path / "stage" / "other"
    broken.mkdir()
    (broken / "half.bin").write_bytes(b"x")
    with publish_dir(broken, complete) as tmp:
        (tmp / "record.json").write_text("whole")
    assert sorted(p.name for p in broken.iterdir()) == ["record.json"]


def test_concurrent_builders_of_one_cache_key_agree(tmp_path):
    """Two workers miss the same key at once: both build, one entry is published, both return it."""
    cache_root = tmp_path / "cache"
    barrier = threading.Barrier(2)
    results = []

    def produce(out: Path) -> dict:
        (out / "model.bin").write_bytes(b"same bytes")
        barrier.wait(timeout=10)  # both are mid-build before either publishes
        return {"file": "model.bin", "builder": threading.current_thread().name}

    def build():
        results.append(StageCache(cache_root, log=lambda _m: None).run("toy", {"k": 1}, {}, produce))

    threads = [threading.Thread(target=build, name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 2
    assert results[0].dir == results[1].dir
    assert results[0].record == results[1].record  # the winner's record, for both
    entries = list((cache_root / "toy").iterdir())
    assert len(entries) == 1 and (entries[0] / "model.bin").read_bytes() == b"same bytes"


@pytest.mark.parametrize("workers", [1, 2])
def test_pool_tasks_run_ort_on_their_share_of_the_cores(workers):
    """Two workers on this machine's cores: a session whose options leave the thread count to ORT
    (the quantizer's calibration) gets cores // workers in a pool task, not every core; the driver's
    and a one-worker run's sessions keep ORT's default (0: choose)."""
    import onnxruntime

    from toolchain.executor.local import machine_workers

    executor = LocalExecutor(workers)
    try:
        got = run_graph(executor, [Task("t", session_threads)])["t"].value
    finally:
        executor.close()
    share = max(machine_workers() // workers, 1) if workers > 1 else None
    assert got == {"default": share or 0, "explicit": 3, "search": share or 2}
    assert onnxruntime.SessionOptions().intra_op_num_threads == 0  # nothing leaks into the driver
