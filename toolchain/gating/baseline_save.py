"""`edgeopt baseline save`: measure a subject carefully once and record it as a Baseline."""

from __future__ import annotations

import tempfile
from pathlib import Path

from toolchain.config.target import load_target
from toolchain.fsio import copy_atomic, sha256_file, write_json_atomic
from toolchain.gating import sources
from toolchain.gating.baseline import Baseline, record_path
from toolchain.gating.collect import peak_memory, time_rounds
from toolchain.gating.noise import ARTIFACT, REFERENCE, MeasureSpec, Rounds, estimate

# A baseline is measured once and compared against many times, so it gets more time than a
# gate and stops only when its intervals are within +-2% of the estimate (or at the cap).
BASELINE_SPEC = MeasureSpec(min_rounds=12, max_rounds=80, max_seconds=60.0)
TARGET_REL_WIDTH = 0.04


def _series(rounds: Rounds) -> list:
    out = [rounds.per_round(ARTIFACT, 50)]
    if REFERENCE in rounds.names:
        out.append(rounds.ratio(50))
    return out


def _narrow(rounds: Rounds, spec: MeasureSpec) -> bool:
    for values in _series(rounds):
        e = estimate(values, spec.confidence)
        if (e["ci_high"] - e["ci_low"]) > TARGET_REL_WIDTH * abs(e["value"]):
            return False
    return True


def save_baseline(path: Path, target: str, out: Path, targets_dir: Path | None = None,
                  copy_artifact: bool = False, spec: MeasureSpec | None = None) -> Baseline:
    """Measure `path` (run directory, artifact or package) for `target` and write `out`.

    With `copy_artifact` (implied for packages, whose artifact only exists inside the zip) the
    artifact is copied beside `out`, so later gates can time the old artifact against the new.
    """
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    spec = spec or BASELINE_SPEC
    profile = load_target(target, targets_dir)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="edgeopt-baseline-") as work:
        subject = sources.resolve(Path(path), (target,), Path(work))[0]
        rounds, batch = time_rounds(subject.artifact, subject.fp32_artifact, profile.runtime, spec,
                                    lambda r: _narrow(r, spec))
        memory = peak_memory(subject.artifact, profile.runtime, batch)
        recorded = subject.artifact
        if copy_artifact or subject.kind == "package":
            recorded = copy_atomic(subject.artifact, out.with_name(f"{out.stem}.artifact{subject.artifact.suffix}"))
        nbytes = subject.artifact.stat().st_size
        fp32_bytes = subject.fp32_artifact.stat().st_size if subject.fp32_artifact else subject.recorded.get("fp32_bytes")
        doc = {
            "schema_version": 1,
            "target": target,
            "source_kind": subject.kind,
            "artifact": {"path": record_path(recorded, out), "sha256": sha256_file(subject.artifact), "bytes": nbytes},
            "metrics": {
                "bytes": nbytes,
                "p50_ms": estimate(rounds.per_round(ARTIFACT, 50), spec.confidence),
                "p90_ms": estimate(rounds.per_round(ARTIFACT, 90), spec.confidence),
                "peak_memory_mb": memory,
                "size_ratio": nbytes / fp32_bytes if fp32_bytes else None,
                "accuracy_drop": subject.recorded.get("accuracy_drop"),
            },
            "fp32_ratio": None if subject.fp32_artifact is None else {
                "p50": estimate(rounds.ratio(50), spec.confidence),
                "p90": estimate(rounds.ratio(90), spec.confidence),
                "fp32_sha256": sha256_file(subject.fp32_artifact),
            },
            "measurement": {"rounds": len(rounds), "runs": rounds.runs(ARTIFACT), "seconds": rounds.seconds,
                            "confidence": spec.confidence, "batch": batch},
            "host": host_info(),
            "versions": library_versions(),
        }
    baseline = Baseline.model_validate(doc, strict=False)
    write_json_atomic(out, baseline.model_dump(mode="json"))
    return baseline
