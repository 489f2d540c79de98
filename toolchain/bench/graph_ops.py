"""What ONNX Runtime actually runs: op counts of the session-optimized graph on this host.

A QDQ file is only fast when ORT fuses every DequantizeLinear -> op -> QuantizeLinear group into
an int8 kernel. Measured on MobileNetV2 (benchmarks/results/quant_schemes.md): with S8S8 on x86 a
third of the convolutions stay fp32 between Q/DQ/Transpose nodes and the model is no faster than
fp32. Counting what is left after optimization makes that visible in every report.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from toolchain.config.target import RuntimeOptions

# Float compute ops that should have become int8 kernels in a fully fused quantized graph.
FP32_COMPUTE = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "FusedConv", "FusedMatMul", "FusedGemm"}
QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def optimized_op_types(model: Path, opts) -> Counter:
    """Op types of the graph ORT builds from `model` with session options `opts` (the session
    only optimizes and saves; it never runs). The one place the optimized graph is read back."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node)


def optimized_op_counts(model: Path, runtime: RuntimeOptions) -> dict[str, int] | None:
    """Counts for the graph ORT builds from `model` here; None for .ort files (already optimized,
    and ORT cannot re-save them as ONNX)."""

    from toolchain.bench.session import session_options

    if Path(model).suffix == ".ort":
        return None
    ops = optimized_op_types(model, session_options(runtime))
    return {
        "total": sum(ops.values()),
        "fp32_compute": sum(c for op, c in ops.items() if op in FP32_COMPUTE),
        "quantize_dequantize": sum(c for op, c in ops.items() if op in QDQ),
        "int8_kernels": sum(c for op, c in ops.items() if op.startswith("QLinear") or op in {"QGemm", "MatMulInteger", "ConvInteger"}),
    }
