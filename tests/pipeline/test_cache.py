"""The stage cache: pinned key hash, hits skip work, changed knobs rerun, failures leave nothing."""

from __future__ import annotations

import pytest

from toolchain.fsio import canonical_json, sha256_json
from toolchain.pipeline.cache import StageCache


def test_canonical_json_hash_is_pinned():
    # Key order and whitespace must not matter; the hash of this document must never drift,
    # or every user's cache silently invalidates on upgrade.
    assert canonical_json({"b": [1, 2], "a": 1}) == '{"a":1,"b":[1,2]}'
    # == `printf '{"a":1,"b":[1,2]}' | sha256sum`
    assert sha256_json({"b": [1, 2], "a": 1}) == "8baa73198470c7bb4c3ce142a8fd651affc0310d878bb9bd159e37a573fb4874"


def test_hit_skips_work_and_changed_config_reruns(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def produce(out):
        calls.append(out)
        (out / "a.txt").write_text("payload")
        return {"file": "a.txt", "n": len(calls)}

    first = cache.run("stage", {"k": 1}, {"in": "abc"}, produce)
    second = cache.run("stage", {"k": 1}, {"in": "abc"}, produce)
    assert len(calls) == 1 and not first.hit and second.hit
    assert second.record == {"file": "a.txt", "n": 1}
    assert second.path("a.txt").read_text() == "payload"
    cache.run("stage", {"k": 2}, {"in": "abc"}, produce)
    cache.run("stage", {"k": 1}, {"in": "abd"}, produce)
    assert len(calls) == 3
    assert [e[1] for e in cache.events] == ["run", "hit", "run", "run"]


def test_failed_stage_leaves_no_entry(tmp_path):
    cache = StageCache(tmp_path)

    def boom(out):
        (out / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.run("stage", {}, {}, boom)
    assert not any(p for p in tmp_path.rglob("*") if p.is_file())
    calls = []
    cache.run("stage", {}, {}, lambda out: calls.append(1) or {"ok": True})
    assert calls == [1]


def test_outputs_follow_the_umask_not_mkstemp_modes(tmp_path):
    import os

    from toolchain.fsio import atomic_dir, write_json_atomic

    old = os.umask(0o022)
    try:
        f = write_json_atomic(tmp_path / "r.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600: unreadable for other users / CI steps
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_stage_starts_and_ends_are_logged(tmp_path):
    lines: list[str] = []
    cache = StageCache(tmp_path, log=lines.append)
    cache.run("stage", {}, {}, lambda out: {"ok": True}, label="quantize[x]")
    cache.run("stage", {}, {}, lambda out: {"ok": True}, label="quantize[x]")
    assert lines[0] == "quantize[x]: running" and lines[1].startswith("quantize[x]: done in ")
    assert lines[2] == "quantize[x]: cached" and len(lines) == 3


def test_a_second_run_on_the_same_out_dir_is_refused_and_stale_temp_folders_go(tmp_path):
    import pytest

    from toolchain.errors import BadInput
    from toolchain.fsio import run_lock

    stale = tmp_path / "cache" / "quantize" / ".abc.123.tmp"
    stale.mkdir(parents=True)
    with run_lock(tmp_path):
        assert not stale.exists()  # a killed run's temp folder: nobody else can be writing it
        with pytest.raises(BadInput, match="another edgeopt run is using"), run_lock(tmp_path):
            pass
    with run_lock(tmp_path):  # released on exit
        pass
