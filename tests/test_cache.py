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
