"""Target profiles: declarative descriptions of a deployment device, one TOML file each.

A user adds a device by dropping a file into `targets/` or a directory passed as
`--targets-dir`; the file's stem is the target's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from toolchain.config.base import Strict, read_toml, validate
from toolchain.config.budgets import Budgets
from toolchain.config.device import DeviceFigures
from toolchain.config.drift import DriftSettings
from toolchain.errors import BadInput
from toolchain.resources import bundled_dir

TARGET_SCHEMA_VERSION = 1
# Inference engines a profile can name (toolchain/runtime: one module each; docs/runtimes.md).
ENGINES = ("onnxruntime", "openvino")


class RuntimeOptions(Strict):
    """The engine and its session options; they decide both speed and memory on the device."""

    engine: Literal["onnxruntime", "openvino"] = Field(
        "onnxruntime", description="inference engine that runs the artifact (openvino needs the `openvino` extra)")
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="graph optimizations ORT applies when it creates the session")
    intra_op_threads: int = Field(1, ge=0, description="threads inside one op (0: ORT's choice) for benchmarks and the package")
    inter_op_threads: int = Field(1, ge=0, description="threads running independent ops in parallel (0: ORT's choice)")
    enable_cpu_mem_arena: bool = Field(True, description="ORT's memory arena: fewer allocations, more resident memory")
    enable_mem_pattern: bool = Field(True, description="plan buffers from the first run's allocation pattern")
    # ORT session optimizers to skip (session config "optimization.disable_specified_optimizers"),
    # both when the convert stage optimizes offline and when a session loads the artifact.
    disabled_optimizers: tuple[str, ...] = Field((), description=(
        "onnxruntime: graph optimizers to skip by name, e.g. SkipLayerNormFusion (offline and at load time)"))
    # OpenVINO's CPU default is bf16 wherever the CPU has it, even for fp32 models (measured on an
    # AVX512-BF16 EPYC: MobileNetV2 top-1 agreement with fp32 30%), so f32 is explicit here and bf16
    # is a candidate the benchmark measures and the budgets admit (docs/runtimes.md).
    inference_precision: Literal["f32", "bf16"] = Field(
        "f32", description="openvino: INFERENCE_PRECISION_HINT the artifact is compiled with")
    bf16_candidate: bool = Field(True, description=(
        "openvino: also measure the fp32 artifact compiled at bf16, where the CPU has AVX512-BF16 or AMX"))

    @field_validator("disabled_optimizers", mode="before")
    @classmethod
    def _names_as_tuple(cls, names):  # a TOML array is a list; a tuple keeps the options hashable (cached)
        return tuple(names) if isinstance(names, list) else names

    @model_validator(mode="after")
    def _precision_needs_openvino(self) -> RuntimeOptions:
        if self.engine != "openvino" and self.inference_precision != "f32":
            raise ValueError("inference_precision = 'bf16' needs engine = 'openvino'")
        if self.engine != "onnxruntime" and self.disabled_optimizers:
            raise ValueError("disabled_optimizers names ONNX Runtime optimizers: it needs engine = 'onnxruntime'")
        return self


class QuantizeScheme(Strict):
    """How to quantize for this device. `format = "none"` keeps fp32."""

    format: Literal["qdq", "qoperator", "dynamic", "none"] = Field(
        "qdq", description="static QDQ, static QOperator, dynamic (weights only, activations at run time) or none (fp32)")
    activation_type: Literal["int8", "uint8"] = Field("int8", description="integer type of quantized activations")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="integer type of quantized weights")
    per_channel: bool = Field(True, description="one weight scale per output channel instead of one per tensor")
    reduce_range: bool = Field(False, description="7-bit weights, for x86 CPUs without VNNI whose int8 GEMM can saturate")
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="how activation ranges are chosen from the calibration samples")
    # An image stem (e.g. 3x3x3 over RGB) has K = 27: int8 GEMM pads it and gains nothing, while
    # fp32 has a dedicated stem kernel (measured, x86 U8S8, MobileNetV2 224 px: 1.46x vs 1.28x over fp32).
    fp32_stem: bool = Field(
        False, description="convs that read the model input directly and have at most 4 input channels stay fp32"
    )
    # ORT's transformer optimizer before quantizing (stages/transformer_fusion.py): one Attention op
    # per layer instead of ~20, then QAttention / int8 MatMuls. "auto": when the graph has attention.
    fuse_transformer: bool | Literal["auto"] = Field("auto", description=(
        "fuse attention, LayerNorm, GELU and embeddings with ORT's transformer optimizer before quantizing "
        "(`auto`: when the graph has attention)"))


class ArtifactSpec(Strict):
    """What file the target gets and which measured candidate ships."""

    format: Literal["onnx", "ort"] = Field(
        "onnx", description="`onnx` (offline-optimized, full ORT) or `ort` (ORT Mobile; needs shapes = fixed)")
    shapes: Literal["dynamic-batch", "fixed"] = Field(
        "dynamic-batch", description="keep the batch dimension symbolic, or fix it to `fixed_batch`")
    fixed_batch: int = Field(1, ge=1, description="batch size baked in when shapes = fixed")
    offline_optimization_level: Literal["disable", "basic", "extended", "all"] = Field(
        "extended", description="optimization baked into an .onnx artifact (`all` adds layouts tuned to the build CPU)")
    compact: bool = Field(True, description="short names, no value_info, shared zero points; outputs bit-identical")
    # Which measured candidate becomes the shipped artifact. "quantized": always the [quantize]
    # result. "fastest": the lowest batch-1 p50 among the compressed candidates that pass every
    # budget -- after heavy structured pruning the narrow network can be faster in fp32 than in
    # int8 (measured: 0.121 vs 0.163 ms, shapes-mobilenet-structured, 64 px, 1 thread).
    ship: Literal["quantized", "fastest"] = Field("quantized", description=(
        "`quantized`: the [quantize] result ships; `fastest`: the fastest compressed candidate that passes every budget"
        " (docs/shipping.md)"))
    # With ship = "fastest", candidates within this fraction of the fastest p50 count as equally
    # fast, and of those, the ones within it of the smallest as equally small; among those the
    # first of int8, pruned fp32, int8-weights ships (pipeline/ship.py PREFERENCE). A timing wobble
    # between two equal forms must not decide which file an app downloads: int8 weights with fp32
    # compute run the same graph as the fp32 model at a third of its bytes, and digits' int8 and
    # int8-weights files are 0.5% apart in bytes and about as fast.
    ship_tie: float = Field(0.05, ge=0, lt=1, description="p50 and bytes margin within which candidates count as equal")
    # Scheme choices whose winner depends on the model (ResNet-18 at 224 px lost a third of its
    # int8 speedup to cpu-server's fp32 stem, MobileNetV2 gained from it): with ship = "fastest"
    # each key listed here is also built flipped, as its own cached quantize + convert, and
    # weighed like any candidate (pipeline/variants.py). A flip that would not change the graph
    # (no stem conv) or that the recipe's [quantize] pins is not built.
    # "ort_uint8_qdq" is the peer edgeopt must never be slower than: ORT's own quantize_static
    # uint8 QDQ with its defaults (per-tensor, int8 stem), built unless a candidate already is it.
    scheme_candidates: list[Literal["fp32_stem", "per_channel", "format", "ort_uint8_qdq"]] = Field(
        default_factory=list, description=(
            "[quantize] keys also built flipped and weighed when ship = \"fastest\" (`format`: QDQ vs dynamic, "
            "models with attention only); `ort_uint8_qdq`: also ONNX Runtime's own uint8 QDQ scheme"))


class BenchmarkSpec(Strict):
    """The latency protocol: warm-up, then interleaved rounds of timed runs."""

    batch_sizes: list[int] = Field(default_factory=lambda: [1], min_length=1, description="batch sizes timed; 1 is gated")
    warmup_runs: int = Field(10, ge=0, description="untimed runs before timing (allocation, lazy kernel setup)")
    runs: int = Field(200, ge=5, description="timed runs per batch size, split over interleaved rounds")
    rounds: int = Field(5, ge=1, description="interleaved rounds: candidates alternate so drift hits all")
    max_seconds: float = Field(20.0, gt=0, description="stop timing a candidate after this long")
    thread_sweep: list[int] = Field(
        default_factory=list,
        description="also time every artifact at these intra-op thread counts, one live session at a time (empty: off)",
    )

    @field_validator("thread_sweep")
    @classmethod
    def _positive_counts(cls, counts: list[int]) -> list[int]:
        if any(n < 1 for n in counts):
            raise ValueError("thread counts must be >= 1")
        return sorted(set(counts))


class TargetProfile(Strict):
    schema_version: Literal[1] = Field(description="profile format version")
    name: str = Field(description="the target's name; must equal the file stem")
    description: str = Field("", description="one line shown by `edgeopt targets`")
    platform: Literal["amd64", "arm"] = Field(description="CPU family, passed to the .ort converter (`--target_platform`)")
    runtime: RuntimeOptions = Field(RuntimeOptions(), description="ONNX Runtime session options on the device")
    quantize: QuantizeScheme = Field(QuantizeScheme(), description="how to quantize for this device")
    artifact: ArtifactSpec = Field(ArtifactSpec(), description="the artifact file and the ship rule")
    benchmark: BenchmarkSpec = Field(BenchmarkSpec(), description="the latency protocol")
    budgets: Budgets = Field(Budgets(), description="default budgets for this device; a recipe's `[budgets]` override them")
    drift: DriftSettings = Field(DriftSettings(), description=(
        "drift thresholds recorded in this device's packages (`edgeopt drift` flags and budgets files override them) "
        "and the drift reference's privacy floor"))
    device: DeviceFigures | None = Field(None, description=(  # for estimates only; never reported as measurements
        "peak compute and bandwidth for `edgeopt mobile-report`'s latency estimate (never used as a measurement)"))
    price_per_hour: float | None = Field(
        None, gt=0, description="cost of one device/instance hour (any currency); reports then show cost per million inferences"
    )

    @model_validator(mode="after")
    def _ort_needs_fixed_shapes(self) -> TargetProfile:
        # Fixed-shape .ort files let the mobile runtime plan memory once; we do not ship
        # dynamic-shape .ort files because ORT Mobile's reduced build optimizes for fixed ones.
        if self.artifact.format == "ort" and self.artifact.shapes != "fixed":
            raise ValueError("artifact.format = 'ort' requires artifact.shapes = 'fixed'")
        return self


def value_sources(model: Strict, prefix: str = "") -> dict[str, str]:
    """dotted key -> "file" when the profile set it, "default" when the schema filled it in."""
    sources: dict[str, str] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, Strict):
            nested = value_sources(value, key + ".")
            if name not in model.model_fields_set:
                nested = {k: "default" for k in nested}
            sources.update(nested)
        else:
            sources[key] = "file" if name in model.model_fields_set else "default"
    return sources


def target_dirs(extra: Path | None = None) -> list[Path]:
    dirs = [bundled_dir("targets")]
    if extra is not None:
        if not Path(extra).is_dir():
            raise BadInput(f"targets directory not found: {extra}", "pass an existing directory to --targets-dir")
        dirs.insert(0, Path(extra))  # user profiles shadow bundled ones of the same name
    return dirs


def available_targets(extra: Path | None = None) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in reversed(target_dirs(extra)):
        for path in sorted(d.glob("*.toml")):
            found[path.stem] = path
    return dict(sorted(found.items()))


def load_target_file(path: Path) -> TargetProfile:
    data = read_toml(path, "target profile")
    profile = validate(TargetProfile, data, str(path))
    if profile.name != path.stem:
        raise BadInput(
            f"{path}: name = '{profile.name}' but the file is '{path.name}'",
            f"set name = '{path.stem}' or rename the file",
        )
    return profile


def load_target(name: str, extra: Path | None = None) -> TargetProfile:
    known = available_targets(extra)
    if name not in known:
        raise BadInput(f"unknown target '{name}'", f"known: {', '.join(known) or '(none)'}")
    return load_target_file(known[name])
