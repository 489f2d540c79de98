"""A throwaway Ray cluster on this machine: a head and worker nodes started with `ray start`,
each with its own CPU share and temp dir, on 127.0.0.1 and free ports. For the tests and
benchmarks/batch_scaling.py; a real cluster is started by its operators.

Each node's `ray start` runs in its own process group (its daemons keep it), so a node is killed,
and the cluster torn down, by group id: never `ray stop`, which stops every Ray on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports(ports: list[int]) -> list[str]:
    """Every port a node listens on, chosen free (other Ray clusters may run on this machine) and
    all distinct: five taken from `ports`."""
    agent, grpc, runtime_env, metrics, client = (ports.pop() for _ in range(5))
    return [
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={client}",
    ]


def cluster_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the cluster's nodes and of drivers joining it. Token authentication
    off: Ray 2.60 keeps one token in ~/.ray/auth_token, which a second throwaway cluster started
    on this machine (a parallel test, another user) overwrites, locking the first one's nodes out."""
    return {**(env or os.environ), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


class LocalRayCluster:
    def __init__(
        self, env: dict[str, str] | None = None, cpus_per_node: int = 1, head_cpus: int | None = None
    ):
        self.ray = str(Path(sys.executable).parent / "ray")
        self._ports = free_ports(40)  # every port of the cluster at once: distinct by construction
        self.port = self._ports.pop()
        self.address = f"127.0.0.1:{self.port}"
        self.env = cluster_env(env)
        self.cpus = cpus_per_node
        self.head_cpus = cpus_per_node if head_cpus is None else head_cpus  # 0: the head only schedules
        self.groups: dict[str, int] = {}

    def _start(self, role: str, cpus: int, *args: str) -> None:
        temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must stay short
        proc = subprocess.run(
            [
                self.ray,
                "start",
                *args,
                f"--num-cpus={cpus}",
                "--node-ip-address=127.0.0.1",
                f"--temp-dir={temp}",
                "--disable-usage-stats",
                *_node_ports(self._ports),
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            start_new_session=True,
        )
        group = _group_of(temp)
        if group is not None:
            self.groups[role] = group
        if proc.returncode != 0:
            raise RuntimeError(f"ray start {role} failed: {proc.stderr[-2000:]}")

    def start(self, workers: int = 1) -> LocalRayCluster:
        """The head (which also runs tasks) plus `workers` more nodes; on failure nothing is left running."""
        try:
            return self._start_nodes(workers)
        except BaseException:
            self.stop()
            raise

    def _start_nodes(self, workers: int) -> LocalRayCluster:
        self._start(
            "head",
            self.head_cpus,
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--dashboard-port={self._ports.pop()}",
        )
        _wait_listening(self.port)
        for i in range(workers):
            self._start(f"worker{i}", self.cpus, f"--address={self.address}")
        return self

    def kill(self, role: str) -> None:
        """SIGKILL the node's whole session: its daemons and the workers running its tasks (a Ray
        worker moves to its own process group, but stays in the session `ray start` opened)."""
        group = self.groups.pop(role, None)
        if group is None:
            return
        import psutil

        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for proc in _session(group):
            try:
                proc.kill()
            except psutil.Error:
                pass

    def busy_workers(self, role: str) -> int:
        """How many of the node's workers run an edgeopt task now: Ray titles a worker
        `ray::<function>` while it runs one and `ray::IDLE` between tasks."""
        from toolchain.executor.ray_cluster import TASK_FUNCTION

        group = self.groups.get(role)
        return 0 if group is None else sum(_title(p) == f"ray::{TASK_FUNCTION}" for p in _session(group))

    def stop(self) -> None:
        for role in list(self.groups):
            self.kill(role)


def _session(sid: int) -> list:
    import psutil

    members = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                members.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _title(proc) -> str:
    import psutil

    try:
        return (proc.cmdline() or [""])[0]
    except psutil.Error:
        return ""


def _group_of(temp: str) -> int | None:
    import psutil

    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(temp in part for part in p.info["cmdline"] or ()):
                return os.getpgid(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return None


def _wait_listening(port: int, seconds: float = 120.0) -> None:
    """`ray start --head` returns before its GCS may accept connections on a loaded machine."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head's GCS does not listen on port {port}") from None
            time.sleep(0.5)
