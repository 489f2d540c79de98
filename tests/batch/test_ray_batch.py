"""The goal of issue 16: a batch on a real two-node Ray cluster on 127.0.0.1 survives losing a
node mid-batch and produces the same artifacts as a sequential local run.

Compared: every file of every deterministic cache entry (train, prune, export, quantize, convert,
int8-weights, fidelity: cache_digest). Not compared: benchmark entries (timings) and package
zips (they embed the measured latency).

ORT_NOTE: the .ort files are not byte-identical between a Ray worker and the sequential driver.
Measured (2026-12-02, onnxruntime 1.32): the 6 .ort files of this batch had the same size and
differed only in bytes 48 to 1,368 (the flatbuffer's offset table, which ORT's converter writes in
hash-map order keyed by heap addresses; see toolchain/stages/_ort_convert.py). The converter runs
in a child with address-space randomization off and a fixed environment, which makes it repeatable
between two runs of the same kind of process (checked: driver vs driver, driver vs a worker of a
Ray started by the driver), but a worker of a `ray start`ed node still lays its heap out
differently. So for .ort files the test asserts: same size, differences confined to the first
2 KB, and bitwise-equal outputs of both files on the same input.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from batch_fixtures import (
    TINY_ZOO,
    batch_argv,
    cache_digest,
    first_last_difference,
    run_batch,
    same_outputs,
    subprocess_env,
    tiny_recipe,
)
from conftest import require_extra

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    require_extra("ray", "ray")
    from toolchain.executor.ray_local import LocalRayCluster

    c = LocalRayCluster(subprocess_env(), cpus_per_node=1)
    try:
        yield c.start(workers=1)
    finally:
        c.stop()


def _kill_while_busy(cluster, role: str, timeout: float) -> None:
    """Kill the node the moment one of its workers runs a task: a node killed while idle loses
    nothing (a fixed delay measured this: CI killed it between two tasks)."""
    deadline = time.monotonic() + timeout
    while not cluster.busy_workers(role):
        assert time.monotonic() < deadline, f"{role} ran no task in {timeout} s"
        time.sleep(0.2)
    cluster.kill(role)


def test_ray_batch_survives_a_lost_node_and_matches_a_sequential_run(cluster, tmp_path, fast_targets_dir):
    specs = [tiny_recipe(name, tmp_path) for name in TINY_ZOO]
    ray_out = tmp_path / "ray"
    proc = subprocess.Popen(
        batch_argv(specs, ray_out, fast_targets_dir, "--executor", "ray", "--ray-address", cluster.address),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _kill_while_busy(cluster, "worker0", timeout=600)
        out, err = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 1), err[-3000:]  # 1: a budget failed, still a complete batch
    ray_doc = json.loads(out)

    seq = run_batch(specs, tmp_path / "seq", fast_targets_dir, "--executor", "local", "--workers", "1")
    assert seq.returncode in (0, 1), seq.stderr[-3000:]
    seq_doc = json.loads(seq.stdout)

    assert len(ray_doc["runs"]) == len(seq_doc["runs"]) == 6
    assert all(Path(r["report"]).is_file() for r in ray_doc["runs"].values())
    retried = [t["task"] for t in ray_doc["tasks"] if t["attempts"] > 1]
    assert retried, "killing the worker node lost no task: it was idle"
    nodes = {t["host"].get("node") for t in ray_doc["tasks"]}
    assert None not in nodes

    ray_cache, seq_cache = cache_digest(ray_out / "cache"), cache_digest(tmp_path / "seq" / "cache")
    assert len(seq_cache) > 40
    assert sorted(ray_cache) == sorted(seq_cache)  # the same cache keys: every stage saw the same inputs
    differing = sorted(k for k in seq_cache if ray_cache[k] != seq_cache[k])
    # Every file but the .ort conversions is byte-identical: weights, ONNX exports, quantized models,
    # .onnx conversions, int8-weight models, fidelity results.
    assert [k for k in differing if not k.endswith(".ort")] == []
    for key in differing:  # see ORT_NOTE
        ray_file, seq_file = ray_out / "cache" / key, tmp_path / "seq" / "cache" / key
        a, b = ray_file.read_bytes(), seq_file.read_bytes()
        assert len(a) == len(b), key
        first, last = first_last_difference(a, b)
        assert last < 2048, (key, first, last)  # only the header's offset table
        assert same_outputs(ray_file, seq_file), key
