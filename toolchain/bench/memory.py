"""Peak memory of running an artifact: RSS high-water mark of a fresh process that loads and
runs it, minus that of the same process that only imports onnxruntime. Each is measured
`repeats` times and the median kept, because page-cache and allocator effects vary by run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from toolchain.bench.session import ORT_LEVELS
from toolchain.config.target import RuntimeOptions



def _probe(args: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "toolchain.bench.memprobe", *args],
        capture_output=True, text=True, check=True, timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kb"] / 1024.0


def peak_memory_mb(model: Path, runtime: RuntimeOptions, batch: int = 1, repeats: int = 3) -> dict[str, float]:
    base = [_probe(["--mode", "import"]) for _ in range(repeats)]
    run_args = [
        "--mode", "run", "--model", str(model), "--threads", str(runtime.intra_op_threads),
        "--level", ORT_LEVELS[runtime.graph_optimization_level], "--arena", str(int(runtime.enable_cpu_mem_arena)),
        "--mem-pattern", str(int(runtime.enable_mem_pattern)), "--batch", str(batch),
    ]
    loaded = [_probe(run_args) for _ in range(repeats)]
    b, m = statistics.median(base), statistics.median(loaded)
    return {"peak_memory_mb": max(m - b, 0.0), "process_peak_mb": m, "runtime_only_mb": b}
