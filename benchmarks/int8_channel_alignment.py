"""Does the channel count of a depthwise block decide whether int8 pays on this CPU?

Structured pruning picks channel counts; ORT's int8 depthwise kernel (MLAS, NHWC) processes
channels in SIMD blocks, so a count that is not a multiple of the block pays for a slow tail.
This script times one inverted-residual-like block (1x1 conv -> ReLU -> 3x3 depthwise -> ReLU ->
1x1 conv) at 56x56 for many channel counts, fp32 vs U8S8 QDQ int8 (what cpu-server ships),
interleaved in the same rounds, 1 thread, batch 1. The answer sets `round_to` for pruning recipes.

Usage: python benchmarks/int8_channel_alignment.py [--rounds N] [--runs N]
Writes results/int8_channel_alignment.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CHANNELS = (48, 56, 64, 72, 80, 96, 104, 112, 128, 160, 192, 256, 264, 288)
SIZE = 56


def block_model(channels: int, path: Path) -> Path:
    """fp32 ONNX: pointwise -> ReLU -> depthwise 3x3 -> ReLU -> pointwise, random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(channels)
    c = channels
    inits = [numpy_helper.from_array(rng.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.1, "pw0"),
             numpy_helper.from_array(rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "dw"),
             numpy_helper.from_array(rng.standard_normal((c, c, 1, 1)).astype(np.float32) * 0.1, "pw1")]
    nodes = [helper.make_node("Conv", ["x", "pw0"], ["a"], name="pw0"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "dw"], ["c"], group=c, pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("Relu", ["c"], ["d"]), helper.make_node("Conv", ["d", "pw1"], ["y"], name="pw1")]
    shape = [1, c, SIZE, SIZE]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def quantize_u8s8(src: Path, dest: Path, shape: list[int]) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.random(shape, dtype=np.float32)} for _ in range(8)])

        def get_next(self):
            return next(self.it, None)

    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(str(src), str(dest), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return dest


def main() -> int:
    import onnxruntime as ort

    from toolchain.bench.latency import interleaved
    from toolchain.bench.results import publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=240)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()

    def session(path: Path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = 1, 1, 3
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    fns = {}
    with tempfile.TemporaryDirectory() as tmp:
        for c in CHANNELS:
            fp32 = block_model(c, Path(tmp) / f"c{c}.onnx")
            int8 = quantize_u8s8(fp32, Path(tmp) / f"c{c}.int8.onnx", [1, c, SIZE, SIZE])
            x = np.random.default_rng(1).random((1, c, SIZE, SIZE), dtype=np.float32)
            for kind, path in (("fp32", fp32), ("int8", int8)):
                s = session(path)
                fns[f"{c}/{kind}"] = lambda s=s, x=x: s.run(None, {"x": x})
        stats = interleaved(fns, warmup=10, runs=args.runs, rounds=args.rounds, max_seconds=30)
    rows = []
    for c in CHANNELS:
        f, q = stats[f"{c}/fp32"], stats[f"{c}/int8"]
        rows.append({"channels": c, "multiple_of_16": c % 16 == 0, "fp32_p50_ms": f.p50, "int8_p50_ms": q.p50,
                     "int8_us_per_channel": 1e3 * q.p50 / c, "speedup": f.p50 / q.p50})
    doc = {"host": host_info(), "versions": library_versions(), "date": time.strftime("%Y-%m-%d"),
           "block": f"pw1x1 -> ReLU -> dw3x3 -> ReLU -> pw1x1 at {SIZE}x{SIZE}, batch 1, 1 thread, U8S8 QDQ per-channel",
           "rows": rows}
    h = doc["host"]
    md = ["# Channel counts and int8 speed (depthwise blocks)", "",
          (f"Machine: {h['cpu']} ({h['cores']} cores, {', '.join(h['isa'])}); onnxruntime {doc['versions'].get('onnxruntime')}. "
          f"Measured {doc['date']}; {doc['block']}; fp32 and int8 of every width interleaved in the same rounds. "
          "Rerun: `python benchmarks/int8_channel_alignment.py`."), "",
          "| channels | multiple of 16 | fp32 p50 ms | int8 p50 ms | int8 us/channel | int8 speedup |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['channels']} | {'yes' if r['multiple_of_16'] else 'no'} | {r['fp32_p50_ms']:.3f} | "
                  f"{r['int8_p50_ms']:.3f} | {r['int8_us_per_channel']:.2f} | {r['speedup']:.2f}x |")
    publish(args.results, "int8_channel_alignment", doc, "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
