"""Tiny zoo recipes and a runner for `edgeopt batch` in a subprocess, shared by the batch tests."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from toolchain.resources import bundled_dir

ROOT = Path(__file__).resolve().parents[2]
TINY_ZOO = ("digits-cnn", "tabular-mlp", "seq-conv1d")


def tiny_recipe(name: str, dest_dir: Path) -> Path:
    """A bundled zoo recipe with two epochs, one fine-tune epoch and small calibration: the same
    stages and graphs, a fraction of the training."""
    text = (bundled_dir("models") / f"{name}.toml").read_text()
    for key, value in (("epochs", 2), ("finetune_epochs", 1), ("calibration_samples", 64), ("samples", 600)):
        text = re.sub(rf"(?m)^{key} = \d+.*$", f"{key} = {value}", text)
    dest = dest_dir / f"{name}.toml"
    dest.write_text(text)
    return dest


def subprocess_env() -> dict[str, str]:
    from toolchain.executor.ray_local import cluster_env

    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return cluster_env({**os.environ, "PYTHONPATH": path})


def batch_argv(specs: list[Path], out: Path, targets_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "toolchain.cli",
        "batch",
        *map(str, specs),
        "--targets",
        "cpu-server,arm-mobile",
        "--targets-dir",
        str(targets_dir),
        "--out",
        str(out),
        "--json",
        *extra,
    ]


def run_batch(specs: list[Path], out: Path, targets_dir: Path, *extra: str, timeout: float = 1800):
    return subprocess.run(
        batch_argv(specs, out, targets_dir, *extra),
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=timeout,
        check=False,
    )


# Deterministic stages: their files must not depend on where or with which executor they ran.
# benchmark holds timings; package holds the measured metrics (so does the fidelity-free report).
DETERMINISTIC_STAGES = ("train", "prune", "export", "quantize", "convert", "int8_weights", "fidelity")


def cache_digest(cache: Path) -> dict[str, str]:
    """stage/key/file -> sha256 for every file of every deterministic cache entry (record.json
    left out: it holds measured seconds in some stages)."""
    digest = {}
    for stage in DETERMINISTIC_STAGES:
        for entry in sorted((cache / stage).glob("[!.]*")):
            for f in sorted(entry.rglob("*")):
                if f.is_file() and f.name != "record.json":
                    digest[str(f.relative_to(cache))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digest


def first_last_difference(a: bytes, b: bytes) -> tuple[int, int] | None:
    diffs = [i for i in range(min(len(a), len(b))) if a[i] != b[i]]
    return (diffs[0], diffs[-1]) if diffs else None


def same_outputs(a: Path, b: Path, seed: int = 0) -> bool:
    """Both models give bitwise-equal outputs on the same seeded input (dynamic dims as 1)."""
    import numpy as np
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (a, b)]
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sessions[0].get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = rng.standard_normal(shape).astype(np.float32)
    first, second = (s.run(None, feeds) for s in sessions)
    return all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
