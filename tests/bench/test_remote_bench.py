"""`edgeopt bench --remote` against a real OpenSSH server on 127.0.0.1, started per module.

The "device" is this machine: its python (the venv's, passed as ?python=) has onnxruntime.
Needs /usr/sbin/sshd (Debian: apt-get install -y openssh-server); skipped with that hint if absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from sshd_server import free_port as _free_port
from sshd_server import running_sshd

from toolchain.errors import BadInput


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _url(s, python=sys.executable, port=None) -> str:
    return f"ssh://{s['user']}@127.0.0.1:{port or s['port']}?python={python}"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    w = nh.from_array(np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32), "W")
    g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["y"])], "mm",
                     [h.make_tensor_value_info("x", T.FLOAT, [1, 16])], [h.make_tensor_value_info("y", T.FLOAT, [1, 8])], [w])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path_factory.mktemp("art") / "mm.onnx"
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def profile(fast_targets_dir):
    from toolchain.config.target import load_target

    return load_target("cpu-server", fast_targets_dir)


def _bench(s, artifact, profile, key="client_key", known="known_hosts", **kw):
    from toolchain.cli.bench import bench_remote

    return bench_remote(artifact, profile, kw.pop("url", None) or _url(s), ssh_key=s["dir"] / key,
                        known_hosts=s["dir"] / known, **kw)


@pytest.mark.slow
def test_remote_bench_same_keys_as_local(sshd, artifact, profile):
    from toolchain.bench.standalone import bench_file

    remote = _bench(sshd, artifact, profile)
    local = bench_file(artifact, profile)
    assert set(remote) == set(local) | {"remote"}
    assert remote.get("skipped_batch_sizes") == local.get("skipped_batch_sizes")
    assert 1 <= remote["memory_probes"] <= 3
    assert remote["remote"] == _url(sshd)
    assert set(remote["latency_by_batch"]) == set(local["latency_by_batch"]) == {"1"}
    assert set(remote["latency_by_batch"]["1"]) == set(local["latency_by_batch"]["1"])
    assert remote["bytes"] == local["bytes"] == artifact.stat().st_size
    assert remote["latency_by_batch"]["1"]["runs"] == local["latency_by_batch"]["1"]["runs"] == 20
    assert 0 < remote["latency_ms"]["p50"] < 100 and remote["runtime_only_mb"] > 0
    assert set(local["host"]) <= set(remote["host"]) and remote["host"]["onnxruntime"]


def test_auth_failure_is_one_line(sshd, artifact, profile):
    with pytest.raises(BadInput, match="authentication .* failed") as err:
        _bench(sshd, artifact, profile, key="other_key")
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_unknown_host_key_is_refused(sshd, artifact, profile):
    with pytest.raises(BadInput, match="host key of 127.0.0.1"):
        _bench(sshd, artifact, profile, known="empty_known_hosts")


def test_unreachable_host(sshd, artifact, profile):
    with pytest.raises(BadInput, match="cannot reach 127.0.0.1:"):
        _bench(sshd, artifact, profile, url=_url(sshd, port=_free_port()))


def test_missing_remote_python(sshd, artifact, profile):
    with pytest.raises(BadInput, match="--remote-python"):
        _bench(sshd, artifact, profile, url=_url(sshd, python="/nonexistent/python3"))


@pytest.mark.parametrize("url", ["http://host", "ssh://", "ssh://host/path", "ssh://host:99999", "ssh://host?pyhton=x"])
def test_bad_urls(url):
    from toolchain.bench.remote import parse_remote

    with pytest.raises(BadInput) as err:
        parse_remote(url)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_url_parts():
    from toolchain.bench.remote import parse_remote

    spec = parse_remote("ssh://pi@raspberrypi.local:2222?python=/opt/venv/bin/python", identity_file=None)
    assert (spec.user, spec.host, spec.port, spec.python) == ("pi", "raspberrypi.local", 2222, "/opt/venv/bin/python")
    assert "BatchMode=yes" in spec.ssh_options() and "StrictHostKeyChecking=yes" in spec.ssh_options()
    assert parse_remote("ssh://dev", python="/usr/bin/python3").python == "/usr/bin/python3"


def test_runner_summary_matches_local_summary():
    # the runner restates toolchain.bench.latency.summarize; the two must agree number for number
    from toolchain.bench import _remote_runner
    from toolchain.bench.latency import summarize

    samples = [1.0, 2.0, 3.0, 10.0, 0.5]
    assert _remote_runner.summarize(samples) == summarize(samples).to_dict()
