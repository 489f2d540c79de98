"""Fingerprints of the code a stage runs, so its cache key changes when that code does.

Library versions alone miss the case that matters while developing (and when a user edits a
zoo model): edgeopt's version stays 0.1.0 while `stages/quantize.py` changes, and the cache
would serve artifacts the new code would not produce. Hashing the whole package would throw
away a 20-minute training run because a report string changed, so each stage hashes the
source of its own module plus every `toolchain` module it imports, followed transitively.

The import graph is read from the source text (`ast`), not by importing: a fingerprint must
not pay for torch, and imports inside functions (the lazy ones this package uses everywhere)
count like top-level ones.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from functools import cache
from pathlib import Path

PACKAGE = "toolchain"
_ROOT = Path(__file__).resolve().parent.parent  # the toolchain package

def module_path(name: str) -> Path | None:
    """The source file of a `toolchain...` module, or None when the name is not one
    (e.g. `from toolchain.fsio import write_json` names a function, not a module)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = _ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# CPython 3.11's ast.parse is not safe in two threads at once ("AST constructor recursion depth
# mismatch", seen with concurrent cache writers): one parse at a time.
_PARSE_LOCK = threading.Lock()


@cache
def _direct_imports(name: str) -> tuple[str, ...]:
    path = module_path(name)
    with _PARSE_LOCK:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules by name
    modules = {m for m in found if module_path(m) is not None}
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: their code counts too.
    for m in list(modules):
        parts = m.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return tuple(sorted(modules - {name}))


def import_closure(roots: tuple[str, ...]) -> list[str]:
    """Every toolchain module the roots import, directly or not, including the roots."""
    seen: set[str] = set()
    todo = [r for r in roots if module_path(r) is not None]
    missing = [r for r in roots if module_path(r) is None]
    if missing:
        raise ValueError(f"not toolchain modules: {', '.join(missing)}")
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_direct_imports(name))
    return sorted(seen)


def _all_modules() -> tuple[str, ...]:
    names = []
    for path in sorted(_ROOT.rglob("*.py")):
        rel = path.relative_to(_ROOT).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        names.append(".".join([PACKAGE, *parts]))
    return tuple(names)


@cache
def code_fingerprint(roots: tuple[str, ...] | None) -> str:
    """sha256 over the names and source bytes of the modules a stage runs: `roots` and every
    toolchain module they import. None (a stage that declared nothing) hashes the whole package:
    always correct, only less cache-friendly."""
    modules = import_closure(roots if roots is not None else _all_modules())
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode() + b"\0" + module_path(name).read_bytes() + b"\0")
    return digest.hexdigest()

