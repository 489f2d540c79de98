"""CLI hook for `edgeopt bench ARTIFACT --remote ssh://user@host[:port]`.

`bench_remote` is what cli.bench calls when --remote is given; `remote_options` are the click
options to stack on the bench command. Kept here so cli.py stays a thin dispatcher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def remote_options(fn):
    """--remote and the SSH options that go with it, for `edgeopt bench`."""
    for opt in reversed([
        click.option("--remote", "remote", default=None, metavar="ssh://[user@]host[:port]",
                     help="Benchmark on a device over SSH with its own python + onnxruntime."),
        click.option("--remote-python", default=None, help="Python on the device (default python3; or ?python= in the URL)."),
        click.option("--ssh-key", type=click.Path(path_type=Path), default=None, help="Private key for ssh -i."),
        click.option("--known-hosts", type=click.Path(path_type=Path), default=None, help="known_hosts file to check the device against."),
        click.option("--strict-host-key-checking", type=click.Choice(["yes", "accept-new", "no"]), default="yes",
                     show_default=True, help="OpenSSH StrictHostKeyChecking."),
    ]):
        fn = opt(fn)
    return fn


def bench_remote(artifact: Path, profile, url: str, *, python: str | None = None, ssh_key: Path | None = None,
                 known_hosts: Path | None = None, strict_host_key_checking: str = "yes") -> dict[str, Any]:
    """Same document as `bench_file(artifact, profile)`, measured on the device at `url`."""
    from toolchain.bench.remote import parse_remote, run_remote

    spec = parse_remote(url, python=python, identity_file=ssh_key, known_hosts_file=known_hosts,
                        strict_host_key_checking=strict_host_key_checking)
    return run_remote(Path(artifact), profile, spec)
