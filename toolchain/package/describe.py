"""inspect_package: the manifest rendered for a person at a terminal."""

from __future__ import annotations

from pathlib import Path

from toolchain.errors import BadInput, missing_file
from toolchain.package.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, parse_manifest
from toolchain.package.model_card import _fmt
from toolchain.package.safezip import open_zip, read_member


def read_manifest(pkg: Path) -> tuple[Manifest, bool]:
    """(manifest, signed) without extracting anything. Raises BadInput for an unreadable package."""
    pkg = Path(pkg)
    if not pkg.is_file():
        raise missing_file(pkg, "package", "check the path")
    zf, infos = open_zip(pkg)
    with zf:
        raw = read_member(zf, MANIFEST_NAME)
        signed = any(i.filename == SIGNATURE_NAME for i in infos)
    try:
        return parse_manifest(raw), signed
    except ValueError as err:
        raise BadInput(f"{pkg.name}: {err}", "rebuild the package") from None


_ONE_LINE = 100  # characters: a flat mapping longer than this reads better one key per line


def _mapping_lines(key: str, value, indent: int) -> list[str]:
    """`key: value`, with a mapping that holds mappings (or is long) as an indented block."""
    pad = " " * indent
    line = f"{pad}{key}: {_fmt(value)}"
    if not isinstance(value, dict) or not value:
        return [line]
    if not any(isinstance(v, dict) for v in value.values()) and len(line) <= _ONE_LINE:
        return [line]
    return [f"{pad}{key}:", *(sub for k, v in sorted(value.items()) for sub in _mapping_lines(str(k), v, indent + 2))]


def _tensors(tensors) -> list[str]:
    return [f"  {t.name}: {t.dtype} [{', '.join(str(d) for d in t.shape)}]" for t in tensors]


def inspect_package(pkg: Path) -> str:
    """Does not verify hashes or the signature: run verify_package for that."""
    m, signed = read_manifest(pkg)
    p = m.preprocessing
    lines = [
        f"package   {Path(pkg).name}",
        f"model     {m.name}  (recipe {m.recipe_hash})",
        f"target    {m.target}",
        f"artifact  {m.artifact} ({m.artifact_format}, {m.files[m.artifact].bytes} bytes)",
        f"built by  {m.created_by}; {'signed' if signed else 'unsigned'}",
        "inputs",
        *_tensors(m.inputs),
        "outputs",
        *_tensors(m.outputs),
        f"preprocess input = (raw * {p.scale!r} + {p.offset!r}).astype({p.dtype}), layout {p.layout}",
        f"labels    {', '.join(m.labels) if m.labels else '(none)'}",
        "metrics",
        *[line for k, v in sorted(m.metrics.items()) for line in _mapping_lines(k, v, 2)],
        "budgets",
    ]
    for name, b in sorted(m.budgets.items()):
        b = b if isinstance(b, dict) else {"value": b}
        verdict = {True: "PASS", False: "FAIL"}.get(b.get("pass"), "n/a")
        lines.append(f"  {name}: {verdict} (value {_fmt(b.get('value'))}, limit {_fmt(b.get('limit'))})")
    lines.append("files")
    lines += [f"  {name}  {e.bytes} bytes  sha256 {e.sha256}" for name, e in sorted(m.files.items())]
    return "\n".join(lines) + "\n"
