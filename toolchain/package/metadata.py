"""Mirror the manifest's key facts into an ONNX model's metadata_props.

An app that only kept model.onnx (and threw the zip away) can still tell what the model is
and how to feed it: ORT exposes these as `session.get_modelmeta().custom_metadata_map`.
quantize_static rewrites producer_name, so the stamp is applied after quantization, and the
package builder re-applies the same stamp (a no-op when already present) before hashing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import toolchain
from toolchain.errors import missing_file
from toolchain.fsio import atomic_path
from toolchain.package.errors import PackageSpecError

PRODUCER_NAME = "edgeopt"


def created_by() -> str:
    return f"edgeopt {toolchain.__version__}"


def metadata_props_for(
    name: str, target: str, recipe_hash: str, labels: list[str], preprocessing: Mapping[str, Any]
) -> dict[str, str]:
    """The props build_package stamps; call this in the quantize stage to stamp the same ones."""

    def as_json(obj: Any) -> str:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    from pydantic import ValidationError

    from toolchain.config.base import format_validation_error
    from toolchain.package.manifest import Preprocessing, jsonable

    try:  # normalized (defaults filled in) so the stamp matches manifest.json's preprocessing exactly
        pre = Preprocessing.model_validate(jsonable(dict(preprocessing), "preprocessing")).model_dump(
            mode="json"
        )
    except ValidationError as err:
        raise PackageSpecError(format_validation_error(Preprocessing, err, "preprocessing")) from None
    return {
        "name": name,
        "target": target,
        "recipe_hash": recipe_hash,
        "labels": as_json(list(labels)),
        "preprocessing": as_json(pre),
        "created_by": created_by(),
    }


def stamp_onnx_metadata(src: Path, dest: Path, props: Mapping[str, str]) -> Path:
    """Write a copy of `src` to `dest` with `props` set in metadata_props; `src` is never touched.

    Existing props with other keys are kept in their order; a key we set replaces its old
    value in place, so stamping twice with the same props yields identical bytes.
    """
    import onnx

    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise missing_file(src, "ONNX model", "check the artifact path", PackageSpecError)
    if dest.exists() and dest.resolve() == src.resolve():
        raise PackageSpecError(
            f"stamp destination is the source itself: {dest}", "pass a different dest path"
        )
    bad = [k for k, v in props.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise PackageSpecError(
            f"metadata props must map str to str; bad keys: {bad}", "json.dumps non-strings"
        )
    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError, onnx raises others; all mean "not a model"
        raise PackageSpecError(f"{src}: not a readable ONNX model ({err})", "pass a .onnx file") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise PackageSpecError(
            f"{src}: weights live in an external data file",
            "export with external_data=False so the model is one file",
        )
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    model.producer_name = PRODUCER_NAME
    model.producer_version = toolchain.__version__
    with atomic_path(dest) as tmp:
        tmp.write_bytes(model.SerializeToString(deterministic=True))
    return dest


def read_onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
