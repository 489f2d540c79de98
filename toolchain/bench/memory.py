"""Peak memory of running an artifact: RSS high-water mark of a fresh process that loads and
runs it, minus that of the same process that only imports onnxruntime. Each is measured
`repeats` times and the median kept, because page-cache and allocator effects vary by run.

That peak still includes what *any* ONNX Runtime session costs (kernel registry, code pages
touched, thread pool: about 16 MB measured for a one-node model), so a small model's ratio to
fp32 is squeezed towards 1. `memory_breakdown` adds the same probe on a trivial model (the
runtime floor) and the model's own share above it.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from toolchain.bench.timing import Deadline
from toolchain.config.target import RuntimeOptions
from toolchain.runtime import runtime_for


def _probe(args: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "toolchain.bench.memprobe", *args],
        capture_output=True, text=True, check=True, timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kb"] / 1024.0


def probe_args(model: Path, runtime: RuntimeOptions, batch: int) -> list[str]:
    """memprobe's command line for loading and running `model` with these session options."""
    return ["--mode", "run", "--model", str(model), *runtime_for(runtime).memprobe_args(), "--batch", str(batch)]


def peak_memory_mb(model: Path, runtime: RuntimeOptions, batch: int = 1, repeats: int = 3,
                   max_seconds: float | None = None, feed: dict | None = None) -> dict[str, float]:
    """With `max_seconds`, each probe stops running the model after that long, and no further
    probe of the model starts once it has passed (the first always runs): a slow model costs
    about one cap, not `repeats` times five runs. `memory_probes` says how many were made.
    `feed` (input name -> array) is what the probe runs; without it the probe makes a random
    float/int64 input with every symbolic dim = `batch`."""
    import numpy as np

    base = [_probe(["--mode", "import", "--engine", runtime.engine]) for _ in range(repeats)]
    cap = ["--max-seconds", f"{max_seconds:g}"] if max_seconds is not None else []
    deadline = Deadline(max_seconds)
    loaded = []
    with tempfile.TemporaryDirectory(prefix="edgeopt-feed-") as d:
        args = probe_args(model, runtime, batch) + cap
        if feed is not None:
            np.savez(Path(d) / "feed.npz", **feed)
            args += ["--feed", str(Path(d) / "feed.npz")]
        while len(loaded) < repeats and not (loaded and deadline.expired()):
            loaded.append(_probe(args))
    b, m = statistics.median(base), statistics.median(loaded)
    return {"peak_memory_mb": max(m - b, 0.0), "process_peak_mb": m, "runtime_only_mb": b, "memory_probes": len(loaded)}


def floor_model(path: Path) -> Path:
    """A one-node model (Relu on one float): a session on it costs only what ORT itself costs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "runtime_floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return Path(path)


@functools.cache
def runtime_floor_mb(runtime: RuntimeOptions, repeats: int = 3) -> float:
    """Peak memory of a session on `floor_model` with these options; measured once per process
    and options, because it does not depend on the artifact."""
    with tempfile.TemporaryDirectory(prefix="edgeopt-floor-") as d:
        return peak_memory_mb(floor_model(Path(d) / "floor.onnx"), runtime, repeats=repeats)["peak_memory_mb"]


def memory_breakdown(model: Path, runtime: RuntimeOptions, batch: int = 1, repeats: int = 3,
                     max_seconds: float | None = None, feed: dict | None = None) -> dict[str, float]:
    """peak_memory_mb's numbers plus `runtime_floor_mb` and `model_memory_mb` = peak - floor."""
    mem = peak_memory_mb(model, runtime, batch=batch, repeats=repeats, max_seconds=max_seconds, feed=feed)
    floor = runtime_floor_mb(runtime, repeats)
    return {**mem, "runtime_floor_mb": floor, "model_memory_mb": max(mem["peak_memory_mb"] - floor, 0.0)}
