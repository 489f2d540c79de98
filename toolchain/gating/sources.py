"""What `edgeopt gate PATH` gates: a run directory, a bare artifact, or a package zip.

Each resolves to one `Subject` per target: the artifact to measure, the fp32 artifact when
the run kept one (it is the interleaved reference for regression checks), and the metrics
the run recorded that cannot be re-measured here (accuracy needs the dataset).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.errors import BadInput

ARTIFACT_SUFFIXES = (".onnx", ".ort")


@dataclass(frozen=True)
class Subject:
    kind: str  # "run" | "artifact" | "package"
    target: str
    artifact: Path
    fp32_artifact: Path | None = None
    recorded: dict[str, Any] = field(default_factory=dict)
    display: str = ""  # how reports name the artifact (a package's is extracted to a temp folder)


def kind_of(path: Path) -> str:
    if path.is_dir():
        return "run"
    if not path.is_file():
        raise BadInput(f"not found: {path}", "give a run directory, a .onnx/.ort artifact or a package .zip")
    if path.suffix in ARTIFACT_SUFFIXES:
        return "artifact"
    if path.suffix == ".zip":
        return "package"
    raise BadInput(
        f"{path.name}: cannot gate a '{path.suffix or 'suffix-less'}' file",
        "give a run directory, a .onnx/.ort artifact or a package .zip",
    )


def _rebase(recorded: str, out_dir: str | None, run_dir: Path) -> Path:
    """report.json stores absolute paths; a run directory downloaded from another CI job sits
    elsewhere, so a path under the recorded out_dir is looked up under the given directory."""
    p = Path(recorded)
    if p.is_file():
        return p
    if out_dir:
        try:
            return run_dir / p.relative_to(out_dir)
        except ValueError:
            pass
    return run_dir / p.name if not p.is_absolute() else p


def run_subjects(run_dir: Path, targets: tuple[str, ...]) -> list[Subject]:
    report = run_dir / "report.json"
    if not report.is_file():
        raise BadInput(f"{run_dir}: no report.json", "give the directory written by `edgeopt run --out DIR`")
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        recorded_targets = doc["targets"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise BadInput(f"{report}: not an edgeopt run report", "re-run `edgeopt run --out DIR`") from None
    names = list(targets) or list(recorded_targets)
    subjects = []
    for name in names:
        if name not in recorded_targets:
            raise BadInput(f"{run_dir}: the run has no target '{name}'", f"targets in the run: {', '.join(recorded_targets)}")
        t = recorded_targets[name]
        artifact = _rebase(t["artifact"], doc.get("out_dir"), run_dir)
        if not artifact.is_file():
            raise BadInput(f"{run_dir}: artifact for '{name}' is missing ({artifact.name})", "re-run `edgeopt run`")
        fp32 = _rebase(t["fp32_artifact"], doc.get("out_dir"), run_dir) if t.get("fp32_artifact") else None
        recorded = {k: t.get(k) for k in ("fp32_bytes", "accuracy_drop", "accuracy", "fp32_accuracy", "min_sqnr_db")}
        subjects.append(Subject("run", name, artifact, fp32 if fp32 and fp32.is_file() else None, recorded))
    return subjects


def package_subjects(pkg: Path, targets: tuple[str, ...], workdir: Path) -> list[Subject]:
    """Extracts the package (safely) into `workdir`, which the caller removes."""
    from toolchain.package import read_manifest, safe_extract

    manifest, _signed = read_manifest(pkg)
    if targets and set(targets) != {manifest.target}:
        raise BadInput(f"{pkg.name} was built for target '{manifest.target}'", f"pass --target {manifest.target}")
    safe_extract(pkg, workdir / "package")
    m = manifest.metrics
    recorded = {k: m.get(k) for k in ("fp32_bytes", "accuracy_drop", "accuracy", "fp32_accuracy", "min_sqnr_db")}
    return [Subject("package", manifest.target, workdir / "package" / manifest.artifact, None, recorded,
                    display=f"{pkg}!{manifest.artifact}")]


def artifact_subjects(path: Path, targets: tuple[str, ...]) -> list[Subject]:
    if not targets:
        raise BadInput(f"{path.name}: a bare artifact does not say its target", "pass --target NAME")
    return [Subject("artifact", name, path) for name in targets]


def resolve(path: Path, targets: tuple[str, ...], workdir: Path) -> list[Subject]:
    kind = kind_of(path)
    if kind == "run":
        return run_subjects(path, targets)
    if kind == "package":
        return package_subjects(path, targets, workdir)
    return artifact_subjects(path, targets)
