"""Read what `edgeopt drift` compares: a package (checked against its own manifest) and a live .npz."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.drift.reference import (
    DRIFT_REFERENCE_NAME,
    DRIFT_SCHEMA_VERSION,
    READABLE_SCHEMA_VERSIONS,
    SKIPPED_KINDS,
)
from toolchain.errors import BadInput, missing_file


def load_package(pkg: Path) -> tuple[Any, dict, bytes]:
    """(manifest, drift reference, model bytes) of a package whose listed files match their hashes."""
    from toolchain.package.safezip import open_zip, read_member
    from toolchain.package.verify import integrity_checks

    if not Path(pkg).is_file():
        raise missing_file(pkg, "package", "check the path")
    zf, infos = open_zip(Path(pkg))
    with zf:
        entries = {i.filename: read_member(zf, i.filename) for i in infos if not i.is_dir()}
    failed = [c for c in integrity_checks(entries) if c.status == "fail"]
    if failed:
        raise BadInput(f"{Path(pkg).name}: {failed[0].reason}", "re-download or rebuild the package")
    from toolchain.package.manifest import parse_manifest

    manifest = parse_manifest(entries["manifest.json"])
    if DRIFT_REFERENCE_NAME not in manifest.files:
        raise BadInput(f"{Path(pkg).name} has no drift reference ({DRIFT_REFERENCE_NAME})",
                       "rebuild it with `edgeopt run` or `edgeopt compress`, or `edgeopt package --data CALIBRATION.npz`")
    reference = json.loads(entries[DRIFT_REFERENCE_NAME])
    if reference.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        raise BadInput(f"{DRIFT_REFERENCE_NAME} has schema_version {reference.get('schema_version')!r}; "
                       f"this edgeopt reads {list(READABLE_SCHEMA_VERSIONS)} (writes {DRIFT_SCHEMA_VERSION})", "rebuild the package with this edgeopt")
    return manifest, reference, entries[manifest.artifact]


def _npz(path: Path) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise missing_file(path, "live data", "check the path")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise BadInput(f"{Path(path).name}: not a readable .npz ({err})",
                       "save it with numpy.savez(path, INPUT_NAME=array)") from None


def _check_shape(name: str, arr: np.ndarray, spec_shape: list) -> None:
    want = list(spec_shape[1:])
    ok = arr.ndim == len(spec_shape) and all(not isinstance(d, int) or d == n for d, n in zip(want, arr.shape[1:]))
    if not ok or arr.shape[0] < 1 or not np.issubdtype(arr.dtype, np.number):
        shown = ["N", *want]
        raise BadInput(f"live input {name!r} has shape {list(arr.shape)} ({arr.dtype}), the model wants {shown}",
                       "save one numeric array per input with samples on axis 0")


def load_live(path: Path, manifest, reference: dict | None = None) -> dict[str, np.ndarray]:
    """Input name -> array. A single-input model also accepts the key `x`. Inputs the reference
    skips (kind constant or state) may be left out; given, they are fed as they are."""
    arrays = _npz(path)
    skipped = {n for n, r in (reference or {}).get("inputs", {}).items() if r.get("kind") in SKIPPED_KINDS}
    out = {}
    for t in manifest.inputs:
        key = t.name if t.name in arrays else ("x" if len(manifest.inputs) == 1 and "x" in arrays else None)
        if key is None and t.name in skipped:
            continue
        if key is None:
            raise BadInput(f"{Path(path).name} has no array for input {t.name!r} (has: {sorted(arrays) or 'none'})",
                           f"save it with numpy.savez(path, {t.name}=array)")
        if t.name not in skipped:
            _check_shape(t.name, arrays[key], t.shape)
        elif not np.issubdtype(arrays[key].dtype, np.number) and arrays[key].dtype != np.bool_:
            raise BadInput(f"live input {t.name!r} is {arrays[key].dtype}, not numbers", "save the array the model takes")
        out[t.name] = arrays[key].astype(t.dtype, copy=False)
    return out


def run_outputs(model: bytes, inputs: dict[str, np.ndarray], reference: dict,
                manifest=None) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The package's model on the live inputs, on the engine and options its manifest names
    (ONNX Runtime's defaults without a manifest): output name -> samples, or (None, why) when an
    input the model needs was left out (a state or constant input)."""
    from toolchain.data.feeds import Feeds
    from toolchain.drift.model import run_feeds
    from toolchain.package.verify import _runtime_options
    from toolchain.runtime import runtime_for

    sess = runtime_for(_runtime_options(manifest) if manifest is not None else None).load(model)
    missing = [i.name for i in sess.get_inputs() if i.name not in inputs]
    if missing:
        kind = reference["inputs"].get(missing[0], {}).get("kind", "input")
        return None, f"outputs not compared: the live data has no array for {kind} input {missing[0]!r} the model needs"
    axes = {n: reference["inputs"].get(n, {}).get("batch_axis", 0) for n in inputs}
    axes = {n: None if np.ndim(a) == 0 else axes[n] for n, a in inputs.items()}
    outputs = run_feeds(sess, Feeds(inputs, axes, names=tuple(i.name for i in sess.get_inputs())))
    return {n: a for n, a in outputs.items() if a is not None}, None
