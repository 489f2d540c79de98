"""How reliable is `edgeopt drift`? False flags on held-out data of the same distribution, and
detections of the same data shifted, on the bundled datasets (issue 15's goal: 0/20 and >= 19/20).

Each of 20 seeded draws shuffles all samples of a dataset, builds the input reference from 75%
(as a package does from its training data) and compares the other 25% unchanged and shifted:
images brighter by 30% (x * 1.3, clipped to the data's range, as a sensor would saturate); tabular
data with one feature (drawn per seed) scaled 2x in its raw units (the data is standardized with
the recorded mean/std, so 2 * raw becomes 2 * z + mean / std); sequences with one channel's
amplitude scaled 2x. No model is trained: inputs only.

    python benchmarks/drift_reliability.py   # writes results/drift_reliability.{md,json}
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from toolchain.config.drift import DriftThresholds
from toolchain.data import DataConfig, load_dataset
from toolchain.drift.compare import compare
from toolchain.drift.reference import build_reference

DATASETS = ("digits", "breast_cancer", "wine", "sequences")
DRAWS = 20
HELD_OUT = 0.25


def shift(name: str, x: np.ndarray, preprocessing: dict, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The shifted copy of `x` and what was done to it."""
    if x.ndim == 4:
        lo, hi = float(x.min()), float(x.max())
        return np.clip(x * 1.3, lo, hi).astype(x.dtype), "brightness +30%"
    if x.ndim == 3:
        c = int(rng.integers(x.shape[1]))
        out = x.copy()
        out[:, c] *= 2
        return out, f"channel {c} amplitude 2x"
    f = int(rng.integers(x.shape[1]))
    mean = np.asarray(preprocessing.get("mean") or np.zeros(x.shape[1]), dtype=np.float64)
    std = np.asarray(preprocessing.get("std") or np.ones(x.shape[1]), dtype=np.float64)
    out = x.copy()
    out[:, f] = 2 * x[:, f] + mean[f] / std[f]  # raw -> 2 * raw, in standardized units
    return out, f"feature {f} scaled 2x (raw units)"


def draw(x: np.ndarray, preprocessing: dict, name: str, seed: int, thresholds: DriftThresholds) -> dict:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    cut = int(len(x) * (1 - HELD_OUT))
    train, held = x[idx[:cut]], x[idx[cut:]]
    ref = build_reference({"x": train}, {})
    same = compare(ref, {"x": held}, thresholds=thresholds)
    shifted_x, how = shift(name, held, preprocessing, rng)
    shifted = compare(ref, {"x": shifted_x}, thresholds=thresholds)
    return {"seed": seed, "same_flagged": same["drift"], "shift_flagged": shifted["drift"], "shift": how,
            **{f"{k}_{rule}": v for k, doc in (("same", same), ("shift", shifted)) for rule, v in alone(doc).items()},
            "same_max_psi": max(r["psi"] for r in same["rows"]),
            "shift_max_psi": max(r["psi"] for r in shifted["rows"]), "held_out": len(held)}


def alone(doc: dict) -> dict[str, bool]:
    """Would PSI alone, or KS alone, have flagged? (Why the rule asks for both.)"""
    t = doc["thresholds"]
    return {"psi_alone": any(r["psi"] >= t["psi"] for r in doc["rows"]),
            "ks_alone": any(r["ks_pvalue"] < t["ks_pvalue_per_channel"] for r in doc["rows"])}


def run(thresholds: DriftThresholds | None = None) -> dict:
    thresholds = thresholds or DriftThresholds()
    results = {}
    for name in DATASETS:
        data = load_dataset(DataConfig(name=name))
        x = np.concatenate([data.x_train, data.x_test])
        t0 = time.perf_counter()
        draws = [draw(x, data.preprocessing, name, seed, thresholds) for seed in range(DRAWS)]
        results[name] = {
            "samples": len(x), "held_out": draws[0]["held_out"], "sample_shape": list(x.shape[1:]),
            "same_flagged": sum(d["same_flagged"] for d in draws),
            "shift_flagged": sum(d["shift_flagged"] for d in draws),
            **{f"{k}_{rule}": sum(d[f"{k}_{rule}"] for d in draws)
               for k in ("same", "shift") for rule in ("psi_alone", "ks_alone")},
            "same_max_psi_median": float(np.median([d["same_max_psi"] for d in draws])),
            "shift_max_psi_median": float(np.median([d["shift_max_psi"] for d in draws])),
            "seconds": time.perf_counter() - t0, "draws": draws,
        }
    return {"thresholds": thresholds.model_dump(), "draws": DRAWS, "results": results}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def markdown(doc: dict) -> str:
    t = doc["thresholds"]
    lines = [
        "# Drift detection reliability (`edgeopt drift`)", "",
        (f"Machine: {doc['cpu']}. Thresholds: PSI >= {t['psi']} and KS p-value < {t['ks_pvalue']} "
        "(Bonferroni over channels). Goal: same distribution flagged 0/20, shifted >= 19/20."), "",
        ("| dataset | samples (held out) | shift | same flagged | shifted flagged | median max PSI same / shifted "
        "| same flagged by PSI alone / KS alone | shifted flagged by PSI alone / KS alone |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in doc["results"].items():
        kind = r["draws"][0]["shift"].split(" ")[0] if name != "digits" else "brightness +30%"
        shift = {"feature": "one feature 2x (raw units)", "channel": "one channel 2x"}.get(kind, kind)
        lines.append(f"| {name} | {r['samples']} ({r['held_out']}) | {shift} | {r['same_flagged']}/{doc['draws']} "
                     f"| {r['shift_flagged']}/{doc['draws']} | {r['same_max_psi_median']:.3f} / "
                     f"{r['shift_max_psi_median']:.3f} | {r['same_psi_alone']}/{doc['draws']} / {r['same_ks_alone']}/{doc['draws']} "
                     f"| {r['shift_psi_alone']}/{doc['draws']} / {r['shift_ks_alone']}/{doc['draws']} |")
    lines += ["", ("Each draw shuffles all samples, builds the reference from 75% (as a package does from its "
              "training data) and compares the other 25% unchanged and shifted; inputs only, no model. "
              "Same-distribution PSI of a few dozen samples is noisy (wine's median max PSI over 13 features "
              "is above 0.2), which is why a channel must also pass the KS test to count as drift."),
              "", "Rerun: `python benchmarks/drift_reliability.py`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    doc = {"cpu": cpu_name(), **run()}
    out = ROOT / "benchmarks" / "results"
    (out / "drift_reliability.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "drift_reliability.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
