"""The stage cache on an fsspec URL, through fsspec's own local filesystem (`local://`): the same
code path an object store takes (upload every file under a writer prefix, marker last, read
through a local copy), on this disk. Two staging folders stand for two nodes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import require_extra

from toolchain.errors import BadInput
from toolchain.pipeline.cache import StageCache
from toolchain.pipeline.store import MARKER, FsspecStore, LocalStore, open_store

require_extra("fsspec", "fsspec")

STAGES = ("train", "export", "quantize")


def _node(remote: Path, staging: Path) -> StageCache:
    return StageCache(f"local://{remote}", staging=staging, log=lambda _m: None)


def _pipeline(cache: StageCache, calls: list[str]) -> dict[str, bytes]:
    """Three chained stages: each one's key holds the hash of the previous one's output."""
    out, upstream = {}, ""
    for i, stage in enumerate(STAGES):

        def produce(tmp: Path, stage=stage, upstream=upstream, i=i) -> dict:
            calls.append(stage)
            (tmp / "sub").mkdir()
            (tmp / "sub" / f"{stage}.bin").write_bytes(f"{stage}:{upstream}".encode() * (i + 1))
            return {"file": f"sub/{stage}.bin"}

        entry = cache.run(stage, {"i": i}, {"up": upstream}, produce)
        data = entry.path(entry.record["file"]).read_bytes()
        out[stage], upstream = data, entry.key
    return out


def test_a_second_node_hits_every_stage_and_reads_the_same_bytes(tmp_path):
    remote = tmp_path / "bucket" / "cache"
    calls_a, calls_b = [], []
    a = _node(remote, tmp_path / "node-a")
    first = _pipeline(a, calls_a)
    assert isinstance(a.store, FsspecStore)
    b = _node(remote, tmp_path / "node-b")
    second = _pipeline(b, calls_b)
    assert calls_a == list(STAGES) and calls_b == []  # nothing recomputed on node b
    assert [e[1] for e in b.events] == ["hit"] * len(STAGES)
    assert second == first
    for stage in STAGES:  # one marker naming one whole payload per key
        (key_dir,) = (remote / stage).iterdir()
        writer = (key_dir / MARKER).read_text()
        assert sorted(p.name for p in key_dir.iterdir()) == sorted([MARKER, writer])
        assert (key_dir / writer / "sub" / f"{stage}.bin").read_bytes() == first[stage]
        assert (tmp_path / "node-b" / stage / key_dir.name / "sub" / f"{stage}.bin").read_bytes() == first[stage]


def test_two_concurrent_writers_of_one_key_leave_one_complete_entry(tmp_path):
    """Both miss, both build different bytes (as a benchmark would), both upload: one marker wins
    and both nodes return the winner's entry; the loser's prefix is gone."""
    remote = tmp_path / "cache"
    barrier = threading.Barrier(2)
    results = {}

    def build(name: str) -> None:
        def produce(tmp: Path) -> dict:
            (tmp / "model.bin").write_bytes(name.encode() * 1000)
            barrier.wait(timeout=10)  # both are mid-build before either uploads
            return {"builder": name}

        results[name] = _node(remote, tmp_path / name).run("toy", {"k": 1}, {}, produce)

    threads = [threading.Thread(target=build, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    (key_dir,) = (remote / "toy").iterdir()
    writer = (key_dir / MARKER).read_text()
    assert sorted(p.name for p in key_dir.iterdir()) == sorted([MARKER, writer])
    winner = results["a"].record["builder"]
    assert results["b"].record["builder"] == winner
    for entry in results.values():
        assert entry.path("model.bin").read_bytes() == winner.encode() * 1000
    assert (key_dir / writer / "model.bin").read_bytes() == winner.encode() * 1000


def test_a_writer_killed_before_its_marker_leaves_nothing_a_reader_trusts(tmp_path, monkeypatch):
    remote = tmp_path / "cache"

    def killed(self, rel, writer):
        raise KeyboardInterrupt  # the process dies between the upload and the marker

    calls = []
    with monkeypatch.context() as m:
        m.setattr(FsspecStore, "_mark", killed)
        with pytest.raises(KeyboardInterrupt):
            _node(remote, tmp_path / "a").run("toy", {}, {}, lambda t: calls.append(1) or {"n": 1})
    (key_dir,) = (remote / "toy").iterdir()
    assert not (key_dir / MARKER).exists() and len(list(key_dir.iterdir())) == 1  # an orphan payload
    assert not list((tmp_path / "a" / "toy").iterdir())  # no local copy either
    (orphan,) = key_dir.iterdir()
    entry = _node(remote, tmp_path / "b").run("toy", {}, {}, lambda t: calls.append(2) or {"n": 2})
    assert calls == [1, 2] and not entry.hit and entry.record == {"n": 2}
    writer = (key_dir / MARKER).read_text()
    assert sorted(p.name for p in key_dir.iterdir()) == sorted([MARKER, writer]) and writer != orphan.name
    # a marker caught mid-write (not a whole writer id) is not trusted either
    (key_dir / MARKER).write_text("0123")
    store = open_store(f"local://{remote}", tmp_path / "c")
    assert store.find(f"toy/{key_dir.name}") is None


def test_a_writer_whose_upload_fails_uses_the_winner_that_appeared_meanwhile(tmp_path, monkeypatch):
    """The winner of a key deletes other writers' prefixes (orphans of killed writers, or a live
    loser's): a loser whose upload then fails takes the winner's entry; with no winner it raises."""
    remote = tmp_path / "cache"
    original, raced = FsspecStore._upload, []

    def racing(self, local, prefix):
        if not raced:  # node b builds and wins the key while node a uploads, then a's prefix vanishes
            raced.append(prefix)
            _node(remote, tmp_path / "b").run("toy", {}, {}, lambda t: (t / "m.bin").write_bytes(b"b") and {"by": "b"})
            raise FileNotFoundError(prefix)
        return original(self, local, prefix)

    monkeypatch.setattr(FsspecStore, "_upload", racing)
    entry = _node(remote, tmp_path / "a").run("toy", {}, {}, lambda t: (t / "m.bin").write_bytes(b"a") and {"by": "a"})
    assert entry.record == {"by": "b"} and entry.path("m.bin").read_bytes() == b"b"
    (key_dir,) = (remote / "toy").iterdir()
    assert sorted(p.name for p in key_dir.iterdir()) == sorted([MARKER, (key_dir / MARKER).read_text()])

    monkeypatch.setattr(FsspecStore, "_upload", lambda self, local, prefix: (_ for _ in ()).throw(OSError("network")))
    with pytest.raises(OSError, match="network"):
        _node(remote, tmp_path / "c").run("other", {}, {}, lambda t: {"by": "c"})


def test_an_unwritable_url_is_refused_naming_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    url = f"local://{blocker}/cache"
    with pytest.raises(BadInput, match=rf"cache {url} is not writable \(") as err:
        open_store(url, tmp_path / "staging").check_writable()
    assert "--cache" in err.value.fix
    assert not (tmp_path / "staging").exists()  # nothing written before the refusal


def test_a_scheme_whose_package_is_missing_names_it(tmp_path, monkeypatch):
    import importlib

    registry = importlib.import_module("fsspec.registry")  # the module: fsspec.registry is a mapping
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if the s3 extra were not installed
    monkeypatch.delitem(registry._registry, "s3", raising=False)  # nor imported before
    with pytest.raises(BadInput, match="cache s3://bucket/c: .*s3fs"):
        open_store("s3://bucket/c", tmp_path)
    monkeypatch.setitem(sys.modules, "fsspec", None)  # the extra itself absent
    with pytest.raises(BadInput, match=r"needs fsspec") as err:
        open_store("sftp://127.0.0.1/c", tmp_path)
    assert "edgeopt[fsspec]" in err.value.fix


def test_paths_and_file_urls_need_no_fsspec(tmp_path):
    code = (
        "import sys; from toolchain.pipeline.store import open_store, LocalStore; "
        f"s = open_store('file://{tmp_path}/c', None); t = open_store('{tmp_path}/d', None); "
        "print(type(s).__name__, s.root, type(t).__name__, 'fsspec' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["LocalStore", f"{tmp_path}/c", "LocalStore", "False"]
    with pytest.raises(BadInput, match="names host 'server'"):
        open_store("file://server/c", None)
    assert isinstance(open_store(tmp_path, None), LocalStore)
