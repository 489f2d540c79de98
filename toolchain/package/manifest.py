"""The package manifest: a pydantic model, its JSON Schema, and its canonical bytes.

manifest.json is the one file an app must trust: it lists the sha256 of every other file,
and the signature (manifest.sig) covers exactly its bytes. So its serialization must be
canonical: sorted keys, fixed indentation, ASCII only, no NaN (JSON has none; a strict
parser in an app would reject the file).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolchain.config.base import format_validation_error

# 2 added `session`, 3 added `golden.source`; version-1 and -2 manifests still load (and verify).
MANIFEST_SCHEMA_VERSION = 3

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
SCHEMA_NAME = "manifest.schema.json"
GOLDEN_NAME = "golden.npz"
MODEL_CARD_NAME = "model_card.md"
DRIFT_REFERENCE_NAME = "drift_reference.json"  # input/output statistics for `edgeopt drift` (docs/drift.md)
ARTIFACT_NAMES = {"onnx": "model.onnx", "ort": "model.ort"}
# Names build_package writes itself; extra files may not shadow them.
RESERVED_NAMES = frozenset(
    {MANIFEST_NAME, SIGNATURE_NAME, SCHEMA_NAME, GOLDEN_NAME, MODEL_CARD_NAME, DRIFT_REFERENCE_NAME,
     *ARTIFACT_NAMES.values()}
)

# numpy dtype names an app can map to its own tensor types without guessing.
DType = Literal[
    "float32",
    "float16",
    "float64",
    "bfloat16",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "bool",
]

# Default smoke-run tolerance: the stored outputs come from the same artifact run by ORT on
# x86, so only kernel-order rounding separates two runs; 1e-4 absorbs that even for int8 models
# while still catching a swapped or tampered model.
DEFAULT_GOLDEN_ATOL = 1e-4
DEFAULT_GOLDEN_RTOL = 1e-4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TensorSpec(_Strict):
    name: str = Field(min_length=1)
    dtype: DType
    shape: list[int | str] = Field(
        description="ints are fixed sizes; strings name symbolic dims such as 'batch'"
    )


class Preprocessing(_Strict):
    """How an app turns raw values into the model input:
    input = ((raw * scale + offset) - mean) / std, as dtype; mean/std (when given) apply per
    channel or feature (axis 1), e.g. standardization statistics of tabular data."""

    layout: str = Field("NCHW", description="axis order of the model input, e.g. NCHW, NHWC, NC")
    dtype: DType = "float32"
    scale: float = 1.0
    offset: float = 0.0
    mean: list[float] | None = Field(None, description="per channel/feature, subtracted after scale/offset")
    std: list[float] | None = Field(None, description="per channel/feature, divides after subtracting mean")
    channels: str | None = Field(None, description="channel order of image inputs, e.g. RGB or BGR")
    features: list[str] | None = Field(None, description="feature names in input order (tabular inputs)")
    description: str = ""


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


GoldenSource = Literal["synthetic", "random", "samples"]


class Golden(_Strict):
    """golden.npz holds input_0..input_{n-1} (manifest input order) and output_0.. (output order)."""

    file: Literal["golden.npz"] = GOLDEN_NAME
    samples: int = Field(ge=1)
    input_keys: dict[str, str] = Field(description="model input name -> key in golden.npz")
    output_keys: dict[str, str] = Field(description="model output name -> key in golden.npz")
    atol: float = Field(DEFAULT_GOLDEN_ATOL, ge=0)
    rtol: float = Field(DEFAULT_GOLDEN_RTOL, ge=0)
    source: GoldenSource | None = Field(None, description=(
        "schema_version 3: where the golden inputs come from: synthetic (drawn from per-channel statistics "
        "of the training data), random (seeded, no data known) or samples (real evaluation samples, opted in)"))


class SessionConfig(_Strict):
    """The ONNX Runtime session options the build measured this artifact with: what an app should
    set. A thread count is a guess until measured (on the 2-core reference machine 2 threads made
    digits 1.55x slower at batch 1 yet resnet-small 1.35x faster at batch 8), so after a thread
    sweep the counts are the measured fastest per batch size, not the profile's."""

    engine: Literal["onnxruntime", "openvino"] = Field("onnxruntime", description="the engine that runs the artifact")
    inference_precision: Literal["f32", "bf16"] = Field("f32", description="openvino: the precision hint it was measured at")
    graph_optimization_level: Literal["disable", "basic", "extended", "all"]
    intra_op_threads: int = Field(ge=0, description="threads for the smallest benchmarked batch size (0: ORT's default)")
    intra_op_threads_by_batch: dict[str, int] = Field(
        description="batch size -> fastest measured intra-op thread count; empty when not measured"
    )
    inter_op_threads: int = Field(ge=0)
    enable_cpu_mem_arena: bool
    enable_mem_pattern: bool
    disabled_optimizers: list[str] = Field(default_factory=list, description=(
        'onnxruntime: optimizers skipped (session config "optimization.disable_specified_optimizers")'))
    threads_from: Literal["thread_sweep", "target_profile"] = Field(
        description="whether the thread counts were measured on the build machine or taken from the profile"
    )


class RuntimeRecord(_Strict):
    """The engine the metrics were measured on: what `edgeopt verify` loads the artifact with."""

    name: Literal["onnxruntime", "openvino"]
    version: str
    settings: dict[str, Any] = Field(description="session options (onnxruntime) or compile_model properties (openvino)")


class DPTraining(_Strict):
    """How the shipped weights were trained with differential privacy ([train.privacy]): the
    accountant's spent (epsilon, delta) covers training and every fine-tune after pruning."""

    mechanism: Literal["DP-SGD (Opacus)"]
    epsilon: float = Field(ge=0, description="spent epsilon over all DP phases (the accountant's number)")
    target_epsilon: float = Field(gt=0, description="the recipe's budget; epsilon never exceeds it")
    delta: float = Field(gt=0, lt=1)
    noise_multiplier: float = Field(gt=0, description="Gaussian noise std / max_grad_norm, every step")
    max_grad_norm: float = Field(gt=0, description="per-sample gradient clipping norm")
    sample_rate: float = Field(gt=0, le=1, description="Poisson sampling rate of a batch")
    steps: int = Field(ge=0, description="noisy steps over training and all fine-tunes")
    accountant: Literal["rdp", "prv"]


class Manifest(_Strict):
    schema_version: Literal[1, 2, 3]
    name: str = Field(min_length=1)
    target: str = Field(min_length=1)
    artifact: Literal["model.onnx", "model.ort"]
    artifact_format: Literal["onnx", "ort"]
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)
    preprocessing: Preprocessing
    labels: list[str]
    metrics: dict[str, Any]
    budgets: dict[str, Any]
    target_profile: dict[str, Any]
    versions: dict[str, str]
    recipe_hash: str
    golden: Golden
    extra_files: list[str] = Field(description="names of the extra files, each also listed in files")
    files: dict[str, FileEntry] = Field(description="every zip entry except manifest.json and manifest.sig")
    created_by: str
    session: SessionConfig | None = Field(None, description="schema_version 2: the session options to use")
    runtime: RuntimeRecord | None = Field(None, description="the engine, its version and settings (absent before issue 14)")
    privacy: DPTraining | None = Field(None, description="present when the weights were trained with DP-SGD")

    @model_validator(mode="after")
    def _session_from_version_2(self) -> Manifest:
        if self.schema_version >= 2 and self.session is None:
            raise ValueError("schema_version 2 manifests must give `session`")
        if self.schema_version >= 3 and self.golden.source is None:
            raise ValueError("schema_version 3 manifests must give `golden.source`")
        return self


def jsonable(obj: Any, where: str = "value") -> Any:
    """Plain JSON data from what callers hand us (numpy scalars, tuples, Paths, NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    if isinstance(obj, float):
        # JSON has no NaN/Infinity; null says "not measured" and keeps the file parseable.
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return obj.as_posix()
    item = getattr(obj, "item", None)  # numpy scalars and 0-d arrays
    if callable(item) and getattr(obj, "ndim", 0) == 0:
        return jsonable(item(), where)
    raise TypeError(f"{where}: cannot store {type(obj).__name__} in the manifest")


def canonical_bytes(data: Any) -> bytes:
    """The one serialization of manifest.json (and the shipped schema): same data, same bytes."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n").encode()


def compact_json(data: Any, where: str) -> bytes:
    """Deterministic bytes for data files (e.g. the drift reference): sorted keys, no spaces."""
    return (json.dumps(jsonable(data, where), sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def manifest_bytes(manifest: Manifest) -> bytes:
    data = manifest.model_dump(mode="json")
    if data.get("privacy") is None:  # non-private builds keep the bytes they had before the field existed
        data.pop("privacy", None)
    return canonical_bytes(data)


def parse_manifest(raw: bytes, source: str = MANIFEST_NAME) -> Manifest:
    """Parse and schema-check manifest bytes. Raises ValueError with one readable line."""
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise ValueError(f"{source}: not valid JSON") from None
        raise ValueError(format_validation_error(Manifest, err, source)) from None


def manifest_json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgeopt package manifest"
    return schema


def schema_bytes() -> bytes:
    return canonical_bytes(manifest_json_schema())
