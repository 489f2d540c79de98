"""Markdown reference tables of every recipe and target-profile key, from the pydantic models.

The field descriptions are the one statement of what each key means; docs/recipes.md and
docs/targets.md carry the rendered tables between marker comments, so the docs cannot drift
from the schema (tests/config/test_docs.py fails when they are stale).

    python -m toolchain.config.reference            # print both tables
    python -m toolchain.config.reference --write    # rewrite them in docs/
    python -m toolchain.config.reference --check    # exit 1 when docs/ is stale
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"


class MissingDescription(Exception):
    """A schema field has no description: the reference would have an empty cell."""


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model a field opens a TOML table for: `X`, `X | None` or `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "unset"
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(json.dumps(v) for v in typing.get_args(annotation))
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "table"
    if args:  # a union such as `float | None`
        return " or ".join(_type_name(a) for a in args)
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = ((at.Ge, "ge", ">="), (at.Gt, "gt", ">"), (at.Le, "le", "<="), (at.Lt, "lt", "<"))


def _bounds(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(item, cls):
                parts.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, at.MinLen):
            parts.append("not empty" if item.min_length == 1 else f"at least {item.min_length} items")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    return f"`{json.dumps(value)}`"


def _description(owner: type[BaseModel], name: str, field: FieldInfo) -> str:
    text = field.description
    if not text:
        raise MissingDescription(
            f"{owner.__name__}.{name} has no description; add Field(description=...) (it is the key's documentation)"
        )
    return " ".join(text.split()).replace("|", "\\|")


def sections(model: type[BaseModel], table: str = "") -> Iterator[tuple[str, str, list[tuple[str, ...]]]]:
    """(TOML table name, its description, rows of (key, type, default, description)), depth first."""
    rows: list[tuple[str, ...]] = []
    nested: list[tuple[str, str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        sub = _section_model(field.annotation)
        text = _description(model, name, field)
        if sub is not None:
            key = f"{name}.<target>" if typing.get_origin(field.annotation) is dict else name
            nested.append((f"{table}.{key}" if table else key, text, sub))
            continue
        kind = _type_name(field.annotation)
        bounds = _bounds(field)
        rows.append((f"`{name}`", f"{kind} ({bounds})" if bounds else kind, _default(field), text))
    yield table, "", rows
    for sub_table, text, sub in nested:
        for inner, inner_text, inner_rows in sections(sub, sub_table):
            yield inner, inner_text or text, inner_rows


def render(model: type[BaseModel]) -> str:
    out: list[str] = []
    for table, text, rows in sections(model):
        if not rows:
            continue
        out.append(f"**`[{table}]`**: {text}" if table else "**top level**")
        out.append("")
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        out.extend("| " + " | ".join(row) + " |" for row in rows)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _documents() -> dict[str, tuple[str, str]]:
    """doc file -> (marker name, rendered table). Imported here: the schemas pull in their stages."""
    from toolchain.config.recipe import Recipe
    from toolchain.config.target import TargetProfile

    return {"recipes.md": ("recipe keys", render(Recipe)), "targets.md": ("target-profile keys", render(TargetProfile))}


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED {name}: python -m toolchain.config.reference --write -->",
            f"<!-- END GENERATED {name} -->")


def splice(text: str, name: str, table: str) -> str:
    """`text` with the block between `name`'s markers replaced by `table`."""
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"expected one '{begin}' followed by one '{end}'")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n\n{table}\n{end}{tail}"


def stale(docs_dir: Path = DOCS_DIR) -> list[str]:
    """Doc files whose generated block differs from the schema's."""
    out = []
    for doc, (name, table) in _documents().items():
        text = (docs_dir / doc).read_text(encoding="utf-8")
        if splice(text, name, table) != text:
            out.append(str(docs_dir / doc))
    return out


def write(docs_dir: Path = DOCS_DIR) -> list[str]:
    changed = []
    for doc in stale(docs_dir):
        path = Path(doc)
        name, table = _documents()[path.name]
        path.write_text(splice(path.read_text(encoding="utf-8"), name, table), encoding="utf-8")
        changed.append(doc)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolchain.config.reference", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the generated blocks in docs/")
    mode.add_argument("--check", action="store_true", help="exit 1 when a generated block is stale")
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR)
    args = parser.parse_args(argv)
    if args.write:
        for doc in write(args.docs_dir):
            print(f"rewrote {doc}")
        return 0
    if args.check:
        found = stale(args.docs_dir)
        for doc in found:
            print(f"stale: {doc}; run python -m toolchain.config.reference --write", file=sys.stderr)
        return 1 if found else 0
    for doc, (name, table) in _documents().items():
        print(f"## {name} ({doc})\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
