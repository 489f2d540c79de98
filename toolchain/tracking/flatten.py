"""Nested report documents -> the flat keys and values MLflow stores."""

from __future__ import annotations

import json
import math
import re
from typing import Any

# MLflow's limits: param values up to 6000 characters, keys up to 250 of [A-Za-z0-9_\-. /].
_MAX_VALUE = 6000
_MAX_KEY = 250
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def key(raw: str) -> str:
    return _BAD_KEY_CHARS.sub("_", raw)[:_MAX_KEY]


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay whole (as JSON when turned into params)."""
    if not isinstance(doc, dict):
        return {key(prefix): doc} if prefix else {}
    flat: dict[str, Any] = {}
    for name, value in doc.items():
        flat.update(flatten(value, f"{prefix}.{name}" if prefix else str(name)))
    return flat


def params(doc: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Every leaf as a string param (None leaves out: 'not set' is not a value)."""
    out = {}
    for name, value in flatten(doc, prefix).items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        out[name] = text[:_MAX_VALUE]
    return out


def metrics(doc: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Every finite numeric leaf (booleans as 0/1): what MLflow can plot."""
    out = {}
    for name, value in flatten(doc, prefix).items():
        if isinstance(value, bool) or isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out
