"""How good is the compressed model? One strategy per kind of label, computed on the first
compared output (output 0, or the first `--output`) of the fp32 and the compressed artifact over
the evaluation split; every compared output also gets its own fidelity (`evaluate_outputs`).

- classify (integer labels): top-1 `accuracy` / `accuracy_drop` come from the benchmark stage,
  as in `edgeopt run`; here we add agreement and SQNR.
- regress (float targets): `mse`, `mae` and their fp32 counterparts; `mse_increase`.
- agreement (no labels): `top1_agreement` (fraction of samples whose argmax matches fp32, for
  (N, C) outputs) and `sqnr_db` = 10 log10(sum fp32^2 / sum (artifact - fp32)^2), torchao's
  measure of quantization noise. Computed for every kind, since they cost one extra pass.
- custom (`--evaluator module:function`): `function(outputs, y) -> float | dict[str, float]`,
  called for both artifacts; y is None without labels.

`accuracy` keeps its one meaning (a top-1 fraction); everything else has its own name.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolchain.bench import fidelity
from toolchain.errors import BadInput


@dataclass(frozen=True)
class Evaluator:
    task: str  # "classify" | "regress" | "agreement"
    custom_ref: str | None = None
    custom: Callable[..., Any] | None = None

    @property
    def kind(self) -> str:
        return "custom" if self.custom is not None else self.task


def resolve(ref: str | None, task: str) -> Evaluator:
    if ref is None:
        return Evaluator(task)
    module_name, sep, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr) if sep else None
    except (ImportError, AttributeError) as err:
        raise BadInput(f"cannot import evaluator '{ref}' ({err})", "check PYTHONPATH and the name") from None
    if not callable(fn):
        raise BadInput(f"evaluator '{ref}' is not a callable", "name a function: module:function(outputs, y)")
    return Evaluator(task, ref, fn)


def preflight(ev: Evaluator, fp32_out: np.ndarray, y: np.ndarray | None) -> None:
    """Check labels against the model's output and run the custom evaluator once on the fp32
    outputs, so a mismatch or a broken evaluator fails before any compression work."""
    if ev.task == "classify":
        if fp32_out.ndim != 2 or fp32_out.shape[1] < 2:
            raise BadInput(
                f"integer labels, but the model's output has shape {fp32_out.shape[1:]} (not class scores)",
                "store float targets for regression, or drop 'y' to compare against fp32",
            )
        if int(y.max()) >= fp32_out.shape[1]:
            raise BadInput(
                f"label {int(y.max())} is out of range for {fp32_out.shape[1]} output classes",
                "labels must be class indices 0..C-1",
            )
    if ev.task == "regress" and _squeeze(fp32_out).shape != _squeeze(y).shape:
        raise BadInput(
            f"float targets have shape {y.shape[1:]}, the model's output {fp32_out.shape[1:]}",
            "give one target per output value",
        )
    if ev.custom is not None:
        run_custom(ev, fp32_out, y)


def run_custom(ev: Evaluator, out: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    try:
        value = ev.custom(out, y)
    except Exception as err:
        raise BadInput(
            f"evaluator '{ev.custom_ref}' raised {type(err).__name__}: {err}",
            "fix the evaluator; it gets (outputs, y) as numpy arrays",
        ) from None
    values = value if isinstance(value, dict) else {"value": value}
    clean = {}
    for k, v in values.items():
        if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) or not math.isfinite(float(v)):
            raise BadInput(
                f"evaluator '{ev.custom_ref}' returned {k}={v!r}", "return a finite number or a dict of them"
            )
        clean[str(k)] = float(v)
    return clean


def evaluate(ev: Evaluator, fp32_out: np.ndarray, out: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
    metrics: dict[str, Any] = {"kind": ev.kind, "samples": len(out)}
    metrics["sqnr_db"] = sqnr_db(fp32_out, out)
    if out.ndim == 2 and out.shape[1] > 1:
        metrics["top1_agreement"] = float((out.argmax(1) == fp32_out.argmax(1)).mean())
    if ev.task == "regress":
        t = _squeeze(y)
        o, f = _squeeze(out), _squeeze(fp32_out)
        metrics.update(
            mse=float(np.mean((o - t) ** 2)),
            fp32_mse=float(np.mean((f - t) ** 2)),
            mae=float(np.mean(np.abs(o - t))),
            fp32_mae=float(np.mean(np.abs(f - t))),
        )
        metrics["mse_increase"] = metrics["mse"] - metrics["fp32_mse"]
    if ev.custom is not None:
        metrics["custom"] = {
            "evaluator": ev.custom_ref,
            "artifact": run_custom(ev, out, y),
            "fp32": run_custom(ev, fp32_out, y),
        }
    return metrics


def evaluate_outputs(ev: Evaluator, fp32: dict[str, np.ndarray], got: dict[str, np.ndarray],
                     y: np.ndarray | None, specs, samples: int) -> dict[str, Any]:
    """`evaluate` on the first compared output (labels and a custom evaluator apply to it), plus
    per-output fidelity under "outputs" and the worst SQNR over them as `min_sqnr_db`."""
    primary = specs[0].name
    metrics = evaluate(ev, fp32[primary], got[primary], y)
    metrics["samples"] = samples
    metrics["output"] = primary
    metrics["outputs"] = {s.name: output_metrics(fp32[s.name], got[s.name], s.batch_axis) for s in specs}
    sqnrs = [m["sqnr_db"] for m in metrics["outputs"].values() if m.get("sqnr_db") is not None]
    metrics["min_sqnr_db"] = min(sqnrs) if sqnrs else None
    return metrics


def output_metrics(ref: np.ndarray, got: np.ndarray, batch_axis: int | None) -> dict[str, Any]:
    """Fidelity of one output: SQNR, max abs diff and cosine for floats, exact matches for ints
    and bools; top-1 agreement for (samples, classes) outputs."""
    m: dict[str, Any] = {"shape": list(ref.shape), "dtype": str(ref.dtype)}
    if ref.shape != got.shape:
        m["shape_mismatch"] = list(got.shape)
        return m
    if ref.dtype.kind not in "fc":
        m["exact_match"] = float(np.mean(ref == got)) if ref.size else 1.0
        return m
    r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
    m["sqnr_db"] = sqnr_db(r, g)
    m["max_abs_diff"] = float(np.max(np.abs(r - g))) if r.size else 0.0
    m["cosine"] = fidelity.cosine(r, g) if np.any(r) and np.any(g) else None
    if ref.ndim == 2 and ref.shape[1] > 1 and batch_axis == 0:
        m["top1_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
    return m


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float | None:
    """bench/fidelity's SQNR; None when the outputs are bit-identical (infinite SQNR has no JSON number)."""
    if np.array_equal(reference, test):
        return None
    return fidelity.sqnr_db(reference, test)


def _squeeze(a: np.ndarray) -> np.ndarray:
    """(N, 1) and (N,) compare equal: single-output regressors come in both shapes."""
    return a.reshape(len(a), -1).squeeze(-1) if a.ndim > 1 and int(np.prod(a.shape[1:])) == 1 else a
