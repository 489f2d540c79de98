"""ONNX Runtime (CPU execution provider): edgeopt's first and default engine."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from toolchain.config.target import RuntimeOptions
from toolchain.errors import ModelLoadError, missing_file

# Profile names -> onnxruntime.GraphOptimizationLevel member names (one table for every caller).
ORT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
# Float compute ops that should have become int8 kernels in a fully fused quantized graph.
FP32_COMPUTE = {
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "Add",
    "Mul",
    "FusedConv",
    "FusedMatMul",
    "FusedGemm",
}
QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# The session config key that skips named graph optimizers (any ORT API can set it).
DISABLE_KEY = "optimization.disable_specified_optimizers"


def graph_level(name: str):
    """onnxruntime.GraphOptimizationLevel for a profile's level name ("disable" .. "all")."""
    import onnxruntime as ort

    return getattr(ort.GraphOptimizationLevel, ORT_LEVELS[name])


def session_options(runtime: RuntimeOptions):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = graph_level(runtime.graph_optimization_level)
    opts.intra_op_num_threads = runtime.intra_op_threads
    opts.inter_op_num_threads = runtime.inter_op_threads
    opts.enable_cpu_mem_arena = runtime.enable_cpu_mem_arena
    opts.enable_mem_pattern = runtime.enable_mem_pattern
    disable_optimizers(opts, runtime.disabled_optimizers)
    # fatal only: a failing load or run raises (and is reported once, as one line); ORT's own log
    # line would be a second stderr line, and its warnings about unused initializers are noise
    opts.log_severity_level = 4
    return opts


def disable_optimizers(opts, names: list[str]) -> None:
    if names:
        opts.add_session_config_entry(DISABLE_KEY, ",".join(names))


def optimized_op_types(model: Path, opts) -> Counter:
    """Op types of the graph ORT builds from `model` with session options `opts` (the session
    only optimizes and saves; it never runs). The one place ORT's optimized graph is read back."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        return Counter(
            n.op_type for n in onnx.load(opts.optimized_model_filepath, load_external_data=False).graph.node
        )


def first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


class OrtRuntime:
    name = "onnxruntime"

    def __init__(self, options: RuntimeOptions):
        self.options = options

    def version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def load(self, model: str | Path | bytes):
        import onnxruntime as ort

        if not isinstance(model, bytes):
            model = Path(model)
            if not model.is_file():
                raise missing_file(model, "model file", "check the path", ModelLoadError)
        try:
            source = model if isinstance(model, bytes) else str(model)
            return ort.InferenceSession(
                source, session_options(self.options), providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT raises several unrelated types (Fail, InvalidGraph, RuntimeException)
            shown = "the model" if isinstance(model, bytes) else model.name
            raise ModelLoadError(
                f"cannot load {shown} as an ONNX/ORT model ({first_line(err)})",
                "give a valid .onnx or .ort file (re-export it if it was truncated)",
            ) from None

    def settings(self) -> dict:
        o = self.options
        return {
            "graph_optimization_level": o.graph_optimization_level,
            "intra_op_threads": o.intra_op_threads,
            "inter_op_threads": o.inter_op_threads,
            "enable_cpu_mem_arena": o.enable_cpu_mem_arena,
            "enable_mem_pattern": o.enable_mem_pattern,
            **({"session_config": {DISABLE_KEY: ",".join(o.disabled_optimizers)}} if o.disabled_optimizers else {}),
            "providers": ["CPUExecutionProvider"],
        }

    def optimized_op_types(self, model: Path) -> Counter:
        return optimized_op_types(model, session_options(self.options))

    def optimized_op_counts(self, model: Path) -> dict[str, int] | None:
        """None for .ort files: already optimized, and ORT cannot re-save them as ONNX."""
        if Path(model).suffix == ".ort":
            return None
        ops = self.optimized_op_types(model)
        return {
            "total": sum(ops.values()),
            "fp32_compute": sum(c for op, c in ops.items() if op in FP32_COMPUTE),
            "quantize_dequantize": sum(c for op, c in ops.items() if op in QDQ),
            "int8_kernels": sum(
                c
                for op, c in ops.items()
                if op.startswith("QLinear") or op in {"QGemm", "MatMulInteger", "ConvInteger"}
            ),
        }

    def memprobe_args(self) -> list[str]:
        o = self.options
        return [
            "--threads",
            str(o.intra_op_threads),
            "--level",
            ORT_LEVELS[o.graph_optimization_level],
            "--arena",
            str(int(o.enable_cpu_mem_arena)),
            "--mem-pattern",
            str(int(o.enable_mem_pattern)),
            *(["--disable-optimizers", ",".join(o.disabled_optimizers)] if o.disabled_optimizers else []),
        ]

    def with_threads(self, threads: int) -> OrtRuntime:
        return OrtRuntime(self.options.model_copy(update={"intra_op_threads": threads}))
