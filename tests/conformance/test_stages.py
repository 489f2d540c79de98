"""Every cached stage (`steps.STAGES`, plus any StageSpec a `cache.run(` call site passes): a new
stage is checked without edits. Its config round-trips through JSON and rejects unknown keys; its
cache key follows its config, its input hashes and the code it declares, and nothing else; a
failing stage leaves no entry and no temp folder.
"""

from __future__ import annotations

import ast
import importlib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from toolchain.config.base import validate
from toolchain.errors import ConfigError
from toolchain.pipeline import codehash
from toolchain.pipeline.cache import StageCache, StageSpec
from toolchain.pipeline.steps import STAGES

PACKAGE_ROOT = Path(codehash.__file__).resolve().parents[1]


def cache_run_sites() -> list[tuple[str, int, str, object]]:
    """(file, line, first-argument source, the object it names) for every `<x>cache.run(` call."""
    sites = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = ".".join(["toolchain", *path.relative_to(PACKAGE_ROOT).with_suffix("").parts]).removesuffix(".__init__")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"):
                continue
            owner = ast.unparse(node.func.value)
            if not owner.endswith("cache"):
                continue
            first = node.args[0] if node.args else None
            named = getattr(importlib.import_module(module), first.id, None) if isinstance(first, ast.Name) else None
            sites.append((str(path.relative_to(PACKAGE_ROOT)), node.lineno, ast.unparse(first) if first else "", named))
    return sites


SITES = cache_run_sites()
ALL_STAGES = list(STAGES) + [s for *_, s in SITES if isinstance(s, StageSpec) and s not in STAGES]
CONFIGURED = [s for s in ALL_STAGES if s.config is not None]


def test_every_cache_run_site_passes_a_stage_constant_with_declared_modules():
    assert len(SITES) >= 9  # 8 steps + compress's import when written; fewer means the scan broke
    for file, line, arg, spec in SITES:
        where = f"{file}:{line} cache.run({arg}, ...)"
        assert isinstance(spec, StageSpec), f"{where}: pass a module-level StageSpec constant"
        assert spec.modules, f"{where}: declare the modules {spec.name} runs, or it hashes the whole package"


def test_stage_names_are_unique_and_every_run_stage_has_a_config():
    names = [s.name for s in ALL_STAGES]
    assert len(names) == len(set(names))
    assert all(s.config is not None for s in STAGES), [s.name for s in STAGES if s.config is None]


@pytest.mark.parametrize("spec", ALL_STAGES, ids=lambda s: s.name)
def test_declared_modules_exist(spec):
    missing = [m for m in spec.modules if codehash.module_path(m) is None]
    assert not missing
    assert len(codehash.import_closure(spec.modules)) < len(codehash._all_modules())


def _literal_first(annotation):
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Literal else None


def example(cls: type[BaseModel]) -> BaseModel:
    """An instance from the defaults; required fields get their first Literal value or, for a
    nested model, its own example. A config these rules cannot fill fails here, by name."""
    values = {}
    for name, field in cls.model_fields.items():
        if not field.is_required():
            continue
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            values[name] = example(field.annotation)
        elif _literal_first(field.annotation) is not None:
            values[name] = _literal_first(field.annotation)
        elif field.annotation in (str, "str"):
            values[name] = "example"
        else:
            raise AssertionError(f"{cls.__name__}.{name}: give it a default or a Literal type")
    return cls(**values)


def _variants(value, annotation):
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1)
    elif isinstance(value, float):
        yield from (value / 2, value * 2 if value else 0.5)
    elif typing.get_origin(annotation) is typing.Literal:
        yield from (v for v in typing.get_args(annotation) if v != value)
    elif isinstance(value, BaseModel):
        inner = changed(value)
        if inner is not None:
            yield inner


def changed(cfg: BaseModel) -> BaseModel | None:
    """A valid copy of `cfg` with one field changed, or None if no field can be."""
    for name, field in type(cfg).model_fields.items():
        for value in _variants(getattr(cfg, name), field.annotation):
            data = {**cfg.model_dump(), name: value.model_dump() if isinstance(value, BaseModel) else value}
            try:
                return type(cfg).model_validate(data, strict=False)
            except ValueError:
                continue
    return None


@pytest.mark.parametrize("spec", CONFIGURED, ids=lambda s: s.name)
def test_config_round_trips_through_json_and_rejects_unknown_keys(spec):
    cfg = example(spec.config)
    assert spec.config.model_validate_json(cfg.model_dump_json()) == cfg
    other = changed(cfg)
    assert other is not None and other != cfg
    assert spec.config.model_validate_json(other.model_dump_json()) == other
    with pytest.raises(ConfigError, match="unknown key 'no_such_key'"):
        validate(spec.config, {**cfg.model_dump(mode="json"), "no_such_key": 1}, "conformance")


def _config_doc(spec: StageSpec, variant: int = 0):
    if spec.config is None:
        return {"source": f"example-{variant}"}
    cfg = example(spec.config)
    return {spec.name: (cfg if variant == 0 else changed(cfg)).model_dump(mode="json")}


@pytest.fixture
def fresh_fingerprints():
    codehash.code_fingerprint.cache_clear()
    codehash._direct_imports.cache_clear()
    yield
    codehash.code_fingerprint.cache_clear()
    codehash._direct_imports.cache_clear()


def _edited(monkeypatch, tmp_path: Path, module: str) -> None:
    """Make codehash read `module` with one extra comment line."""
    real = codehash.module_path
    copy = tmp_path / "edited.py"
    copy.write_text(real(module).read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    monkeypatch.setattr(codehash, "module_path", lambda name: copy if name == module else real(name))
    codehash.code_fingerprint.cache_clear()
    codehash._direct_imports.cache_clear()


@pytest.mark.parametrize("spec", ALL_STAGES, ids=lambda s: s.name)
def test_cache_key_follows_config_inputs_and_code(spec, tmp_path, monkeypatch, fresh_fingerprints):
    cache = StageCache(tmp_path / "cache")
    inputs = {"model": "a" * 64}
    key = cache.key(spec, _config_doc(spec), inputs)
    assert cache.key(spec, _config_doc(spec), dict(inputs)) == key  # deterministic
    assert cache.key(spec, _config_doc(spec, 1), inputs) != key
    assert cache.key(spec, _config_doc(spec), {"model": "b" * 64}) != key
    closure = set(codehash.import_closure(spec.modules))
    outside = next(m for m in codehash._all_modules() if m not in closure and codehash.module_path(m).name != "__init__.py")
    with monkeypatch.context() as patch:  # code the stage does not run leaves its key alone
        _edited(patch, tmp_path, outside)
        assert cache.key(spec, _config_doc(spec), inputs) == key, outside
    with monkeypatch.context() as patch:
        _edited(patch, tmp_path, spec.modules[0])
        assert cache.key(spec, _config_doc(spec), inputs) != key


@pytest.mark.parametrize("spec", ALL_STAGES, ids=lambda s: s.name)
def test_a_failing_stage_leaves_no_entry_and_no_temp_folder(spec, tmp_path):
    cache = StageCache(tmp_path / "cache", log=lambda _message: None)
    calls = []

    def failing(out: Path) -> dict:
        calls.append(out)
        (out / "model.onnx").write_bytes(b"half")
        raise RuntimeError("stage failed halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        cache.run(spec, _config_doc(spec), {"model": "a" * 64}, failing)
    assert [p for p in (tmp_path / "cache").rglob("*") if p != tmp_path / "cache" / spec.name] == []

    def working(out: Path) -> dict:
        calls.append(out)
        (out / "model.onnx").write_bytes(b"whole")
        return {"file": "model.onnx"}

    entry = cache.run(spec, _config_doc(spec), {"model": "a" * 64}, working)
    assert not entry.hit and len(calls) == 2  # the failure left nothing a rerun would trust
    assert entry.path("model.onnx").read_bytes() == b"whole"
    assert cache.run(spec, _config_doc(spec), {"model": "a" * 64}, working).hit and len(calls) == 2
