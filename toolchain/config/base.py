"""Shared machinery for schema-validated TOML documents.

Every document is a frozen pydantic model that forbids unknown keys. Validation errors are
turned into one line that names the key and lists what is allowed, because the user's next
step is to fix a typo, not to read a pydantic traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from toolchain.errors import ConfigError, missing_file

M = TypeVar("M", bound="Strict")


class Strict(BaseModel):
    """Frozen, unknown keys rejected, no coercion of e.g. "3" into 3."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """Walk field annotations down `loc` to find the sub-model that owns the last key."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields:
            return None
        if part in fields:
            current = _unwrap(fields[part].annotation)
        # else a dict key (e.g. a target name in [budgets.<name>]): the model stays the same
    return current if hasattr(current, "model_fields") else None


def _unwrap(annotation: Any) -> Any:
    """Find the BaseModel inside Optional[...] / dict[str, ...] / list[...] annotations."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def format_validation_error(model: type[BaseModel], err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        owner = _model_at(model, loc)
        known = ", ".join(sorted(owner.model_fields)) if owner is not None else "?"
        return f"{source}: unknown key '{key}'; known keys here: {known}"
    if first["type"] == "missing":
        return f"{source}: missing required key '{key}'; add it"
    got = first.get("input")
    return f"{source}: bad value for '{key}' ({got!r}): {first['msg']}"


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(model, err, source)) from None


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, f"{what} file", "check the path", ConfigError)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: malformed TOML ({err})", "fix the syntax at that line") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file", f"give a TOML {what} file") from None


def to_toml(data: dict[str, Any]) -> str:
    """Minimal TOML writer for our own documents (tables of scalars/lists), for round-trips."""
    lines: list[str] = []
    tables: list[tuple[str, dict]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is not None:
            lines.append(f"{_key(key)} = {_value(value)}")
    for name, table in tables:
        _emit_table(lines, name, table)
    return "\n".join(lines) + "\n"


def _emit_table(lines: list[str], name: str, table: dict) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and v is not None}
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    lines.append("")
    lines.append(f"[{name}]")
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in subtables.items():
        _emit_table(lines, f"{name}.{_key(k)}", v)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else f'"{k}"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
