"""The shared stage cache on a real remote store: `sftp://` against an OpenSSH server on
127.0.0.1 (fsspec + paramiko, the extra .[fsspec]). Separate processes with separate local
copy folders stand for separate nodes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from batch_fixtures import ROOT, subprocess_env, tiny_recipe
from conftest import require_extra
from sshd_server import free_port, running_sshd

from toolchain.pipeline.store import MARKER

require_extra("fsspec", "fsspec")
require_extra("paramiko", "fsspec")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _url(s, path: Path, port: int | None = None) -> str:
    return f"sftp://{s['user']}@127.0.0.1:{port or s['port']}{path}"


def _env(s) -> dict[str, str]:
    """fsspec's own configuration channel: FSSPEC_SFTP holds the SFTPFileSystem options."""
    options = {"key_filename": str(s["dir"] / "client_key"), "look_for_keys": False, "allow_agent": False}
    return {**subprocess_env(), "FSSPEC_SFTP": json.dumps(options)}


_NODE = """
import pathlib, sys, time
from toolchain.pipeline.cache import StageCache
url, staging, me, other = sys.argv[1:5]
cache = StageCache(url, staging=pathlib.Path(staging), log=lambda _m: None)
upstream, out = "", []
for i, stage in enumerate(("train", "export", "quantize")):
    def produce(tmp, stage=stage, upstream=upstream):
        (tmp / "a.bin").write_bytes(f"{stage}:{upstream}:{me if stage == 'quantize' else ''}".encode() * 999)
        if stage == "quantize" and other != "-":  # both nodes mid-build before either publishes
            pathlib.Path(staging + ".ready").touch()
            deadline = time.monotonic() + 60
            while not pathlib.Path(other + ".ready").exists():
                assert time.monotonic() < deadline
                time.sleep(0.01)
        return {"by": me}
    entry = cache.run(stage, {"i": i}, {"up": upstream}, produce)
    upstream = entry.key
    out.append([stage, entry.hit, entry.record["by"], entry.path("a.bin").read_bytes().hex()])
print(__import__("json").dumps(out))
"""


def _node(s, remote: Path, staging: Path, me: str, other: str = "-") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _NODE, _url(s, remote), str(staging), me, other],
        env=_env(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _result(proc: subprocess.Popen) -> list:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out)


def test_nodes_share_entries_over_sftp_and_concurrent_writers_agree(sshd, tmp_path):
    remote = tmp_path / "remote-cache"
    a = _node(sshd, remote, tmp_path / "node-a", "a", str(tmp_path / "node-b"))
    b = _node(sshd, remote, tmp_path / "node-b", "b", str(tmp_path / "node-a"))
    ra, rb = _result(a), _result(b)
    # train and export: whichever came second may have hit; quantize: both built, one entry won
    assert [r[3] for r in ra] == [r[3] for r in rb]  # byte-identical on both nodes, the winner's
    assert ra[2][2] == rb[2][2] and ra[2][1] is False and rb[2][1] is False
    for stage in ("train", "export", "quantize"):
        (key_dir,) = (remote / stage).iterdir()
        writer = (key_dir / MARKER).read_text()
        assert sorted(p.name for p in key_dir.iterdir()) == sorted([MARKER, writer])  # loser's prefix gone
    c = _result(_node(sshd, remote, tmp_path / "node-c", "c"))  # a third node, later: all hits
    assert [(r[0], r[1]) for r in c] == [("train", True), ("export", True), ("quantize", True)]
    assert [r[3] for r in c] == [r[3] for r in ra]


def _cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=120, check=False, cwd=ROOT)


def test_an_unwritable_or_unreachable_sftp_cache_is_exit_2_before_any_work(sshd, tmp_path):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for url, says in (
        (_url(sshd, blocker / "cache"), "is not writable"),
        (_url(sshd, tmp_path / "c", port=free_port()), "cannot be reached"),
    ):
        out = tmp_path / f"out-{says[:6]}"
        done = _cli(["batch", str(spec), "--targets", "cpu-server", "--out", str(out), "--cache", url], _env(sshd))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
        assert f"cache {url} {says}" in done.stderr and "--cache" in done.stderr
        assert not out.exists()  # refused before anything was written


def _artifact_hashes(doc: dict) -> dict[str, str]:
    return {name: hashlib.sha256(Path(r["artifact"]).read_bytes()).hexdigest() for name, r in doc["runs"].items()}


@pytest.mark.slow
def test_a_second_batch_on_another_out_gets_every_stage_from_the_sftp_cache(sshd, tmp_path, fast_targets_dir):
    spec = tiny_recipe("tabular-mlp", tmp_path)
    url = _url(sshd, tmp_path / "remote-cache")
    env = _env(sshd)
    docs = []
    for name in ("first", "second"):
        argv = [sys.executable, "-m", "toolchain.cli", "batch", str(spec), "--targets", "cpu-server,arm-mobile",
                "--targets-dir", str(fast_targets_dir), "--out", str(tmp_path / name), "--json",
                "--workers", "2", "--cache", url]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, check=False)
        assert done.returncode in (0, 1), done.stderr[-3000:]
        docs.append((json.loads(done.stdout), done.stderr))
    (first, first_log), (second, second_log) = docs
    assert "train: running" in first_log
    assert ": running" not in second_log and "train: cached" in second_log  # no stage recomputed
    assert sorted(second["runs"]) == ["tabular-mlp--arm-mobile", "tabular-mlp--cpu-server"]
    assert _artifact_hashes(second) == _artifact_hashes(first)
    assert not (tmp_path / "second" / "cache").exists()  # the cache is remote; local copies only
    assert list((tmp_path / "second" / "cache-staging").glob("train/*/record.json"))
