"""An S3 endpoint on 127.0.0.1, started per module in its own process: moto's server (`moto[server]`,
in the dev extra) speaking the S3 REST API, conditional writes (If-None-Match) included, for the
stage cache's s3:// store (s3fs, the extra .[s3]). Clients find it through the standard
AWS_ENDPOINT_URL variable, as they would find MinIO or any S3-compatible store."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sshd_server import free_port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def s3_env(endpoint: str, folder: Path) -> dict[str, str]:
    """Credentials and endpoint for a client of the test server, and no user AWS config."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "edgeopt-test",
        "AWS_SECRET_ACCESS_KEY": "edgeopt-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
    }


@contextlib.contextmanager
def running_s3(folder: Path, timeout: float = 60.0) -> Iterator[dict]:
    port = free_port()
    log = (folder / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _listening(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the S3 test server did not start: {(folder / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        yield {"endpoint": endpoint, "port": port, "env": s3_env(endpoint, folder)}
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        if server.poll() is None:
            server.kill()
        log.close()
