"""Benchmark runner copied to a remote device by `toolchain.bench.remote`.

Self-contained on purpose: the device has python, numpy and onnxruntime, not edgeopt. It
restates what `toolchain.bench.standalone.bench_file` does (seeded random feed, interleaved
timing of one candidate, VmHWM-based peak memory over an import-only baseline, host facts) and
prints one JSON line. A test keeps its keys equal to the local bench's.

usage: python _remote_runner.py --model FILE --config JSON
       python _remote_runner.py --probe import|run --model FILE --config JSON   (internal)
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
           "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}
_ISA = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"}


def peak_rss_kb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve (see toolchain/bench/memprobe.py)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def host_info():
    model, flags = "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                # aarch64 kernels have no "model name"; fall back to the board/CPU part lines
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith(("flags", "Features")) and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": model, "machine": platform.machine(), "cores": os.cpu_count(),
            "isa": sorted(flags & _ISA), "system": platform.system()}


def session(model, rt):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[rt["graph_optimization_level"]])
    opts.intra_op_num_threads = rt["intra_op_threads"]
    opts.inter_op_num_threads = rt["inter_op_threads"]
    opts.enable_cpu_mem_arena = rt["enable_cpu_mem_arena"]
    opts.enable_mem_pattern = rt["enable_mem_pattern"]
    if rt.get("disabled_optimizers"):
        opts.add_session_config_entry("optimization.disable_specified_optimizers", ",".join(rt["disabled_optimizers"]))
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def random_feed(sess, batch):
    import numpy as np

    rng = np.random.default_rng(0)  # the same seed and draw order as the local bench
    feed = {}
    for inp in sess.get_inputs():
        dims = [batch if not isinstance(d, int) else d for d in inp.shape]
        feed[inp.name] = rng.random(dims).astype(_DTYPES.get(inp.type, "float32"))
    return feed


def summarize(samples):
    import numpy as np

    a = np.asarray(samples, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "std": float(a.std()), "min": float(a.min()), "max": float(a.max()), "runs": int(a.size)}


def time_one(fn, warmup, runs, rounds, max_seconds):
    """toolchain.bench.latency.interleaved with a single candidate."""
    for _ in range(warmup):
        fn()
    samples, per_round, clock = [], max(1, runs // rounds), time.perf_counter
    for _ in range(rounds):
        start_round = clock()
        for _ in range(per_round):
            t0 = clock()
            fn()
            samples.append((clock() - t0) * 1e3)
            if clock() - start_round > max_seconds / rounds:
                break
    return summarize(samples)


def probe(mode, model, cfg, batch):
    import numpy  # noqa: F401  (the baseline imports what the run imports)
    import onnxruntime  # noqa: F401

    if mode == "run":
        sess = session(model, cfg["runtime"])
        feed = random_feed(sess, batch)
        for _ in range(5):
            sess.run(None, feed)
    return peak_rss_kb()


def memory(model, cfg, batch, repeats=3, max_seconds=None):
    """As the local probe: no further loaded probe starts once `max_seconds` has passed (the first always runs)."""
    def one(mode):
        out = subprocess.run([sys.executable, __file__, "--probe", mode, "--model", model, "--config", json.dumps(cfg),
                              "--batch", str(batch)], capture_output=True, text=True, check=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kb"] / 1024.0

    base = statistics.median(one("import") for _ in range(repeats))
    start, loaded = time.perf_counter(), []
    while len(loaded) < repeats and not (loaded and max_seconds is not None and time.perf_counter() - start > max_seconds):
        loaded.append(one("run"))
    peak = statistics.median(loaded)
    return {"peak_memory_mb": max(peak - base, 0.0), "process_peak_mb": peak, "runtime_only_mb": base,
            "memory_probes": len(loaded)}


def bench(model, cfg):
    sess = session(model, cfg["runtime"])
    first = sess.get_inputs()[0].shape
    fb = first[0] if first and isinstance(first[0], int) else None
    spec = cfg["benchmark"]
    batches = [fb] if fb is not None else list(spec["batch_sizes"])
    skipped = {str(b): f"the model's batch dimension is fixed at {fb}" for b in spec["batch_sizes"] if b != fb and fb is not None}
    latency = {}
    for b in batches:
        feed = random_feed(sess, b)
        latency[str(b)] = time_one(lambda feed=feed: sess.run(None, feed), spec["warmup_runs"], spec["runs"],
                                   spec["rounds"], spec["max_seconds"])
    head = latency[str(batches[0])]
    import onnxruntime

    return {
        "bytes": os.path.getsize(model),
        "batch": batches[0],
        "latency_ms": {k: head[k] for k in ("p50", "p90", "p99")},
        "latency_by_batch": latency,
        **({"skipped_batch_sizes": skipped} if skipped else {}),
        **memory(model, cfg, batches[0], max_seconds=spec["max_seconds"]),
        "host": {**host_info(), "python": platform.python_version(), "onnxruntime": onnxruntime.__version__},
    }


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--probe", choices=["import", "run"])
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = json.loads(args.config)
    if args.probe:
        print(json.dumps({"peak_rss_kb": probe(args.probe, args.model, cfg, args.batch)}))
        return 0
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        print(json.dumps({"error": "missing-module", "detail": str(err)}))
        return 3
    try:
        doc = bench(args.model, cfg)
    except Exception as err:  # noqa: BLE001 - ORT raises several unrelated types for a bad model
        print(json.dumps({"error": "run-failed", "detail": (str(err).strip().splitlines() or [type(err).__name__])[0][:300]}))
        return 3
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
