"""Fidelity: how closely a compressed artifact's outputs follow the fp32 reference's.

Measured on every output, and on slices of it: a detector's head concatenates box pixels
(hundreds) and sigmoid scores (< 1) along one axis, so one per-tensor int8 scale can zero every
score while the whole-output SQNR stays high (the boxes dominate its energy). Each output is
therefore also compared per index of its feature axis, and the headline `min_sqnr_db` is the
minimum over outputs and slices: one broken part cannot hide behind a healthy whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# Slices whose reference energy is below this fraction of the whole output's are not gated: a
# channel that is ~0 everywhere has no signal for an SQNR to measure against. Set far below the
# score-to-box energy ratio of a detector head (scores < 1 beside 640-px boxes: ~2e-7).
MIN_SLICE_ENERGY = 1e-12
# The feature axis is the smallest non-batch axis of at most this many entries (84 of a YOLO
# head [1, 84, 8400], 10 classes of [N, 10], 3 colours of [N, 3, H, W]).
MAX_SLICES = 1024
# SQNR above this is reported as this: float rounding alone differs this little.
SQNR_CEILING_DB = 150.0


# What the fp32 candidate is recorded with: it is the reference, so it agrees with itself.
REFERENCE_FIDELITY = {"min_sqnr_db": SQNR_CEILING_DB, "outputs": {}, "worst_output": None,
                      "note": "the fp32 reference itself"}


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; SQNR_CEILING_DB when the two agree exactly."""
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(test, dtype=np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0 or (signal > 0 and signal / noise > 10 ** (SQNR_CEILING_DB / 10)):
        return SQNR_CEILING_DB
    if signal == 0.0:
        return -SQNR_CEILING_DB  # a silent reference and a noisy test: nothing of the signal is left
    return 10 * math.log10(signal / noise)


def cosine(reference: np.ndarray, test: np.ndarray) -> float:
    a = np.asarray(reference, dtype=np.float64).ravel()
    b = np.asarray(test, dtype=np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(np.dot(a, b) / (na * nb))


def feature_axis(shape: tuple[int, ...]) -> int | None:
    """The axis to slice along (see MAX_SLICES), or None for outputs with nothing to slice."""
    axes = [(size, axis) for axis, size in enumerate(shape) if axis > 0 and 2 <= size <= MAX_SLICES]
    return min(axes)[1] if axes else None


def _worst_slice(ref: np.ndarray, test: np.ndarray) -> dict[str, Any] | None:
    axis = feature_axis(ref.shape)
    if axis is None:
        return None
    r = np.moveaxis(ref.astype(np.float64), axis, 0).reshape(ref.shape[axis], -1)
    t = np.moveaxis(test.astype(np.float64), axis, 0).reshape(ref.shape[axis], -1)
    total = float(np.sum(r**2))
    energies = np.sum(r**2, axis=1)
    gated = [i for i in range(len(r)) if total > 0 and energies[i] >= MIN_SLICE_ENERGY * total]
    if not gated:
        return None
    scores = {i: sqnr_db(r[i], t[i]) for i in gated}
    worst = min(scores, key=scores.get)
    return {"axis": axis, "index": int(worst), "sqnr_db": scores[worst], "slices": len(r), "gated": len(gated)}


def _agreement(ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Top-1 / top-5 agreement for classifier-like outputs (N samples x K > 1 scores)."""
    if ref.ndim != 2 or ref.shape[1] < 2 or not np.issubdtype(ref.dtype, np.floating):
        return {}
    out = {"top1_agreement": float((ref.argmax(1) == test.argmax(1)).mean())}
    if ref.shape[1] > 5:
        top5 = np.argsort(-test, axis=1)[:, :5]
        out["top5_agreement"] = float((top5 == ref.argmax(1)[:, None]).any(axis=1).mean())
    return out


def output_fidelity(reference: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    """Every fidelity number of one output; `min_sqnr_db` covers the whole output and its slices."""
    ref, tst = np.asarray(reference), np.asarray(test)
    if ref.shape != tst.shape:
        return {"error": f"shape {list(tst.shape)} vs reference {list(ref.shape)}", "min_sqnr_db": -SQNR_CEILING_DB}
    if not np.issubdtype(ref.dtype, np.floating):  # ids, lengths, masks, strings: equal or not
        same = float(np.mean(ref == tst)) if ref.size else 1.0
        return {"exact_match": same, "min_sqnr_db": SQNR_CEILING_DB if same == 1.0 else -SQNR_CEILING_DB}
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(tst))):
        return {"error": "non-finite values (NaN or inf) in the outputs", "min_sqnr_db": -SQNR_CEILING_DB}
    doc: dict[str, Any] = {
        "sqnr_db": sqnr_db(ref, tst),
        "max_abs_diff": float(np.max(np.abs(ref.astype(np.float64) - tst))) if ref.size else 0.0,
        "cosine": cosine(ref, tst),
        **_agreement(ref, tst),
    }
    worst = _worst_slice(ref, tst)
    if worst is not None:
        doc["worst_slice"] = worst
    doc["min_sqnr_db"] = min(doc["sqnr_db"], worst["sqnr_db"]) if worst else doc["sqnr_db"]
    return doc


def compare_outputs(reference: Mapping[str, np.ndarray], test: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per-output fidelity plus the headline: the minimum SQNR over outputs and slices, and where."""
    outputs = {name: output_fidelity(reference[name], test[name]) for name in reference}
    worst = min(outputs, key=lambda n: outputs[n]["min_sqnr_db"]) if outputs else None
    return {"outputs": outputs, "min_sqnr_db": outputs[worst]["min_sqnr_db"] if worst else None, "worst_output": worst}


def collect_outputs(session, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Every output of `session` over the feed batches, joined along the first axis (for a
    state output [layers, B, H] that pairs batches up the same way for both models)."""
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(v, axis=0) if v[0].ndim else np.stack(v) for n, v in parts.items() if v}
