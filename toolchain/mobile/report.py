"""One document with every static mobile analysis of a model for a target profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.errors import BadInput


def mobile_report(model: Path, profile, device_name: str | None = None) -> dict[str, Any]:
    """The three analyses of `model` (.onnx) for `profile`, as one JSON-able document."""
    from toolchain.mobile.ep_coverage import check_model
    from toolchain.mobile.estimate import REFERENCE_DEVICES, estimate_latency
    from toolchain.mobile.memory_estimate import check_analysable, estimate_memory, load_onnx

    if device_name is not None:
        if device_name not in REFERENCE_DEVICES:
            raise BadInput(f"unknown device '{device_name}'", f"known: {', '.join(REFERENCE_DEVICES)}")
        device, device_from = REFERENCE_DEVICES[device_name], f"reference figures '{device_name}'"
    else:  # `device` is the TargetProfile field this report asks for; absent until it is added
        device, device_from = getattr(profile, "device", None), f"target '{profile.name}' [device]"
    batch = profile.artifact.fixed_batch
    proto = load_onnx(model, batch=batch)  # the shapes the .ort conversion would bake in
    check_analysable(proto, model)
    coverage = check_model(model, proto=proto)
    return {
        "model": str(model),
        "target": profile.name,
        "batch": batch,
        "ep_coverage": coverage.to_dict(),
        "memory": estimate_memory(proto).to_dict(),
        "latency": {**estimate_latency(proto, device).to_dict(), "device_from": device_from},
    }
