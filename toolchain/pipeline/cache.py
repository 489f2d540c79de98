"""Content-addressed stage cache.

A stage's output directory is keyed by sha256 over the canonical JSON of (stage name, its
config, the content hashes of its inputs, library versions, and the source of the edgeopt
modules the stage runs: see codehash.py). A rerun with nothing changed
finds every key and skips the work; changing one knob changes the keys of that stage and of
everything downstream (their input hashes change), and nothing else.

Where entries live is store.py's concern: a directory (the default `<out>/cache`, or one every
node mounts) or an fsspec URL such as s3://. Either way an entry is published whole or not at
all, so a killed run never leaves an entry that a later run would trust; when two processes
(batch workers, nodes sharing the cache) build the same key at once, one entry wins and the
other's copy is dropped, so a published entry is never replaced under a reader.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from toolchain import __version__
from toolchain.fsio import sha256_json
from toolchain.pipeline.codehash import code_fingerprint
from toolchain.pipeline.store import RECORD, open_store

_LIBS = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "scikit-learn", "torch-pruning")


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    versions = {"edgeopt": __version__, "python": platform.python_version()}
    for lib in _LIBS:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "absent"
    return versions


@dataclass(frozen=True)
class StageSpec:
    """A cached stage: its name (the cache folder), the modules it runs, declared beside the
    step that runs it, so its cache key follows exactly that code (codehash.py), and the config
    class that parametrizes it (the conformance tests round-trip it and vary it)."""

    name: str
    modules: tuple[str, ...] | None = None  # None: the whole package
    config: type | None = None  # None: the stage takes no config model (e.g. compress's import)


@dataclass(frozen=True)
class Entry:
    stage: str
    key: str
    dir: Path
    record: Mapping[str, Any]
    hit: bool

    def path(self, name: str) -> Path:
        return self.dir / name


def log_to_stderr(message: str) -> None:
    """Stage starts and ends go to stderr: a run whose stdout is a file or a pipe (CI) still
    shows what it is doing, and `--json` keeps stdout for the document."""
    print(f"edgeopt: {message}", file=sys.stderr, flush=True)


@dataclass
class StageCache:
    root: Path | str  # a directory, or an fsspec URL (store.py)
    events: list[tuple[str, str]] = field(default_factory=list)  # (stage label, "hit"|"run")
    log: Callable[[str], None] = log_to_stderr
    staging: Path | None = None  # a URL's entries are read through local copies here

    def __post_init__(self) -> None:
        self.store = open_store(self.root, self.staging)

    def key(self, stage: StageSpec, config: Any, inputs: Mapping[str, str]) -> str:
        return sha256_json({"stage": stage.name, "config": config, "inputs": dict(inputs),
                            "versions": library_versions(), "code": code_fingerprint(stage.modules)})

    def run(
        self,
        stage: StageSpec | str,
        config: Any,
        inputs: Mapping[str, str],
        produce: Callable[[Path], Mapping[str, Any]],
        label: str | None = None,
    ) -> Entry:
        """Return the cached entry for this key, or call `produce(tmpdir)` to build it.

        `produce` writes its files into the directory it is given and returns a JSON-able
        record (metrics, file names) that is stored beside them.
        """
        stage = stage if isinstance(stage, StageSpec) else StageSpec(stage)
        key = self.key(stage, config, inputs)
        rel = f"{stage.name}/{key[:20]}"
        label = label or stage.name
        found = self.store.find(rel)
        if found is not None:
            self.log(f"{label}: cached")
            self.events.append((label, "hit"))
            return Entry(stage.name, key, found, json.loads((found / RECORD).read_text()), hit=True)
        self.log(f"{label}: running")
        started = time.perf_counter()
        with self.store.publish(rel) as tmp:
            record = dict(produce(tmp))
            (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        # Another process may have published this key first (its entry is kept): return what is there.
        entry_dir = self.store.find(rel)
        if entry_dir is None:
            raise RuntimeError(f"{self.store}: {rel} was published but is not there")
        record = json.loads((entry_dir / RECORD).read_text())
        self.log(f"{label}: done in {time.perf_counter() - started:.1f} s")
        self.events.append((label, "run"))
        return Entry(stage.name, key, entry_dir, record, hit=False)
