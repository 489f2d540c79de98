"""Baselines: what a later gate's `max_regression` compares against.

A baseline records the artifact's metrics, its sha256 and path (so a later gate can time the
old artifact interleaved with the new one when the file still exists), the artifact/fp32
latency ratio when the run kept an fp32 reference (a ratio survives a change of machine speed
far better than an absolute time), and the host it was measured on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from toolchain.config.base import Strict, format_validation_error
from toolchain.errors import ConfigError, missing_file
from toolchain.fsio import sha256_file

BASELINE_SCHEMA_VERSION = 1


class Interval(Strict):
    value: float
    ci_low: float
    ci_high: float
    coverage: float = Field(ge=0, le=1)


class ArtifactRecord(Strict):
    path: str = Field(description="relative to the baseline file's folder when that is possible")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Fp32Ratio(Strict):
    """Artifact latency / fp32 artifact latency, both timed interleaved in the same rounds."""

    p50: Interval
    p90: Interval
    fp32_sha256: str


class BaselineMetrics(Strict):
    bytes: int = Field(ge=0)
    p50_ms: Interval
    p90_ms: Interval
    peak_memory_mb: float | None = None
    size_ratio: float | None = None
    accuracy_drop: float | None = None


class Baseline(Strict):
    schema_version: Literal[1]
    target: str
    source_kind: Literal["run", "artifact", "package"]
    artifact: ArtifactRecord
    metrics: BaselineMetrics
    fp32_ratio: Fp32Ratio | None = None
    measurement: dict[str, float | int]
    host: dict[str, object]
    versions: dict[str, str]


def load_baseline(path: Path) -> Baseline:
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "baseline file", "create one with `edgeopt baseline save`", ConfigError)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConfigError(f"{path}: not a JSON baseline", "re-create it with `edgeopt baseline save`") from None
    if not isinstance(data, dict) or data.get("schema_version") != BASELINE_SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: schema_version is {data.get('schema_version') if isinstance(data, dict) else None!r}, "
            f"expected {BASELINE_SCHEMA_VERSION}", "re-create it with `edgeopt baseline save`",
        )
    try:
        # JSON has no tuples/ints-vs-floats distinction worth being strict about here
        return Baseline.model_validate(data, strict=False)
    except ValidationError as err:
        raise ConfigError(format_validation_error(Baseline, err, str(path)), "re-create it with `edgeopt baseline save`") from None


def record_path(artifact: Path, baseline_file: Path) -> str:
    """The artifact's path relative to the baseline's folder (a CI checkout moves both alike);
    absolute only when no relative path exists (another drive)."""
    try:
        return Path(os.path.relpath(Path(artifact).resolve(), Path(baseline_file).resolve().parent)).as_posix()
    except ValueError:
        return Path(artifact).resolve().as_posix()


def baseline_artifact(baseline: Baseline, baseline_file: Path) -> Path | None:
    """The baseline's own artifact, if it still exists with the recorded content."""
    p = Path(baseline.artifact.path)
    if not p.is_absolute():
        p = (Path(baseline_file).resolve().parent / p).resolve()
    if p.is_file() and sha256_file(p) == baseline.artifact.sha256:
        return p
    return None
