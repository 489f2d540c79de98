"""`edgeopt bench FILE`: measure one artifact with a target profile's runtime options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config.target import TargetProfile
from toolchain.hostinfo import host_info


def _random_feed(session, batch: int) -> dict[str, np.ndarray]:
    from toolchain.bench.session import input_spec

    rng = np.random.default_rng(0)
    feed = {}
    for name, shape, dtype in input_spec(session):
        dims = [batch if d is None else d for d in shape]
        feed[name] = rng.random(dims).astype(dtype)
    return feed


def bench_file(path: Path, profile: TargetProfile) -> dict[str, Any]:
    """Latency at every profile batch size the file takes (a fixed batch: its own, the others
    listed in `skipped_batch_sizes`) and peak memory, each phase capped by `max_seconds`."""
    from toolchain.bench.latency import interleaved_capped
    from toolchain.bench.memory import peak_memory_mb
    from toolchain.bench.session import batch_plan, fixed_batch
    from toolchain.runtime import load_session

    sess = load_session(path, profile.runtime)
    spec = profile.benchmark
    fb = fixed_batch(sess)
    batches, skipped = batch_plan({"artifact": fb}, spec.batch_sizes)
    batches = [b for b in batches if fb is None or b == fb]
    latency, capped = {}, []
    for b in batches:
        feed = _random_feed(sess, b)
        timed = interleaved_capped({"artifact": lambda feed=feed: sess.run(None, feed)}, spec.warmup_runs, spec.runs,
                                   spec.rounds, spec.max_seconds)
        latency[str(b)] = timed.stats["artifact"].to_dict()
        capped += [f"latency batch {b}: {what}" for what in timed.capped.values()]
    memory = peak_memory_mb(Path(path), profile.runtime, batch=batches[0], max_seconds=spec.max_seconds)
    first = latency[str(batches[0])]
    return {
        "artifact": str(Path(path).resolve()),
        "target": profile.name,
        "bytes": Path(path).stat().st_size,
        "batch": batches[0],
        "latency_ms": {k: first[k] for k in ("p50", "p90", "p99")},
        "latency_by_batch": latency,
        **({"skipped_batch_sizes": skipped["artifact"]} if skipped else {}),
        **({"capped": capped} if capped else {}),
        **memory,
        "host": host_info(),
    }


def render_bench(doc: dict[str, Any]) -> str:
    lines = [f"{doc['artifact']} on {doc['target']} profile ({doc['host']['cpu']})", f"  bytes: {doc['bytes']:,}"]
    for b, st in doc["latency_by_batch"].items():
        lines.append(f"  batch {b}: p50 {st['p50']:.4f} ms  p90 {st['p90']:.4f} ms  p99 {st['p99']:.4f} ms  ({st['runs']} runs)")
    lines.append(f"  peak memory: {doc['peak_memory_mb']:.1f} MB over an idle runtime")
    return "\n".join(lines)
