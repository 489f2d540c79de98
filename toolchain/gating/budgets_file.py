"""The budgets file a gate enforces: TOML, `schema_version = 1`, one table per target name, and
optionally a `[drift]` table with the thresholds `edgeopt drift --budgets FILE` applies.

    schema_version = 1
    [cpu-server]
    max_p50_ms = 0.5
    max_regression = 0.15   # fraction vs --baseline: latency p50/p90, bytes, peak memory
    [drift]
    psi = 0.25              # overrides the [drift] of the target profile recorded in the package
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from toolchain.config.base import read_toml, validate
from toolchain.config.budgets import Budgets
from toolchain.config.drift import DriftThresholds
from toolchain.config.target import available_targets
from toolchain.errors import ConfigError

BUDGETS_SCHEMA_VERSION = 1
DRIFT_TABLE = "drift"  # not a target's table: a target named "drift" cannot have budgets in a file


class GateBudgets(Budgets):
    """Budgets plus a regression limit against a recorded baseline."""

    max_regression: float | None = Field(
        None, gt=0, description="allowed growth vs the baseline, as a fraction (0.15 = +15%)"
    )

    def absolute(self) -> Budgets:
        """The part `toolchain.config.budgets.evaluate` understands (everything but max_regression)."""
        return Budgets(**self.model_dump(exclude={"max_regression"}))


def _check_version(data: dict[str, Any], source: str) -> None:
    version = data.get("schema_version")
    if version != BUDGETS_SCHEMA_VERSION:
        raise ConfigError(
            f"{source}: schema_version is {version!r}, expected {BUDGETS_SCHEMA_VERSION}",
            f"put `schema_version = {BUDGETS_SCHEMA_VERSION}` at the top of the file",
        )


def parse_budgets(data: dict[str, Any], source: str, known_targets: list[str]) -> dict[str, GateBudgets]:
    """Validate a parsed budgets document; returns {target name: GateBudgets} (a [drift] table is
    checked too, so a typo in it fails the gate's run as well as the drift job's)."""
    _check_version(data, source)
    tables: dict[str, GateBudgets] = {}
    for name, table in data.items():
        if name == "schema_version":
            continue
        if name == DRIFT_TABLE and isinstance(table, dict):
            validate(DriftThresholds, table, f"{source} [{DRIFT_TABLE}]")
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


def load_drift_table(path: Path) -> dict[str, float]:
    """The keys a budgets file's [drift] table sets (validated; unset keys are left out, so they
    fall back to the package's own thresholds)."""
    data = read_toml(path, "budgets")
    _check_version(data, str(path))
    table = data.get(DRIFT_TABLE)
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [{DRIFT_TABLE}] table",
                          f"add e.g. [{DRIFT_TABLE}] with psi = 0.2 and ks_pvalue = 0.01")
    return validate(DriftThresholds, table, f"{path} [{DRIFT_TABLE}]").model_dump(exclude_unset=True)
