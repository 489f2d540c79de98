"""Build one app package (a deterministic zip) per target. Layout: docs/package-format.md.

The builder checks the spec against itself and the model (names, dtypes, ranks, fixed dims,
label count) so that a package that builds is one an app can wire up from the manifest alone.
It does not run the model: golden outputs come from the caller, and verify_package runs them.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from toolchain.config.base import format_validation_error
from toolchain.errors import missing_file
from toolchain.fsio import sha256_file
from toolchain.package.errors import PackageSpecError
from toolchain.package.manifest import (
    ARTIFACT_NAMES,
    DEFAULT_GOLDEN_ATOL,
    DEFAULT_GOLDEN_RTOL,
    DRIFT_REFERENCE_NAME,
    GOLDEN_NAME,
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    MODEL_CARD_NAME,
    RESERVED_NAMES,
    SCHEMA_NAME,
    SIGNATURE_NAME,
    Manifest,
    TensorSpec,
    compact_json,
    jsonable,
    manifest_bytes,
    schema_bytes,
)
from toolchain.package.metadata import created_by, metadata_props_for, stamp_onnx_metadata
from toolchain.package.model_card import render_model_card
from toolchain.package.session_config import runtime_record, session_config
from toolchain.package.zipwrite import npz_bytes, write_zip

# Extra file names: flat and portable, so every OS and every unzip tool agrees on them.
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class PackageSpec:
    name: str
    target: str
    artifact: Path
    artifact_format: str  # "onnx" | "ort"
    inputs: list[dict]  # [{"name": "x", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    outputs: list[dict]
    preprocessing: dict  # {"layout", "dtype", "scale", "offset", "description"}
    labels: list[str]
    metrics: dict
    budgets: dict  # {"max_bytes": {"limit": .., "value": .., "pass": True}, ...}
    target_profile: dict
    versions: dict
    recipe_hash: str
    golden_inputs: dict[str, np.ndarray]
    golden_outputs: list[np.ndarray]
    extra_files: dict[str, Path] = field(default_factory=dict)
    golden_atol: float = DEFAULT_GOLDEN_ATOL
    golden_rtol: float = DEFAULT_GOLDEN_RTOL
    drift_reference: dict | None = None  # toolchain.drift.reference's document; hashed like every file
    # The golden arrays are one run of the model, fed whole: inputs and outputs need not share a
    # sample axis (a recurrent state [layers, batch, hidden] does not have one at axis 0).
    golden_single_run: bool = False
    # Where the golden inputs come from (manifest golden.source): "synthetic" (drawn from aggregate
    # statistics), "random" (seeded, no data known) or "samples" (real data rows: the caller's opt-in).
    golden_source: str = "samples"
    privacy: dict | None = None  # DP-SGD facts (manifest.DPTraining) when [train.privacy] trained the weights


def package_filename(spec: PackageSpec) -> str:
    return f"{spec.name}-{spec.target}.zip"


def _golden_arrays(
    spec: PackageSpec, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> dict[str, np.ndarray]:
    want = [t.name for t in inputs]
    if sorted(spec.golden_inputs) != sorted(want):
        raise PackageSpecError(
            f"golden_inputs has {sorted(spec.golden_inputs)} but the model inputs are {want}",
            "give one golden array per model input",
        )
    if len(spec.golden_outputs) != len(outputs):
        raise PackageSpecError(
            f"{len(spec.golden_outputs)} golden outputs for {len(outputs)} model outputs",
            "give one golden array per model output, in output order",
        )
    arrays: dict[str, np.ndarray] = {}
    pairs = [(f"input_{i}", t, spec.golden_inputs[t.name]) for i, t in enumerate(inputs)]
    pairs += [(f"output_{i}", t, arr) for i, (t, arr) in enumerate(zip(outputs, spec.golden_outputs))]
    for key, t, arr in pairs:
        arr = np.asarray(arr)
        if arr.dtype.name != t.dtype:
            raise PackageSpecError(
                f"golden {key} ('{t.name}') is {arr.dtype.name}, the model wants {t.dtype}",
                f"cast it with .astype(np.{t.dtype})",
            )
        # Axis 0 is the sample axis. A fixed batch (e.g. 1 for .ort) may hold a multiple of it:
        # verify runs the samples in chunks of that batch.
        dims_ok = (
            arr.ndim == len(t.shape)
            and (arr.ndim >= 1 or spec.golden_single_run)
            and all(
                not isinstance(d, int) or (n % d == 0 and n > 0 if axis == 0 else d == n)
                for axis, (d, n) in enumerate(zip(t.shape, arr.shape))
            )
        )
        if not dims_ok:
            raise PackageSpecError(
                f"golden {key} ('{t.name}') has shape {list(arr.shape)}, the model wants {t.shape}",
                "pass arrays with the model's shape (axis 0: samples, a multiple of a fixed batch)",
            )
        arrays[key] = arr
    batch = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(batch) > 1 and not spec.golden_single_run:
        raise PackageSpecError(
            f"golden arrays disagree on the number of samples: {sorted(batch)}",
            "give the same number of samples for every input and output",
        )
    return arrays


def _check_model_io(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """For .onnx, the spec's input/output names must be the graph's; an app binds them by name."""
    import onnx

    from toolchain.package.safezip import external_data_locations

    if external_data_locations(path):
        raise PackageSpecError(
            f"{path.name}: weights live in an external data file",
            "save the model as one file (external_data=False)",
        )
    graph = onnx.load(str(path), load_external_data=False).graph
    init = {t.name for t in graph.initializer}
    got_in = [v.name for v in graph.input if v.name not in init]
    got_out = [v.name for v in graph.output]
    if got_in != [t.name for t in inputs] or got_out != [t.name for t in outputs]:
        raise PackageSpecError(
            f"spec names inputs {[t.name for t in inputs]} / outputs {[t.name for t in outputs]} "
            f"but {path.name} has {got_in} / {got_out}",
            "describe the model's own inputs/outputs",
        )


def _check_extra_files(extra: dict[str, Path]) -> None:
    for name, path in extra.items():
        if not _EXTRA_NAME.match(name) or name in RESERVED_NAMES:
            raise PackageSpecError(
                f"extra file name {name!r} is not allowed",
                f"use a flat name of letters, digits, '.', '_', '-' not in {sorted(RESERVED_NAMES)}",
            )
        if not Path(path).is_file():
            raise missing_file(path, f"extra file {name!r}", "check the path", PackageSpecError)


def _base_manifest(spec: PackageSpec) -> dict[str, Any]:
    if spec.artifact_format not in ARTIFACT_NAMES:
        raise PackageSpecError(f"artifact_format {spec.artifact_format!r} unknown", "use 'onnx' or 'ort'")
    artifact = Path(spec.artifact)
    if not artifact.is_file():
        raise missing_file(artifact, "artifact", "build the model first", PackageSpecError)
    if artifact.suffix != f".{spec.artifact_format}":
        raise PackageSpecError(
            f"artifact {artifact.name} does not match artifact_format {spec.artifact_format!r}",
            f"pass a .{spec.artifact_format} file or fix artifact_format",
        )
    prof_name = spec.target_profile.get("name")
    if prof_name is not None and prof_name != spec.target:
        raise PackageSpecError(
            f"target is '{spec.target}' but target_profile is '{prof_name}'", "pass the matching profile"
        )
    try:
        return {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "name": spec.name,
            "target": spec.target,
            "artifact": ARTIFACT_NAMES[spec.artifact_format],
            "artifact_format": spec.artifact_format,
            "inputs": jsonable(spec.inputs, "inputs"),
            "outputs": jsonable(spec.outputs, "outputs"),
            "preprocessing": jsonable(spec.preprocessing, "preprocessing"),
            "labels": jsonable(spec.labels, "labels"),
            "metrics": jsonable(spec.metrics, "metrics"),
            "budgets": jsonable(spec.budgets, "budgets"),
            "target_profile": jsonable(spec.target_profile, "target_profile"),
            "versions": {str(k): str(v) for k, v in spec.versions.items()},
            "recipe_hash": spec.recipe_hash,
            "extra_files": sorted(spec.extra_files),
            "created_by": created_by(),
            "session": (session := session_config(spec.target_profile.get("runtime"), spec.metrics.get("thread_sweep"))),
            "runtime": runtime_record(session),
            **({"privacy": jsonable(spec.privacy, "privacy")} if spec.privacy is not None else {}),
        }
    except TypeError as err:
        raise PackageSpecError(
            f"spec holds data JSON cannot store: {err}", "pass plain numbers, strings, lists, dicts"
        ) from None


def _validated(data: dict[str, Any]) -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        raise PackageSpecError(format_validation_error(Manifest, err, "package spec")) from None


def _tensor_specs(data: dict[str, Any]) -> tuple[list[TensorSpec], list[TensorSpec]]:
    try:
        ins = [TensorSpec.model_validate(t) for t in data["inputs"]]
        outs = [TensorSpec.model_validate(t) for t in data["outputs"]]
    except ValidationError as err:
        raise PackageSpecError(
            format_validation_error(TensorSpec, err, "package spec inputs/outputs")
        ) from None
    for kind, specs in (("input", ins), ("output", outs)):
        names = [t.name for t in specs]
        if len(set(names)) != len(names) or not names:
            raise PackageSpecError(
                f"{kind} names {names} are empty or repeat", f"give each {kind} a unique name"
            )
    return ins, outs


def build_package(spec: PackageSpec, dest: Path, signing_key: Path | None = None) -> Path:
    """Write the package zip and return its path.

    `dest` ending in ".zip" is the zip's path; anything else is a folder that receives
    "<name>-<target>.zip". With `signing_key` (an Ed25519 PEM private key) the zip also holds
    manifest.sig. Raises PackageSpecError (BadInput, exit 2) for an inconsistent spec.
    """
    if signing_key is not None:
        from toolchain.package.keys import load_private_key

        key = load_private_key(Path(signing_key))  # a bad key fails before any work is done
    data = _base_manifest(spec)
    inputs, outputs = _tensor_specs(data)
    if spec.artifact_format == "onnx":
        _check_model_io(Path(spec.artifact), inputs, outputs)
    golden = _golden_arrays(spec, inputs, outputs)
    _check_extra_files(spec.extra_files)
    labels, n_out = spec.labels, outputs[0].shape[-1] if outputs[0].shape else None
    if labels and isinstance(n_out, int) and n_out != len(labels):
        raise PackageSpecError(
            f"{len(labels)} labels for an output of {n_out} classes", "give one label per class"
        )
    dest = Path(dest)
    zip_path = dest if dest.suffix == ".zip" else dest / package_filename(spec)

    with tempfile.TemporaryDirectory(prefix="edgeopt-pkg-") as tmp:
        artifact = Path(spec.artifact)
        if spec.artifact_format == "onnx":
            props = metadata_props_for(
                spec.name, spec.target, spec.recipe_hash, data["labels"], data["preprocessing"]
            )
            # Stamped before hashing, so files[model.onnx] is the hash of what ships.
            artifact = stamp_onnx_metadata(artifact, Path(tmp) / "model.onnx", props)
        data["golden"] = {
            "samples": int(golden["input_0"].shape[0]) if golden["input_0"].ndim else 1,
            "input_keys": {t.name: f"input_{i}" for i, t in enumerate(inputs)},
            "output_keys": {t.name: f"output_{i}" for i, t in enumerate(outputs)},
            "atol": float(spec.golden_atol),
            "rtol": float(spec.golden_rtol),
            "source": spec.golden_source,
        }
        entries: dict[str, bytes | Path] = {
            data["artifact"]: artifact,
            GOLDEN_NAME: npz_bytes(golden),
            SCHEMA_NAME: schema_bytes(),
            **{name: Path(p) for name, p in spec.extra_files.items()},
        }
        if spec.drift_reference is not None:
            entries[DRIFT_REFERENCE_NAME] = compact_json(spec.drift_reference, "drift_reference")
        # The model card is rendered from the manifest, so validate once without it to render it.
        data["files"] = {}
        entries[MODEL_CARD_NAME] = render_model_card(_validated(data)).encode()
        data["files"] = {name: _file_entry(src) for name, src in sorted(entries.items())}
        raw = manifest_bytes(_validated(data))
        entries[MANIFEST_NAME] = raw
        if signing_key is not None:
            entries[SIGNATURE_NAME] = key.sign(raw)
        return write_zip(zip_path, entries)


def _file_entry(src: bytes | Path) -> dict[str, Any]:
    if isinstance(src, bytes):
        return {"sha256": hashlib.sha256(src).hexdigest(), "bytes": len(src)}
    return {"sha256": sha256_file(src), "bytes": Path(src).stat().st_size}
