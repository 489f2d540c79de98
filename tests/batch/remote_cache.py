"""Checks shared by the remote stage-cache tests (sftp://, s3://): separate processes with separate
local copy folders stand for separate nodes; two of them build the same key at once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from batch_fixtures import ROOT

from toolchain.pipeline.store import MARKER

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


def _node(url: str, staging: Path, me: str, env: dict[str, str], other: str = "-") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _NODE, url, str(staging), me, other],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _result(proc: subprocess.Popen) -> list:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out)


def check_concurrent_writers(url: str, fs, remote_root: str, env: dict[str, str], tmp_path: Path) -> None:
    """Two nodes build the same three stages, the last one at the same moment: both end with the
    same bytes, one writer's entry per key is left in the store (`fs` at `remote_root`), and a
    third node later gets every stage as a hit."""
    a = _node(url, tmp_path / "node-a", "a", env, str(tmp_path / "node-b"))
    b = _node(url, tmp_path / "node-b", "b", env, str(tmp_path / "node-a"))
    ra, rb = _result(a), _result(b)
    # train and export: whichever came second may have hit; quantize: both built, one entry won
    assert [r[3] for r in ra] == [r[3] for r in rb]  # byte-identical on both nodes, the winner's
    assert ra[2][2] == rb[2][2] and ra[2][1] is False and rb[2][1] is False
    fs.invalidate_cache()
    for stage in ("train", "export", "quantize"):
        (key_dir,) = fs.ls(f"{remote_root}/{stage}", detail=False)
        writer = fs.cat_file(f"{key_dir}/{MARKER}").decode()
        children = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(key_dir, detail=False))
        assert children == sorted([MARKER, writer])  # the loser's prefix is gone
    c = _result(_node(url, tmp_path / "node-c", "c", env))  # a third node, later: all hits
    assert [(r[0], r[1]) for r in c] == [("train", True), ("export", True), ("quantize", True)]
    assert [r[3] for r in c] == [r[3] for r in ra]


def _cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=120, check=False, cwd=ROOT)


def check_refused_before_work(spec: Path, url: str, env: dict[str, str], says: str, out: Path) -> None:
    """`edgeopt batch --cache URL` on a cache it cannot use: exit 2, one line naming the URL, no --out."""
    done = _cli(["batch", str(spec), "--targets", "cpu-server", "--out", str(out), "--cache", url], env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert f"cache {url} {says}" in done.stderr and "--cache" in done.stderr
    assert not out.exists()  # refused before anything was written


def _artifact_hashes(doc: dict) -> dict[str, str]:
    return {name: hashlib.sha256(Path(r["artifact"]).read_bytes()).hexdigest() for name, r in doc["runs"].items()}


def check_second_batch_is_all_hits(spec: Path, url: str, env: dict[str, str], tmp_path: Path, targets_dir: Path) -> None:
    """Two batches on separate --out folders share the cache at `url`: the second computes nothing,
    ships the same bytes, and keeps only local copies (no cache/ folder of its own)."""
    docs = []
    for name in ("first", "second"):
        argv = [sys.executable, "-m", "toolchain.cli", "batch", str(spec), "--targets", "cpu-server,arm-mobile",
                "--targets-dir", str(targets_dir), "--out", str(tmp_path / name), "--json",
                "--workers", "2", "--cache", url]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, check=False)
        assert done.returncode in (0, 1), done.stderr[-3000:]
        docs.append((json.loads(done.stdout), done.stderr))
    (first, first_log), (second, second_log) = docs
    assert "train: running" in first_log
    assert ": running" not in second_log and "train: cached" in second_log  # no stage recomputed
    assert sorted(second["runs"]) == sorted(first["runs"]) and len(first["runs"]) == 2
    assert _artifact_hashes(second) == _artifact_hashes(first)
    assert not (tmp_path / "second" / "cache").exists()  # the cache is remote; local copies only
    assert list((tmp_path / "second" / "cache-staging").glob("train/*/record.json"))
