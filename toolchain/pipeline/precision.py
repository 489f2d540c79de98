"""Engine-specific candidate forms, kept apart from the ship rule (pipeline/ship.py weighs them
like any other candidate): an OpenVINO profile measures the fp32 artifact compiled at bf16 too,
and a candidate its engine cannot compile is skipped with the reason, while the others ship.

bf16 is one file (the fp32 artifact) compiled with another precision hint: a candidate label
whose benchmark, fidelity and package use `candidate_runtimes`' options instead of the profile's.
It is measured only where the CPU has bf16 compute (else OpenVINO silently runs f32 and the
"bf16" timing would be a second fp32 one) and ships only if the accuracy/fidelity budgets hold
(measured: OpenVINO bf16 kept 30% top-1 agreement with fp32 on MobileNetV2, issue 14).
"""

from __future__ import annotations

from toolchain.config.target import RuntimeOptions, TargetProfile
from toolchain.errors import ModelLoadError

BF16 = "fp32_bf16"  # benchmark label: the fp32 artifact compiled with INFERENCE_PRECISION_HINT = bf16


def bf16_applies(profile: TargetProfile) -> bool:
    from toolchain.hostinfo import has_bf16

    rt = profile.runtime
    return rt.engine == "openvino" and rt.bf16_candidate and rt.inference_precision == "f32" and has_bf16()


def candidate_runtimes(profile: TargetProfile, labels) -> dict[str, RuntimeOptions]:
    """label -> the runtime options it is measured and shipped with, where not the profile's."""
    if BF16 in labels:
        return {BF16: profile.runtime.model_copy(update={"inference_precision": "bf16"})}
    return {}


def runtime_of(profile: TargetProfile, label: str) -> RuntimeOptions:
    return candidate_runtimes(profile, [label]).get(label, profile.runtime)


def compilable(paths: dict[str, object], profile: TargetProfile) -> dict[str, str]:
    """label -> why its engine cannot load it, for each candidate that fails (ORT profiles: none
    are tried here, their convert stage already loaded each file). The fp32 reference must load:
    every ratio is measured against it, so its failure is the caller's BadInput."""
    from toolchain.runtime import runtime_for

    if profile.runtime.engine == "onnxruntime":
        return {}
    skipped = {}
    for label, path in paths.items():
        try:
            runtime_for(runtime_of(profile, label)).load(path)
        except ModelLoadError as err:
            if label == "fp32":
                raise
            skipped[label] = err.problem
    return skipped
