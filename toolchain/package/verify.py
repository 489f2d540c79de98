"""Verify a package the way an app should before trusting it.

Checks, in order: the zip is safe to read; manifest.json parses and matches the schema;
every listed file is present with its sha256 and size, and nothing unlisted ships; the
signature (when a public key is given); the ONNX metadata mirrors the manifest; and a smoke
run of the model on golden.npz reproduces the stored outputs.

A bad package never raises here: each check lands in the report with a reason naming the
file, so `edgeopt verify` can print them all and exit 1. Only unusable arguments raise
(BadInput / KeyFileError, exit 2). Everything is read into memory (the archive size limit
bounds it), so nothing is extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from toolchain.errors import missing_file
from toolchain.package.errors import PackageVerificationFailed, SignatureError, UnsafeArchive
from toolchain.package.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, parse_manifest
from toolchain.package.safezip import DEFAULT_MAX_BYTES, open_zip, read_member

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class VerifyReport:
    package: str
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status != "fail" for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == "fail")

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.package, "ok": self.ok, "checks": [c.to_dict() for c in self.checks]}

    def raise_for_failure(self) -> None:
        """For pipelines: turn a failed report into PackageVerificationFailed (exit 3)."""
        if not self.ok:
            first = self.failures[0]
            raise PackageVerificationFailed(
                f"{self.package}: {first.name}: {first.reason}",
                "rebuild the package, or get it again from its publisher",
            )


def _parse(entries: dict[str, bytes], checks: list[Check], damaged: dict[str, str]) -> Manifest | None:
    if MANIFEST_NAME in damaged:
        checks.append(Check("manifest", "fail", f"{MANIFEST_NAME}: its stored bytes are damaged: {damaged[MANIFEST_NAME]}"))
        return None
    if MANIFEST_NAME not in entries:
        checks.append(Check("manifest", "fail", f"{MANIFEST_NAME} is missing"))
        return None
    try:
        manifest = parse_manifest(entries[MANIFEST_NAME])
    except ValueError as err:
        checks.append(Check("manifest", "fail", str(err)))
        return None
    if manifest.artifact != f"model.{manifest.artifact_format}":
        checks.append(
            Check(
                "manifest",
                "fail",
                f"{MANIFEST_NAME}: artifact {manifest.artifact} is not a {manifest.artifact_format} file",
            )
        )
        return None
    required = [manifest.artifact, manifest.golden.file, *manifest.extra_files]
    unlisted = [n for n in required if n not in manifest.files]
    if unlisted:
        checks.append(Check("manifest", "fail", f"{MANIFEST_NAME} does not list {unlisted} in files"))
        return None
    checks.append(
        Check("manifest", "pass", f"{MANIFEST_NAME} matches schema version {manifest.schema_version}")
    )
    return manifest


def _integrity(entries: dict[str, bytes], damaged: dict[str, str]) -> tuple[list[Check], Manifest | None]:
    checks: list[Check] = []
    manifest = _parse(entries, checks, damaged)
    if manifest is None:
        return checks, None
    for name, want in sorted(manifest.files.items()):
        if name in damaged:  # present, but its bytes cannot be what the manifest hashed
            checks.append(Check(f"file {name}", "fail", f"{name}: content does not match its sha256 in "
                                f"{MANIFEST_NAME} ({want.sha256[:12]}..): its stored bytes are damaged: {damaged[name]}"))
            continue
        if name not in entries:
            checks.append(Check(f"file {name}", "fail", f"{name} is listed in {MANIFEST_NAME} but missing"))
            continue
        data = entries[name]
        got = hashlib.sha256(data).hexdigest()
        if got != want.sha256 or len(data) != want.bytes:
            checks.append(
                Check(
                    f"file {name}",
                    "fail",
                    f"{name}: sha256 {got[:12]}.. ({len(data)} bytes) does not "
                    f"match {MANIFEST_NAME} ({want.sha256[:12]}.., {want.bytes})",
                )
            )
        else:
            checks.append(Check(f"file {name}", "pass", f"{name}: sha256 matches"))
    extra = sorted((set(entries) | set(damaged)) - set(manifest.files) - {MANIFEST_NAME, SIGNATURE_NAME})
    if extra:
        checks.append(Check("unlisted files", "fail", f"not listed in {MANIFEST_NAME}: {', '.join(extra)}"))
    else:
        checks.append(Check("unlisted files", "pass", "every file is listed"))
    return checks, manifest


def integrity_checks(entries: dict[str, bytes], damaged: dict[str, str] | None = None) -> list[Check]:
    """Manifest schema, per-file sha256 and 'nothing unlisted' for zip entries held in memory;
    `damaged` maps the entries whose stored bytes could not be read to why."""
    return _integrity(entries, damaged or {})[0]


def _signature_check(entries: dict[str, bytes], public_key: Path | None) -> Check:
    from toolchain.package.keys import check_signature

    signed = SIGNATURE_NAME in entries
    if public_key is None:
        why = "signed, but no public key given" if signed else "unsigned and no public key given"
        return Check("signature", "skip", f"{SIGNATURE_NAME}: {why}")
    if not signed:
        return Check("signature", "fail", f"{SIGNATURE_NAME} is missing: the package is unsigned")
    if MANIFEST_NAME not in entries:
        return Check(
            "signature", "fail", f"{MANIFEST_NAME} is missing, nothing to check {SIGNATURE_NAME} against"
        )
    try:
        check_signature(entries[MANIFEST_NAME], entries[SIGNATURE_NAME], public_key)
    except SignatureError as err:
        return Check("signature", "fail", str(err))
    return Check("signature", "pass", f"{SIGNATURE_NAME} is a valid signature of {MANIFEST_NAME}")


def _metadata_check(m: Manifest, model_bytes: bytes) -> Check:
    import onnx

    from toolchain.package.metadata import metadata_props_for
    from toolchain.package.safezip import model_external_locations

    try:
        model = onnx.load_from_string(model_bytes)
    except Exception as err:  # protobuf DecodeError: not a model
        return Check("onnx metadata", "fail", f"{m.artifact}: not a readable ONNX model ({err})")
    if model_external_locations(model):
        return Check("onnx metadata", "fail", f"{m.artifact}: uses external data; a package must be one file")
    want = metadata_props_for(
        m.name, m.target, m.recipe_hash, m.labels, m.preprocessing.model_dump(mode="json")
    )
    want["created_by"] = m.created_by
    got = {p.key: p.value for p in model.metadata_props}
    wrong = sorted(k for k, v in want.items() if got.get(k) != v)
    if wrong:
        return Check(
            "onnx metadata", "fail", f"{m.artifact}: metadata_props {wrong} disagree with {MANIFEST_NAME}"
        )
    return Check("onnx metadata", "pass", f"{m.artifact}: metadata_props mirror {MANIFEST_NAME}")


def _runtime_options(m: Manifest):
    """The engine and options the package says to use (`session`, schema 2; else the target
    profile's [runtime], schema 1): int8 kernels differ by optimization level, so match the build."""
    from toolchain.config.target import RuntimeOptions

    s = m.session.model_dump() if m.session else m.target_profile.get("runtime") or {}
    keys = set(RuntimeOptions.model_fields)
    known = {k: v for k, v in s.items() if k in keys and v is not None}
    return RuntimeOptions.model_validate({**known, "intra_op_threads": int(s.get("intra_op_threads") or 1),
                                          "inter_op_threads": int(s.get("inter_op_threads") or 1)})


def _batches(m: Manifest, arrays: dict):
    """Feeds in chunks of the model's fixed batch (axis 0), or all samples at once when it is symbolic.
    One chunk is fed whole: a one-run golden file's state inputs have no sample axis to slice."""
    first = m.inputs[0].shape[0]
    step = first if isinstance(first, int) else m.golden.samples
    if step >= m.golden.samples:
        yield {name: arrays[key] for name, key in m.golden.input_keys.items()}
        return
    for start in range(0, m.golden.samples, step):
        yield {name: arrays[key][start : start + step] for name, key in m.golden.input_keys.items()}


def _smoke_check(m: Manifest, model_bytes: bytes, golden_bytes: bytes) -> Check:
    import numpy as np

    from toolchain.errors import ModelLoadError
    from toolchain.runtime import runtime_for

    g = m.golden
    runtime = runtime_for(_runtime_options(m))
    try:
        with np.load(io.BytesIO(golden_bytes), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in [*g.input_keys.values(), *g.output_keys.values()]}
    except Exception as err:  # KeyError, ValueError, BadZipFile: all mean a broken golden file
        return Check("smoke run", "fail", f"{g.file}: unreadable or missing arrays ({err})")
    try:
        sess = runtime.load(model_bytes)
        names = list(g.output_keys)
        got = [
            np.concatenate(parts) for parts in zip(*(sess.run(names, feeds) for feeds in _batches(m, arrays)))
        ]
    except ModelLoadError as err:
        return Check("smoke run", "fail", f"{m.artifact}: {runtime.name} could not load it ({err.problem})")
    except Exception as err:  # engines raise their own Fail/InvalidArgument types; all mean "does not run"
        return Check("smoke run", "fail", f"{m.artifact}: {runtime.name} could not run it on {g.file} ({err})")
    worst = 0.0
    for name, out in zip(names, got):
        want = arrays[g.output_keys[name]]
        if out.shape != want.shape:
            return Check(
                "smoke run",
                "fail",
                f"{m.artifact}: output '{name}' has shape {list(out.shape)}, "
                f"{g.file} expects {list(want.shape)}",
            )
        diff = np.abs(out.astype(np.float64) - want.astype(np.float64))
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.allclose(out, want, atol=g.atol, rtol=g.rtol):
            return Check(
                "smoke run",
                "fail",
                f"{m.artifact}: output '{name}' differs from {g.file} "
                f"(max abs diff {float(diff.max()):.3g} > atol {g.atol:g})",
            )
    return Check(
        "smoke run",
        "pass",
        f"{m.artifact}: {g.samples} samples of {g.file} reproduced (max abs diff {worst:.3g})",
    )


def verify_package(
    pkg: Path, public_key: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES, smoke_run: bool = True
) -> VerifyReport:
    pkg = Path(pkg)
    if not pkg.is_file():
        raise missing_file(pkg, "package", "check the path")
    if public_key is not None:
        from toolchain.package.keys import load_public_key

        load_public_key(public_key)  # a bad key file is the caller's mistake (exit 2), not the package's
    try:
        zf, infos = open_zip(pkg, max_bytes)
    except UnsafeArchive as err:
        return VerifyReport(pkg.name, (Check("archive", "fail", str(err)),))
    entries: dict[str, bytes] = {}
    damaged: dict[str, str] = {}  # a flipped byte inside a member: its hash check names it
    with zf:
        for info in infos:
            if info.is_dir():
                continue
            try:
                entries[info.filename] = read_member(zf, info.filename)
            except UnsafeArchive as err:
                damaged[info.filename] = err.problem
    checks = [Check("archive", "pass", f"{len(infos)} entries, no unsafe names")]
    integrity, manifest = _integrity(entries, damaged)
    checks += integrity
    checks.append(_signature_check(entries, public_key))
    if manifest is not None:
        bad = {c.name for c in checks if c.status == "fail"}
        if manifest.artifact_format == "onnx" and f"file {manifest.artifact}" not in bad:
            checks.append(_metadata_check(manifest, entries[manifest.artifact]))
        if not smoke_run:
            checks.append(Check("smoke run", "skip", "not requested"))
        elif {f"file {manifest.artifact}", f"file {manifest.golden.file}"} & bad:
            checks.append(
                Check(
                    "smoke run",
                    "skip",
                    f"skipped: {manifest.artifact} or {manifest.golden.file} failed its hash check",
                )
            )
        else:
            checks.append(_smoke_check(manifest, entries[manifest.artifact], entries[manifest.golden.file]))
    return VerifyReport(pkg.name, tuple(checks))
