"""The budgets file a gate enforces: TOML, `schema_version = 1`, one table per target name.

    schema_version = 1
    [cpu-server]
    max_p50_ms = 0.5
    max_regression = 0.15   # fraction vs --baseline: latency p50/p90, bytes, peak memory
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from toolchain.config.base import read_toml, validate
from toolchain.config.budgets import Budgets
from toolchain.config.target import available_targets
from toolchain.errors import ConfigError

BUDGETS_SCHEMA_VERSION = 1


class GateBudgets(Budgets):
    """Budgets plus a regression limit against a recorded baseline."""

    max_regression: float | None = Field(
        None, gt=0, description="allowed growth vs the baseline, as a fraction (0.15 = +15%)"
    )

    def absolute(self) -> Budgets:
        """The part `toolchain.config.budgets.evaluate` understands (everything but max_regression)."""
        return Budgets(**self.model_dump(exclude={"max_regression"}))


def parse_budgets(data: dict[str, Any], source: str, known_targets: list[str]) -> dict[str, GateBudgets]:
    """Validate a parsed budgets document; returns {target name: GateBudgets}."""
    version = data.get("schema_version")
    if version != BUDGETS_SCHEMA_VERSION:
        raise ConfigError(
            f"{source}: schema_version is {version!r}, expected {BUDGETS_SCHEMA_VERSION}",
            f"put `schema_version = {BUDGETS_SCHEMA_VERSION}` at the top of the file",
        )
    tables: dict[str, GateBudgets] = {}
    for name, table in data.items():
        if name == "schema_version":
            continue
        if not isinstance(table, dict):
            raise ConfigError(
                f"{source}: unknown top-level key '{name}'; known: schema_version and one [table] per target",
                f"targets: {', '.join(known_targets) or '(none)'}",
            )
        if name not in known_targets:
            raise ConfigError(
                f"{source}: unknown target '[{name}]'", f"known targets: {', '.join(known_targets) or '(none)'}"
            )
        tables[name] = validate(GateBudgets, table, f"{source} [{name}]")
    if not tables:
        raise ConfigError(f"{source}: no target tables", "add e.g. [cpu-server] with max_p50_ms = 1.0")
    return tables


def load_budgets(path: Path, targets_dir: Path | None = None) -> dict[str, GateBudgets]:
    data = read_toml(path, "budgets")
    return parse_budgets(data, str(path), list(available_targets(targets_dir)))


def budgets_for(tables: dict[str, GateBudgets], target: str, source: str) -> GateBudgets:
    if target not in tables:
        raise ConfigError(
            f"{source} has no [{target}] table", f"tables in the file: {', '.join(tables)}; add [{target}]"
        )
    return tables[target]
