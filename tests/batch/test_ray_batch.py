"""The goal of issue 16: a batch on a real two-node Ray cluster on 127.0.0.1 survives losing a
node mid-batch and produces the same artifacts as a sequential local run.

Byte-identity is asserted for every deterministic stage's files (train, prune, export, quantize,
convert, int8-weights, fidelity: cache_digest). Not for benchmark entries (timings) nor package
zips, which embed the measured latency; and the artifact a run *ships* is chosen on measured
latency, so it may legitimately be another (identical-bytes) candidate when two are close: the
test checks that every shipped file is one of the byte-identical candidates.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
from batch_fixtures import TINY_ZOO, batch_argv, cache_digest, run_batch, subprocess_env, tiny_recipe
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


def _first_entry(cache: Path, stage: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not list((cache / stage).glob("[!.]*/record.json")):
        assert time.monotonic() < deadline, f"no {stage} entry after {timeout} s"
        time.sleep(0.5)


def _shipped_digests(doc: dict) -> dict[str, str]:
    return {
        name: hashlib.sha256(Path(r["artifact"]).read_bytes()).hexdigest() for name, r in doc["runs"].items()
    }


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
        _first_entry(ray_out / "cache", "train", timeout=600)  # both nodes busy with the shared stages
        cluster.kill("worker0")
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
    assert differing == [], f"{len(differing)} of {len(seq_cache)} files differ in bytes: {differing}"
    # Every shipped artifact is one of the byte-identical candidates (which one: chosen on latency).
    candidates = set(seq_cache.values())
    for name, digest in _shipped_digests(ray_doc).items():
        assert digest in candidates, name
    same = {n for n, d in _shipped_digests(seq_doc).items() if _shipped_digests(ray_doc)[n] == d}
    assert len(same) >= 1  # on this machine all 6 matched; a latency tie may flip one
