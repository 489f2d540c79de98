"""One document with every static mobile analysis of a model for a target profile.

The analyses are informational: a build must never fail because one of them could not be made
(a symbolic tensor left after shape inference, an op the usability checker trips on). Each
that fails is `null` in the document and `notes` says why; only a model that cannot be read at
all is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolchain.errors import BadInput, EdgeoptError

ANALYSES = ("ep_coverage", "memory", "latency")


def mobile_report(model: Path, profile, device_name: str | None = None, shown_as: str | None = None,
                  strict: bool = False) -> dict[str, Any]:
    """The three analyses of `model` (.onnx) for `profile`, as one JSON-able document; `shown_as`
    names the model in it instead of its path."""
    from toolchain.mobile.ep_coverage import check_model
    from toolchain.mobile.estimate import REFERENCE_DEVICES, estimate_latency
    from toolchain.mobile.memory_estimate import check_analysable, estimate_memory, load_onnx, pin_batch

    if device_name is not None:
        if device_name not in REFERENCE_DEVICES:
            raise BadInput(f"unknown device '{device_name}'", f"known: {', '.join(REFERENCE_DEVICES)}")
        device, device_from = REFERENCE_DEVICES[device_name], f"reference figures '{device_name}'"
    else:  # `device` is the TargetProfile field this report asks for; absent until it is added
        device, device_from = getattr(profile, "device", None), f"target '{profile.name}' [device]"
    batch = profile.artifact.fixed_batch
    notes: dict[str, str] = {}
    doc: dict[str, Any] = {"model": shown_as or str(model), "target": profile.name, "batch": batch}
    proto = load_onnx(model)  # an unreadable file is the caller's error, not an estimate's
    if strict:  # `edgeopt mobile-report`: a graph with no shapes to analyse is refused in one line
        check_analysable(proto, model)
    pinned = _guarded("batch", lambda: pin_batch(proto, batch), notes)  # the shapes the .ort bakes in
    if pinned is None:
        return {**doc, **dict.fromkeys(ANALYSES), "notes": {**notes, **dict.fromkeys(ANALYSES, notes["batch"])}}
    coverage = _guarded("ep_coverage", lambda: {**check_model(model, proto=pinned).to_dict(), "model": doc["model"]},
                        notes)
    memory = _guarded("memory", lambda: estimate_memory(pinned).to_dict(), notes)
    latency = _guarded("latency", lambda: {**estimate_latency(pinned, device).to_dict(), "device_from": device_from},
                       notes)
    doc.update(ep_coverage=coverage, memory=memory, latency=latency)
    if notes:
        doc["notes"] = notes
    return doc


def _guarded(what: str, fn: Callable[[], Any], notes: dict[str, str]) -> Any:
    """fn(), or None with notes[what] saying why it could not be made."""
    try:
        return fn()
    except EdgeoptError as err:
        notes[what] = f"not estimated: {err.problem}"
    except Exception as err:  # noqa: BLE001 - informational: any failure becomes a note, never an abort
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        notes[what] = f"not estimated: {type(err).__name__}{': ' + first if first else ''}"
    return None
