"""The `session` block of a package manifest: the target's runtime options, with the intra-op
thread count replaced by the measured fastest one when the build ran a thread sweep; and the
`runtime` block: which engine, its version, and the exact session/compile settings it was given."""

from __future__ import annotations

from typing import Any


def session_config(runtime: dict[str, Any] | None, thread_sweep: dict[str, Any] | None) -> dict[str, Any]:
    """`runtime` is a profile's [runtime] table (missing keys take their defaults); `thread_sweep`
    is the run's metrics["thread_sweep"] (its "fastest": batch size -> thread count) or None."""
    from toolchain.config.target import RuntimeOptions

    rt = RuntimeOptions.model_validate(runtime or {})
    fastest = {str(b): int(n) for b, n in ((thread_sweep or {}).get("fastest") or {}).items()}
    return {
        "engine": rt.engine,
        "inference_precision": rt.inference_precision,
        "graph_optimization_level": rt.graph_optimization_level,
        # One number for apps that configure one session: the interactive (smallest) batch's best.
        "intra_op_threads": fastest[min(fastest, key=int)] if fastest else rt.intra_op_threads,
        "intra_op_threads_by_batch": fastest,
        "inter_op_threads": rt.inter_op_threads,
        "enable_cpu_mem_arena": rt.enable_cpu_mem_arena,
        "enable_mem_pattern": rt.enable_mem_pattern,
        "disabled_optimizers": list(rt.disabled_optimizers),
        "threads_from": "thread_sweep" if fastest else "target_profile",
    }


def runtime_record(session: dict[str, Any]) -> dict[str, Any]:
    """{"name", "version", "settings"} for a `session` block (session_config's result): the
    engine's distribution version is read from package metadata, so recording it imports nothing."""
    from importlib import metadata

    from toolchain.config.target import RuntimeOptions
    from toolchain.runtime import runtime_for

    keys = set(RuntimeOptions.model_fields)
    runtime = runtime_for(RuntimeOptions.model_validate({k: v for k, v in session.items() if k in keys}))
    try:
        version = metadata.version(runtime.name)
    except metadata.PackageNotFoundError:
        version = "absent"
    return {"name": runtime.name, "version": version, "settings": runtime.settings()}
