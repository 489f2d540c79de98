"""`edgeopt bench ARTIFACT`: bytes, latency percentiles and peak memory of one file, measured
here or, with --remote ssh://[user@]host[:port], on a device with its own onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toolchain.cli.options import PATH, emit, json_mode, json_option, targets_dir_option


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


@click.command()
@click.argument("artifact", type=PATH)
@click.option("--target", required=True, help="Target profile whose runtime options and batch sizes to use.")
@click.option("--runtimes", default=None, metavar="ENGINE,ENGINE",
              help="Time the file on each runtime side by side (onnxruntime,openvino): p50, ratio, whether it compiles.")
@targets_dir_option
@json_option
@remote_options
def bench(artifact, target, runtimes, targets_dir, as_json, remote, remote_python, ssh_key, known_hosts,
          strict_host_key_checking):
    """Benchmark one .onnx/.ort file: bytes, latency percentiles, peak memory (random inputs).

    With --remote ssh://[user@]host[:port], measure on that device with its own onnxruntime.
    With --runtimes onnxruntime,openvino, the same file on each runtime at the profile's threads.
    """
    from toolchain.bench.standalone import bench_file, render_bench
    from toolchain.config.target import load_target
    from toolchain.errors import BadInput

    profile = load_target(target, targets_dir)
    render = render_bench
    with json_mode(as_json):
        if runtimes is not None:
            from toolchain.bench.across_runtimes import across_runtimes, parse_engines, render_across

            if remote:
                raise BadInput("--runtimes measures on this machine, --remote on a device", "pass one of them")
            doc, render = across_runtimes(artifact, profile, parse_engines(runtimes)), render_across
        elif remote:
            doc = bench_remote(artifact, profile, remote, python=remote_python, ssh_key=ssh_key,
                               known_hosts=known_hosts, strict_host_key_checking=strict_host_key_checking)
        else:
            doc = bench_file(artifact, profile)
    emit(doc, as_json, render)


COMMANDS = [bench]
