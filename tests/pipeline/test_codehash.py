"""Stage cache keys follow the code each stage runs: an edited stage reruns, an unrelated edit does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import toolchain
from toolchain.pipeline import cache as cache_mod
from toolchain.pipeline import codehash, steps
from toolchain.pipeline.cache import StageCache


@pytest.fixture()
def package_copy(tmp_path, monkeypatch):
    """A private copy of the toolchain sources that codehash reads instead of the real ones."""
    root = tmp_path / "toolchain"
    shutil.copytree(Path(toolchain.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(codehash, "_ROOT", root)
    _refresh()
    yield root
    _refresh()


def _fingerprint(stage: str) -> str:
    return codehash.code_fingerprint(next(s for s in steps.STAGES if s.name == stage).modules)


def _refresh():
    """Forget memoized sources: the tests edit files that codehash has already read."""
    codehash._direct_imports.cache_clear()
    codehash.code_fingerprint.cache_clear()


def test_closure_follows_lazy_imports_and_stops_at_the_stage():
    quantize = codehash.import_closure(steps.QUANTIZE.modules)
    assert "toolchain.stages.quantize" in quantize
    assert "toolchain.fsio" in quantize  # imported inside a function: still part of what runs
    assert "toolchain.stages.train" not in quantize and "toolchain.cli" not in quantize
    train = codehash.import_closure(steps.TRAIN.modules)
    assert "toolchain.stages.quantize" not in train
    with pytest.raises(ValueError, match="not toolchain modules"):
        codehash.import_closure(("toolchain.no_such_module",))


def test_editing_a_module_changes_only_the_stages_that_run_it(package_copy):
    stages = ("train", "export", "quantize", "convert", "benchmark")
    before = {s: _fingerprint(s) for s in stages}
    assert len(set(before.values())) == len(stages)
    with open(package_copy / "stages" / "quantize.py", "a") as f:
        f.write("\n# a behaviour change\n")
    _refresh()
    after = {s: _fingerprint(s) for s in stages}
    assert after["quantize"] != before["quantize"]
    # convert runs its own module only; quantize's edit must not throw away trained weights
    assert {s: after[s] for s in ("train", "export", "benchmark")} == {s: before[s] for s in ("train", "export", "benchmark")}
    # a shared helper reaches every stage that imports it, however indirectly
    with open(package_copy / "errors.py", "a") as f:
        f.write("\n# shared\n")
    _refresh()
    assert all(_fingerprint(s) != after[s] for s in ("train", "export", "quantize"))


def test_cache_reruns_a_stage_whose_code_changed(tmp_path, monkeypatch):
    calls = []
    produce = lambda out: calls.append(1) or {"n": len(calls)}
    monkeypatch.setattr(cache_mod, "code_fingerprint", lambda stage: "v1")
    cache = StageCache(tmp_path)
    assert not cache.run("quantize", {"k": 1}, {}, produce).hit
    assert cache.run("quantize", {"k": 1}, {}, produce).hit
    monkeypatch.setattr(cache_mod, "code_fingerprint", lambda stage: "v2")
    assert not cache.run("quantize", {"k": 1}, {}, produce).hit
    assert calls == [1, 1]


def test_model_source_hash_follows_the_factory_file(tmp_path, monkeypatch):
    from toolchain.config.zoo import model_source_sha256

    mod = tmp_path / "my_models_codehash.py"
    mod.write_text("import torch\ndef build():\n    return torch.nn.Linear(2, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = model_source_sha256("my_models_codehash:build")
    assert first is not None and len(first) == 64
    assert model_source_sha256("digits_cnn") != first  # zoo names hash models/<name>.py
    mod.write_text(mod.read_text() + "# edited\n")
    import sys

    sys.modules.pop("my_models_codehash", None)
    assert model_source_sha256("my_models_codehash:build") != first
