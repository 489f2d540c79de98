"""The `session` block of a package manifest: the target's ONNX Runtime options, with the
intra-op thread count replaced by the measured fastest one when the build ran a thread sweep."""

from __future__ import annotations

from typing import Any


def session_config(runtime: dict[str, Any] | None, thread_sweep: dict[str, Any] | None) -> dict[str, Any]:
    """`runtime` is a profile's [runtime] table (missing keys take their defaults); `thread_sweep`
    is the run's metrics["thread_sweep"] (its "fastest": batch size -> thread count) or None."""
    from toolchain.config.target import RuntimeOptions

    rt = RuntimeOptions.model_validate(runtime or {})
    fastest = {str(b): int(n) for b, n in ((thread_sweep or {}).get("fastest") or {}).items()}
    return {
        "graph_optimization_level": rt.graph_optimization_level,
        # One number for apps that configure one session: the interactive (smallest) batch's best.
        "intra_op_threads": fastest[min(fastest, key=int)] if fastest else rt.intra_op_threads,
        "intra_op_threads_by_batch": fastest,
        "inter_op_threads": rt.inter_op_threads,
        "enable_cpu_mem_arena": rt.enable_cpu_mem_arena,
        "enable_mem_pattern": rt.enable_mem_pattern,
        "threads_from": "thread_sweep" if fastest else "target_profile",
    }
