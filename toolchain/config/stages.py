"""The configs of the stages `edgeopt run` chains: one frozen, strict model per stage.

They live here, not beside the stage code, so the recipe and target schemas (and anything
that only reads configuration) import no stage: `toolchain.config` is a leaf. Where a stage
config is a view of a profile section, it is derived from that section's fields (one statement
of each field).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from toolchain.config.base import Strict
from toolchain.config.golden import DEFAULT_GOLDEN, GoldenSource
from toolchain.config.target import ArtifactSpec, BenchmarkSpec, QuantizeScheme, RuntimeOptions, TargetProfile


class PrivacyConfig(Strict):
    """[train.privacy]: DP-SGD (Opacus) for training and every fine-tune after pruning, under one
    (epsilon, delta) budget for the whole recipe (docs/privacy.md)."""

    epsilon: float = Field(gt=0, description="privacy budget ε spent over training plus all fine-tunes, > 0")
    delta: float = Field(gt=0, lt=1, description="δ, in (0, 1/N) with N the training rows (e.g. 1e-5)")
    max_grad_norm: float = Field(gt=0, description="per-sample gradient clipping norm C, > 0")
    fix_modules: bool = Field(False, description=(
        "replace layers DP-SGD cannot train (BatchNorm -> GroupNorm) through Opacus's ModuleValidator.fix"))
    accountant: Literal["rdp", "prv"] = Field("rdp", description="privacy accountant (Rényi DP or PRV)")


class TrainConfig(Strict):
    epochs: int = Field(15, ge=0, description="passes over the training split")
    batch_size: int = Field(64, ge=1, description="samples per optimizer step")
    optimizer: Literal["adam", "sgd"] = Field("adam", description="optimizer")
    lr: float = Field(3e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay")
    seed: int = Field(0, description="seeds initial weights and batch order")
    privacy: PrivacyConfig | None = Field(None, description="differentially private training (DP-SGD); off when absent")


class PruneConfig(Strict):
    kind: Literal["none", "magnitude", "structured"] = Field("magnitude", description=(
        "`magnitude`: global unstructured (smaller zipped file, same latency); `structured`: whole channels"))
    amount: float = Field(0.3, gt=0, lt=1, description="fraction of weights (magnitude) or channels (structured) to remove, in (0, 1)")
    finetune_epochs: int = Field(3, ge=0, description="fine-tune epochs after each pruning step")
    finetune_lr: float = Field(1e-3, gt=0, description="fine-tune learning rate")
    # The fields below apply to kind = "structured" only.
    # L2 magnitude is Torch-Pruning's default and needs no data; taylor needs a loss gradient.
    criterion: Literal["l1", "l2", "bn_scale", "taylor", "random"] = Field(
        "l2", description="structured: how channels are scored")
    # per_layer: every coupled group loses `amount` of its channels (predictable shapes);
    # global: lowest-scoring channels anywhere (can thin unimportant layers much more).
    scope: Literal["per_layer", "global"] = Field(
        "per_layer", description="structured: `amount` of every coupled group, or the lowest scores anywhere")
    steps: int = Field(1, ge=1, le=20, description="iterative schedule: cut amount/steps, fine-tune, repeat")
    round_to: int = Field(1, ge=1, description="keep channel counts multiples of this (16 keeps x86 int8 depthwise kernels on their fast path)")
    ignored_layers: list[str] = Field(default_factory=list, description="module names never cut; the classifier always is")
    drop_blocks: int = Field(0, ge=0, description=(
        "also remove this many whole blocks whose output keeps the input's shape (e.g. residual blocks), "
        "least harmful to the loss first, before cutting channels: fewer nodes, not only thinner ones"))
    distill: float = Field(0.0, ge=0, le=1, description=(
        "weight of knowledge distillation from the unpruned model in fine-tuning (0: off; classifiers only)"))
    distill_temperature: float = Field(4.0, gt=0, description="softmax temperature of the distillation targets")


class ExportConfig(Strict):
    # 18 is what torch 2.13's dynamo exporter writes natively (asked for 17 it may still write 18);
    # other values go through onnx's version converter, then are verified.
    opset: int = Field(18, ge=7, le=23, description="ONNX default-domain opset to emit (verified after export)")
    # ORT's transformer optimizer recognises the attention the TorchScript exporter writes, not the
    # dynamo exporter's (measured, 2-layer encoder: 2 Attention fused vs 0): transformers set "torchscript".
    exporter: Literal["dynamo", "torchscript"] = Field("dynamo", description=(
        "torch exporter: `dynamo` (torch's default) or `torchscript` (graphs ORT's transformer optimizer fuses)"))
    parity_atol: float = Field(1e-4, gt=0, description="absolute tolerance of ORT vs PyTorch outputs")
    parity_rtol: float = Field(1e-3, ge=0, description="relative tolerance of ORT vs PyTorch outputs")
    parity_samples: int = Field(128, ge=1, description="held-out samples compared against PyTorch")


class Int8WeightsConfig(Strict):
    # A weight saves 3 bytes per element and costs a 4-byte scale per output channel plus a Cast
    # and a Mul (~40 bytes with their names): tiny weights, or ones with one input per channel,
    # would grow the file.
    min_saved_bytes: int = Field(64, ge=0, description="quantize a weight only if it saves at least this many bytes")
    verify: bool = True  # two ORT session loads and one run: cheap next to a benchmark


# The [artifact] keys the converter reads; the others (ship, ship_tie) choose among candidates.
CONVERTER_KEYS = ("format", "shapes", "fixed_batch", "offline_optimization_level", "compact")

# convert's config: the target's platform plus the converter's [artifact] keys, derived from
# ArtifactSpec so each field (type, default, description) is stated once.
ConvertConfig = create_model(
    "ConvertConfig", __base__=Strict,
    platform=(TargetProfile.model_fields["platform"].annotation, Field(description=TargetProfile.model_fields["platform"].description)),
    **{key: (ArtifactSpec.model_fields[key].annotation, ArtifactSpec.model_fields[key]) for key in CONVERTER_KEYS},
    # [runtime] disabled_optimizers: an .onnx optimized offline with them would bake in what the session skips
    disabled_optimizers=(list[str], Field(default_factory=list, description="ORT optimizers the offline optimization skips")),
)


CALIBRATION_DATA_HELP = (
    'what static quantization calibrates on: "train" (the training split), "synthetic" (inputs drawn from '
    "the training split's per-channel statistics) or the path of an .npz of public data holding the model's "
    "inputs; whichever it is, it is a non-private input to quantization")


class QuantizeConfig(Strict):
    scheme: QuantizeScheme = QuantizeScheme()
    calibration_samples: int = Field(256, ge=1)
    # ORT's calibration session holds a whole batch's activations: at 32 a 14 MB MobileNetV2 (224 px)
    # peaked at 3.9 GB RSS, at 4 at 0.97 GB (and calibrated faster: 8.7 vs 14.1 s). Min/max ranges
    # merge exactly across batches, so the batch size does not change a minmax-calibrated model.
    calibration_batch: int = Field(4, ge=1, description="samples per calibration batch (dynamic-batch models)")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in fp32")
    seed: int = 0
    calibration_data: str = Field("train", min_length=1, description=CALIBRATION_DATA_HELP)


class PackageConfig(Strict):
    """`[package]` of a recipe (and `edgeopt compress --golden`): what the package may carry."""

    golden: GoldenSource = Field(DEFAULT_GOLDEN, description=(
        'golden smoke inputs: "synthetic" draws them from the training data\'s per-channel statistics '
        '(no data rows in the package); "samples" ships real evaluation samples (an explicit opt-in, '
        "recorded in the manifest and the model card)"))


class BenchConfig(Strict):
    runtime: RuntimeOptions
    spec: BenchmarkSpec
    memory_repeats: int = Field(3, ge=1)
    # label -> session options for that candidate's memory probe only (latency always uses
    # `runtime`). The fp32 reference is what a user gets from ORT by default, not the profile.
    memory_runtime: dict[str, RuntimeOptions] = Field(default_factory=dict)
    # label -> runtime options for everything measured of that candidate (an OpenVINO bf16
    # candidate is the fp32 file compiled at another precision: pipeline/precision.py).
    candidate_runtime: dict[str, RuntimeOptions] = Field(default_factory=dict)

    def runtime_for_label(self, label: str) -> RuntimeOptions:
        return self.candidate_runtime.get(label, self.runtime)
