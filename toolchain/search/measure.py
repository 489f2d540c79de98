"""Measurements shared by the searches: ONNX accuracy, file size, interleaved ORT latency.

Latency uses one intra-op thread and interleaved rounds (toolchain.bench.latency) so that drift
on a shared machine hits every candidate alike; compare ratios, not absolute milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def session(path: Path, threads: int = 1):
    """An ORT session with default options at `threads` intra-op threads (the bench's loader)."""
    from toolchain.config.target import RuntimeOptions
    from toolchain.runtime import load_session

    return load_session(path, RuntimeOptions(intra_op_threads=threads))


def onnx_logits(path: Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    from toolchain.bench.session import predict
    from toolchain.executor.threads import task_threads

    return predict(session(path, threads=task_threads(2)), x, batch_size=batch)


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    return float((onnx_logits(path, x).argmax(1) == y).mean())


def export_onnx(model, example: np.ndarray, dest: Path, opset: int = 18) -> Path:
    """Single-file ONNX with a dynamic batch axis, through the pipeline's verified export stage."""
    from toolchain.stages.export import ExportConfig
    from toolchain.stages.export import export_onnx as export_stage

    dest.parent.mkdir(parents=True, exist_ok=True)
    export_stage(model, example, ExportConfig(opset=opset), dest, dynamic_batch=True)
    return dest


def latency_p50(paths: dict[str, Path], x: np.ndarray, runs: int = 200, rounds: int = 5,
                max_seconds: float = 20.0) -> dict[str, float]:
    """p50 milliseconds per call on one sample, for every model, timed in interleaved rounds."""
    from toolchain.bench.latency import interleaved

    sample = np.ascontiguousarray(x[:1])
    calls = {}
    for name, path in paths.items():
        sess = session(path)
        feed = {sess.get_inputs()[0].name: sample}
        calls[name] = (lambda s=sess, f=feed: s.run(None, f))
    stats = interleaved(calls, warmup=10, runs=runs, rounds=rounds, max_seconds=max_seconds)
    return {n: s.p50 for n, s in stats.items()}
