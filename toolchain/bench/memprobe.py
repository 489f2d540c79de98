"""Child process for peak-memory measurement; run as `python -m toolchain.bench.memprobe`.

It imports only the engine (onnxruntime, or openvino with `--engine openvino`) and numpy (the `toolchain` package's __init__ is empty of heavy
imports), so the "import only" baseline and the "load and run" measurement differ by exactly
what the model costs. Prints one JSON line: {"peak_rss_kb": ...}.

The peak is VmHWM from /proc/self/status, not getrusage's ru_maxrss: Linux carries ru_maxrss
across execve, so a child of a large parent (edgeopt with torch loaded) would report the
parent's high-water mark. VmHWM belongs to the new address space and starts fresh at exec.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from types import SimpleNamespace


def peak_rss_kb() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # non-Linux fallback (KiB on Linux)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--mode", choices=["import", "run"], required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--level", default="ORT_ENABLE_ALL")
    ap.add_argument("--arena", type=int, default=1)
    ap.add_argument("--mem-pattern", type=int, default=1)
    ap.add_argument("--disable-optimizers", default="", help="comma-separated ORT optimizer names to skip")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--max-seconds", type=float, default=None, help="stop running (after one run) once this long"
    )
    ap.add_argument("--feed", default=None, help=".npz with one array per input (else random inputs)")
    ap.add_argument("--engine", choices=["onnxruntime", "openvino"], default="onnxruntime")
    ap.add_argument(
        "--precision", choices=["f32", "bf16"], default="f32", help="openvino inference precision"
    )
    args = ap.parse_args(argv)

    import numpy as np

    if args.mode == "run":
        sess = _openvino_session(args) if args.engine == "openvino" else _ort_session(args)
        feeds = {}
        if args.feed:  # every input as the caller recorded it: dtypes, shapes and valid values
            with np.load(args.feed, allow_pickle=False) as npz:
                feeds = {k: npz[k] for k in npz.files}
        for inp in sess.get_inputs() if not feeds else ():
            shape = [d if isinstance(d, int) else args.batch for d in inp.shape]
            dtype = np.int64 if "int64" in inp.type else np.float32
            feeds[inp.name] = np.random.default_rng(0).random(shape).astype(dtype)
        deadline = time.perf_counter() + args.max_seconds if args.max_seconds is not None else None
        for _ in range(args.runs):
            sess.run(None, feeds)
            if deadline is not None and time.perf_counter() > deadline:
                break  # the peak is reached in the first run; more runs only confirm it
    elif args.engine == "openvino":
        import openvino  # noqa: F401  the engine's own floor, like onnxruntime's below
    else:
        import onnxruntime  # noqa: F401
    print(json.dumps({"peak_rss_kb": peak_rss_kb()}))
    return 0


def _ort_session(args):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, args.level)
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = bool(args.arena)
    opts.enable_mem_pattern = bool(args.mem_pattern)
    if args.disable_optimizers:
        opts.add_session_config_entry("optimization.disable_specified_optimizers", args.disable_optimizers)
    return ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])


def _openvino_session(args):
    """The same compile settings as toolchain/runtime/openvino_runtime.py, without importing it
    (its config layer pulls in pydantic and would blur the import-only baseline)."""
    import openvino as ov

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": args.precision}
    if args.threads > 0:
        config["INFERENCE_NUM_THREADS"] = args.threads
    core = ov.Core()
    compiled = core.compile_model(core.read_model(args.model), "CPU", config)
    request = compiled.create_infer_request()

    class Session:  # what main() uses of ORT's session API
        @staticmethod
        def get_inputs():
            return [
                SimpleNamespace(
                    name=p.any_name,
                    shape=[d.get_length() if d.is_static else None for d in p.get_partial_shape()],
                    type=str(p.get_element_type().to_dtype()),
                )
                for p in compiled.inputs
            ]

        @staticmethod
        def run(_names, feeds):
            return request.infer(feeds)

    return Session()


if __name__ == "__main__":
    sys.exit(main())
