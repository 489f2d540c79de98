"""Benchmark an artifact on a real device over SSH: `edgeopt bench ARTIFACT --remote ssh://...`.

The artifact and `_remote_runner.py` (onnxruntime + numpy + stdlib only) are copied with `scp`
into a fresh temp directory on the device, run with the device's own python and onnxruntime,
and the directory is removed. The result has the keys of a local `bench_file` plus `"remote"`;
`host` describes the device, read on the device.

We shell out to OpenSSH rather than use a Python SSH library: it honours the user's
~/.ssh/config, agents and jump hosts, and BatchMode makes it fail instead of prompting.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from toolchain.config.target import TargetProfile
from toolchain.errors import BadInput, ModelLoadError, missing_file

_RUNNER = Path(__file__).with_name("_remote_runner.py")
_URL_HELP = "use ssh://[user@]host[:port][?python=/path/to/python3]"


@dataclass(frozen=True)
class RemoteSpec:
    url: str  # as given, minus nothing: it is reported back in the result
    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    identity_file: Path | None = None
    known_hosts_file: Path | None = None
    strict_host_key_checking: Literal["yes", "accept-new", "no"] = "yes"
    connect_timeout_s: int = 10

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-o", f"StrictHostKeyChecking={self.strict_host_key_checking}"]
        if self.identity_file is not None:
            opts += ["-i", str(self.identity_file), "-o", "IdentitiesOnly=yes"]
        if self.known_hosts_file is not None:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts_file}"]
        return opts


def parse_remote(url: str, **options: Any) -> RemoteSpec:
    """`ssh://[user@]host[:port][?python=PATH]` plus keyword options of RemoteSpec."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise BadInput(f"bad port in remote URL '{url}'", _URL_HELP) from None
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/") or parts.password:
        raise BadInput(f"bad remote URL '{url}'", _URL_HELP)
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"python"})
    if unknown:
        raise BadInput(f"unknown remote URL option '{unknown[0]}'", "the only option is ?python=/path/to/python3")
    python = options.pop("python", None) or query.get("python", ["python3"])[0]
    return RemoteSpec(url=url, host=parts.hostname, user=unquote(parts.username) if parts.username else None,
                      port=port, python=python, **{k: v for k, v in options.items() if v is not None})


def _explain(spec: RemoteSpec, stderr: str) -> BadInput:
    """Turn ssh's exit-255 chatter into one line with a fix."""
    msg = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed"
    if "Permission denied" in stderr:
        return BadInput(f"ssh authentication to {spec.destination} failed ({msg})",
                        "pass --ssh-key with a key in the device's authorized_keys")
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION" in stderr:
        return BadInput(f"host key of {spec.host} is unknown or changed",
                        "add it to known_hosts (ssh-keyscan) or pass --known-hosts")
    if re.search(r"Could not resolve|Connection refused|timed out|No route|Network is unreachable", stderr):
        return BadInput(f"cannot reach {spec.host}{':' + str(spec.port) if spec.port else ''} ({msg})",
                        "check the host, the port and that sshd runs on the device")
    return BadInput(f"ssh to {spec.destination} failed ({msg})", "run the same ssh command by hand to see why")


def _ssh(spec: RemoteSpec, command: str, timeout: float) -> subprocess.CompletedProcess:
    port = ["-p", str(spec.port)] if spec.port else []
    argv = ["ssh", *spec.ssh_options(), *port, spec.destination, command]
    return _call(spec, argv, timeout)


def _scp(spec: RemoteSpec, files: list[Path], remote_dir: str, timeout: float) -> None:
    port = ["-P", str(spec.port)] if spec.port else []
    _call(spec, ["scp", "-q", *spec.ssh_options(), *port, *map(str, files), f"{spec.destination}:{remote_dir}/"],
          timeout)


def _call(spec: RemoteSpec, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        # check=False: exit codes are interpreted below (255 is ssh's own failure)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise BadInput(f"'{argv[0]}' not found", "install the OpenSSH client (apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise BadInput(f"{argv[0]} to {spec.destination} timed out after {timeout:.0f} s",
                       "check the device is up, or lower the profile's benchmark runs") from None
    if proc.returncode == 255 or (argv[0] == "scp" and proc.returncode != 0):
        raise _explain(spec, proc.stderr)
    return proc


def run_remote(artifact: Path, profile: TargetProfile, spec: RemoteSpec, timeout_s: float = 900.0) -> dict[str, Any]:
    """Benchmark `artifact` on the device `spec` with `profile`; same keys as bench_file + "remote"."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise missing_file(artifact, "model file", "check the path", ModelLoadError)
    made = _ssh(spec, "mktemp -d", 60)
    remote_dir = made.stdout.strip()
    if made.returncode != 0 or not remote_dir.startswith("/"):
        raise BadInput(f"cannot create a temp directory on {spec.destination}", "check the account has a writable /tmp")
    try:
        _scp(spec, [artifact, _RUNNER], remote_dir, 300)
        cfg = {"runtime": profile.runtime.model_dump(), "benchmark": profile.benchmark.model_dump()}
        cmd = " ".join(shlex.quote(x) for x in [spec.python, f"{remote_dir}/{_RUNNER.name}", "--model",
                                                 f"{remote_dir}/{artifact.name}", "--config", json.dumps(cfg)])
        proc = _ssh(spec, cmd, timeout_s)
    finally:
        _ssh(spec, f"rm -rf {shlex.quote(remote_dir)}", 60)
    return _result(artifact, profile, spec, proc)


def _result(artifact: Path, profile: TargetProfile, spec: RemoteSpec, proc) -> dict[str, Any]:
    lines = proc.stdout.strip().splitlines()
    try:
        doc = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        doc = None
    if proc.returncode == 127 or doc is None:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise BadInput(f"the runner did not run on {spec.destination} with '{spec.python}' ({last})",
                       "pass the device's python with ?python=/path or --remote-python")
    if "error" in doc:
        if doc["error"] == "missing-module":
            raise BadInput(f"{spec.python} on {spec.host} lacks a module ({doc['detail']})",
                           "pip install onnxruntime numpy on the device, or pass another --remote-python")
        raise ModelLoadError(f"{artifact.name} failed on {spec.host}: {doc['detail']}",
                             "check the artifact was built for this device's platform")
    return {"artifact": str(artifact.resolve()), "target": profile.name, **doc, "remote": spec.url}
