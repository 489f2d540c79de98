"""`edgeopt bench FILE --runtimes onnxruntime,openvino`: the same file on each runtime, measured.

A cpu-server user asks how the artifact edgeopt shipped would run on OpenVINO (or the reverse):
the file is loaded by each engine with the target profile's thread count, the ones that compile
are timed side by side in interleaved rounds (machine drift hits all of them), and each reports
its p50, its speed relative to the profile's own engine in the same run, and how far its outputs
are from that engine's on the same inputs (SQNR). An engine that cannot compile the file is
reported with the reason (an ORT-only contrib operator baked in by offline optimization "extended",
say), not an error: the answer is "it does not run there". OpenVINO is imported only when named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.config.target import ENGINES, RuntimeOptions, TargetProfile
from toolchain.errors import BadInput, ModelLoadError
from toolchain.hostinfo import host_info


def parse_engines(text: str) -> list[str]:
    """"onnxruntime,openvino" -> the engine names, in order, each once; unknown ones are BadInput."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in ENGINES]
    if unknown or not names:
        raise BadInput(f"unknown runtime {', '.join(map(repr, unknown)) or '(none given)'} in --runtimes",
                       f"known: {', '.join(ENGINES)}")
    return names


def engine_options(profile: TargetProfile, engine: str) -> RuntimeOptions:
    """The profile's runtime options moved to `engine`: its own when it is the profile's engine;
    otherwise the same thread counts with that engine's defaults (ORT's graph optimization "all",
    OpenVINO at f32: its bf16 default is a precision change, not a runtime comparison)."""
    rt = profile.runtime
    if engine == rt.engine:
        return rt
    return RuntimeOptions(engine=engine, intra_op_threads=rt.intra_op_threads, inter_op_threads=rt.inter_op_threads)


def _load_all(path: Path, profile: TargetProfile, engines: list[str]) -> tuple[dict, dict[str, str]]:
    """engine -> (session, runtime); and engine -> why it cannot compile `path`. The profile's own
    engine must load the file (its failure is the caller's ModelLoadError, exit 2)."""
    from toolchain.runtime import runtime_for

    sessions, skipped = {}, {}
    for engine in engines:
        runtime = runtime_for(engine_options(profile, engine))
        try:
            sessions[engine] = (runtime.load(path), runtime)
        except ModelLoadError as err:
            if engine == profile.runtime.engine:
                raise
            skipped[engine] = err.problem
    return sessions, skipped


def across_runtimes(path: Path, profile: TargetProfile, engines: list[str]) -> dict[str, Any]:
    """Batch-1 (or the file's fixed batch) latency of `path` on each of `engines`, interleaved, with
    the p50 ratio and output SQNR against the first engine that compiled it (the profile's own
    engine when it is listed)."""
    from toolchain.bench.fidelity import sqnr_db
    from toolchain.bench.latency import interleaved_capped
    from toolchain.bench.session import fixed_batch
    from toolchain.bench.standalone import _random_feed

    order = sorted(engines, key=lambda e: e != profile.runtime.engine)  # the profile's engine is the reference
    sessions, skipped = _load_all(Path(path), profile, order)
    if not sessions:
        raise BadInput(f"no runtime in --runtimes can compile {Path(path).name}: "
                       + "; ".join(f"{e}: {why}" for e, why in skipped.items()),
                       "pass a portable .onnx (offline optimization \"basic\") or add the target's own engine")
    reference = next(iter(sessions))
    first = sessions[reference][0]
    batch = fixed_batch(first) or 1
    feed = _random_feed(first, batch)
    spec = profile.benchmark
    timed = interleaved_capped({e: (lambda s=s: s.run(None, feed)) for e, (s, _) in sessions.items()},
                               spec.warmup_runs, spec.runs, spec.rounds, spec.max_seconds)
    ref_out = first.run(None, feed)
    ref_p50 = timed.stats[reference].p50
    rows: dict[str, Any] = {}
    for engine in order:
        if engine in skipped:
            rows[engine] = {"compiles": False, "reason": skipped[engine]}
            continue
        session, runtime = sessions[engine]
        stats = timed.stats[engine]
        out = session.run(None, feed)
        rows[engine] = {"compiles": True, "version": runtime.version(), "settings": runtime.settings(),
                        "p50_ms": stats.p50, "p90_ms": stats.p90, "runs": stats.runs,
                        "speedup_vs_reference": ref_p50 / stats.p50,
                        "min_sqnr_db_vs_reference": min(sqnr_db(r, o) for r, o in zip(ref_out, out, strict=True))}
    return {"artifact": str(Path(path).resolve()), "target": profile.name, "bytes": Path(path).stat().st_size,
            "batch": batch, "reference": reference, "runtimes": rows,
            **({"capped": list(timed.capped.values())} if timed.capped else {}), "host": host_info()}


def render_across(doc: dict[str, Any]) -> str:
    lines = [f"{doc['artifact']} across runtimes, {doc['target']} profile's threads ({doc['host']['cpu']})",
             (f"  bytes: {doc['bytes']:,}; batch {doc['batch']}; timed side by side, interleaved; "
              f"ratio and SQNR vs {doc['reference']}")]
    for engine, r in doc["runtimes"].items():
        if not r["compiles"]:
            lines.append(f"  {engine}: does not compile it: {r['reason']}")
            continue
        ratio = "reference" if engine == doc["reference"] else (
            f"{r['speedup_vs_reference']:.2f}x as fast as {doc['reference']}, outputs {r['min_sqnr_db_vs_reference']:.1f} dB SQNR")
        lines.append(f"  {engine} {r['version']}: p50 {r['p50_ms']:.4f} ms  p90 {r['p90_ms']:.4f} ms ({r['runs']} runs); {ratio}")
    return "\n".join(lines)
