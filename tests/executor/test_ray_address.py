"""A --ray-address where something listens that is not a Ray GCS (a silent socket, another
protocol): refused in one line with exit 2 within seconds, by `edgeopt batch` and `edgeopt search`,
before any work. Ray's own ray.init() waits ~90 s there before giving up."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from toolchain.errors import BadInput
from toolchain.executor.ray_cluster import check_reachable

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def listener(reply: bytes | None):
    """A TCP server on 127.0.0.1 that accepts every connection and then sends `reply` (None: says
    nothing) and keeps the connection open until the test ends."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            if reply is not None:
                conn.sendall(reply)
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize(("reply", "says"), [(None, "gave no gRPC answer in 1 s"),
                                             (b"HTTP/1.1 400 Bad Request\r\n\r\n", "answered something other than gRPC")])
def test_the_probe_tells_a_listener_from_a_ray_gcs(reply, says):
    with listener(reply) as address:
        started = time.monotonic()
        with pytest.raises(BadInput, match=says):
            check_reachable(address, answer=1.0)
        assert time.monotonic() - started < 3


def _argv(command: str, address: str, tmp: Path) -> list[str]:
    recipe = ROOT / "models" / "tabular-mlp.toml"
    where = ["--targets", "cpu-server"] if command == "batch" else ["--target", "cpu-server"]
    return [sys.executable, "-m", "toolchain.cli", command, str(recipe), *where, "--out", str(tmp / "out"),
            "--executor", "ray", "--ray-address", address]


@pytest.mark.parametrize("command", ["batch", "search"])
def test_a_silent_ray_address_is_exit_2_in_one_line_within_30_s(command, tmp_path):
    from conftest import require_extra

    require_extra("ray", "ray")
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with listener(None) as address:
        started = time.monotonic()
        proc = subprocess.run(_argv(command, address, tmp_path), capture_output=True, text=True, env=env,
                              timeout=60, check=False)
        seconds = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert seconds < 30
    assert proc.stderr.count("\n") == 1 and f"no Ray cluster answers at {address}" in proc.stderr
    assert "gave no gRPC answer" in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists()
