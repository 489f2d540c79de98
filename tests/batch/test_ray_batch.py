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
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from batch_fixtures import TINY_ZOO, batch_argv, cache_digest, run_batch, subprocess_env, tiny_recipe
from conftest import require_extra

pytestmark = pytest.mark.slow


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    """Every port a node listens on, chosen free: other Ray clusters may run on this machine."""
    agent, grpc, runtime_env, metrics, client = _free_ports(5)
    return [
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={client}",
    ]


class Cluster:
    """A head and a worker node, each `ray start`ed in its own process group, so a node is
    killed (and the cluster torn down) by group id without touching anyone else's Ray."""

    def __init__(self):
        self.ray = str(Path(sys.executable).parent / "ray")
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.groups: dict[str, int] = {}
        self.dirs: list[str] = []

    def _start(self, role: str, *args: str) -> None:
        temp = tempfile.mkdtemp(prefix=f"r{role[0]}", dir="/tmp")  # Ray's socket paths must stay short
        self.dirs.append(temp)
        proc = subprocess.run(
            [
                self.ray,
                "start",
                *args,
                "--num-cpus",
                "1",
                "--node-ip-address=127.0.0.1",
                f"--temp-dir={temp}",
                "--disable-usage-stats",
                *_node_ports(),
            ],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            start_new_session=True,
        )
        # `ray start` exits once its daemons run; they keep its process group, whose id is its pid.
        self.groups[role] = self._group_of(temp)
        assert proc.returncode == 0, proc.stderr[-2000:]

    @staticmethod
    def _group_of(temp: str) -> int:
        import psutil

        for p in psutil.process_iter(["cmdline"]):
            if any(temp in part for part in p.info["cmdline"] or ()):
                return os.getpgid(p.pid)
        raise AssertionError(f"no Ray process found for {temp}")

    def start(self) -> None:
        self._start(
            "head",
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--dashboard-port={_free_ports(1)[0]}",
        )
        self._start("worker", f"--address={self.address}")

    def kill(self, role: str) -> None:
        group = self.groups.pop(role, None)
        if group is not None:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        for role in list(self.groups):
            self.kill(role)


@pytest.fixture
def cluster():
    require_extra("ray", "ray")
    c = Cluster()
    try:
        c.start()
        yield c
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
        cluster.kill("worker")
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
    assert ray_cache == seq_cache
    # Every shipped artifact is one of the byte-identical candidates (which one: chosen on latency).
    candidates = set(seq_cache.values())
    for name, digest in _shipped_digests(ray_doc).items():
        assert digest in candidates, name
    same = {n for n, d in _shipped_digests(seq_doc).items() if _shipped_digests(ray_doc)[n] == d}
    assert len(same) >= 1  # on this machine all 6 matched; a latency tie may flip one
