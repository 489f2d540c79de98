"""A real OpenSSH server on 127.0.0.1, started per module: `edgeopt bench --remote` runs on it
and the stage cache uses it as an sftp:// store. Needs /usr/sbin/sshd (Debian: apt-get install -y
openssh-server); skipped with that hint if absent, except under CI=true, where .ci/run installs it."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextlib.contextmanager
def running_sshd(d: Path):
    """Start sshd with fresh keys in the empty folder `d`; yield {dir, port, user}; stop it."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        hint = "OpenSSH server/client not installed (apt-get install -y openssh-server openssh-client)"
        if os.environ.get("CI") == "true":  # .ci/run installs them: absent there is a failure
            pytest.fail(hint)
        pytest.skip(hint)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        # sshd started by root insists on its privilege-separation directory; the init script
        # normally creates it, and there is no init here.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    _keygen(d / "host_key")
    _keygen(d / "client_key")
    _keygen(d / "other_key")
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text("\n".join([
        "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "UsePAM no", "StrictModes no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        "PermitRootLogin prohibit-password", f"Subsystem sftp {SFTP_SERVER}", "LogLevel ERROR", "",
    ]))
    # -E: log to a file we can quote if it fails to start (a pipe nobody reads could fill up)
    proc = subprocess.Popen([SSHD, "-D", "-f", str(d / "sshd_config"), "-p", str(port), "-E", str(d / "sshd.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (d / "sshd.log").read_text().strip() if (d / "sshd.log").exists() else ""
            pytest.skip(f"sshd did not start: {log[:200]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    host_pub = (d / "host_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (d / "empty_known_hosts").write_text("")
    try:
        yield {"dir": d, "port": port, "user": getpass.getuser()}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
