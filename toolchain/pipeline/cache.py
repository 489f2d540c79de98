"""Content-addressed stage cache.

A stage's output directory is keyed by sha256 over the canonical JSON of (stage name, its
config, the content hashes of its inputs, library versions, and the source of the edgeopt
modules the stage runs: see codehash.py). A rerun with nothing changed
finds every key and skips the work; changing one knob changes the keys of that stage and of
everything downstream (their input hashes change), and nothing else.

Entries are built in a temp directory and renamed into place, so a killed run never leaves
an entry that a later run would trust; when two processes (batch workers, nodes sharing the
directory) build the same key at once, the first rename wins and the other's copy is dropped,
so a published entry is never replaced under a reader (fsio.publish_dir).
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
from toolchain.fsio import publish_dir, sha256_json
from toolchain.pipeline.codehash import code_fingerprint

RECORD = "record.json"
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
    root: Path
    events: list[tuple[str, str]] = field(default_factory=list)  # (stage label, "hit"|"run")
    log: Callable[[str], None] = log_to_stderr

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
        entry_dir = self.root / stage.name / key[:20]
        record_path = entry_dir / RECORD
        label = label or stage.name
        if record_path.is_file():
            self.log(f"{label}: cached")
            self.events.append((label, "hit"))
            return Entry(stage.name, key, entry_dir, json.loads(record_path.read_text()), hit=True)
        self.log(f"{label}: running")
        started = time.perf_counter()
        with publish_dir(entry_dir, lambda d: (d / RECORD).is_file()) as tmp:
            record = dict(produce(tmp))
            (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        # Another process may have published this key first (its entry is kept): return what is there.
        record = json.loads(record_path.read_text())
        self.log(f"{label}: done in {time.perf_counter() - started:.1f} s")
        self.events.append((label, "run"))
        return Entry(stage.name, key, entry_dir, record, hit=False)
