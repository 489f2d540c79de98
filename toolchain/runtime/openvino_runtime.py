"""OpenVINO (CPU plugin) as an edgeopt engine; needs the `openvino` extra.

It reads .onnx files directly and runs QDQ int8 graphs natively (Q/DQ pairs become its own
int8 kernels), but not ONNX Runtime's contrib operators (QLinearAdd, QGemm, FusedConv) that an
"extended" offline optimization bakes in: profiles using it ship "basic" (portable QDQ) files.
Compiled with a LATENCY hint (one stream: batch-1 calls, like ORT's sequential session), the
profile's intra-op thread count, and an inference precision hint: f32, or bf16 where the CPU has
it (AVX512-BF16 or AMX), a candidate form weighed under the accuracy budgets like int8.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from toolchain.config.target import RuntimeOptions
from toolchain.errors import BadInput, ModelLoadError, missing_file

_ORT_TYPES = {
    np.dtype(np.float32): "tensor(float)",
    np.dtype(np.float64): "tensor(double)",
    np.dtype(np.int64): "tensor(int64)",
    np.dtype(np.int32): "tensor(int32)",
    np.dtype(np.uint8): "tensor(uint8)",
    np.dtype(np.int8): "tensor(int8)",
    np.dtype(np.bool_): "tensor(bool)",
    np.dtype(np.float16): "tensor(float16)",
}
# Execution layer types that do the heavy arithmetic (OpenVINO CPU plugin names).
_COMPUTE = {"Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution", "Eltwise"}


def import_openvino():
    """The openvino module; a BadInput (exit 2) naming the extra when it is not installed."""
    try:
        import openvino
    except ImportError:
        raise BadInput(
            "the target profile's [runtime] engine = 'openvino' but OpenVINO is not installed",
            "pip install 'edgeopt[openvino]'",
        ) from None
    return openvino


class OpenVinoSession:
    """A compiled model behind ONNX Runtime's get_inputs / get_outputs / run convention."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._request = compiled.create_infer_request()
        self._inputs = [_info(p) for p in compiled.inputs]
        self._outputs = [_info(p) for p in compiled.outputs]

    def get_inputs(self) -> list:
        return self._inputs

    def get_outputs(self) -> list:
        return self._outputs

    def run(self, output_names, feeds: dict) -> list:
        result = self._request.infer(feeds)  # copies the outputs: the next call reuses its buffers
        ports = list(self.compiled.outputs)
        if output_names is None:
            return [result[p] for p in ports]
        index = {info.name: i for i, info in enumerate(self._outputs)}
        return [result[ports[index[name]]] for name in output_names]


def _info(port):
    from toolchain.runtime.base import TensorInfo

    dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    return TensorInfo(
        port.any_name, dims, _ORT_TYPES.get(np.dtype(port.get_element_type().to_dtype()), "tensor(float)")
    )


class OpenVinoRuntime:
    name = "openvino"

    def __init__(self, options: RuntimeOptions):
        self.options = options

    def version(self) -> str:
        return import_openvino().__version__

    def settings(self) -> dict:
        """OpenVINO compile_model properties (CPU device)."""
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.options.inference_precision}
        if self.options.intra_op_threads > 0:  # 0: OpenVINO's own choice, like ORT's
            config["INFERENCE_NUM_THREADS"] = self.options.intra_op_threads
        return {"device": "CPU", **config}

    def compile(self, model: str | Path | bytes):
        ov = import_openvino()
        if not isinstance(model, bytes):
            model = Path(model)
            if not model.is_file():
                raise missing_file(model, "model file", "check the path", ModelLoadError)
        shown = "the model" if isinstance(model, bytes) else model.name
        config = {k: v for k, v in self.settings().items() if k != "device"}
        try:
            core = ov.Core()
            read = core.read_model(model, b"") if isinstance(model, bytes) else core.read_model(str(model))
            return core.compile_model(read, "CPU", config)
        except Exception as err:  # OpenVINO raises RuntimeError subclasses for every parse/compile failure
            text = str(err).strip().splitlines()
            why = next(
                (line.strip(" -") for line in text  # the line naming the operators it cannot convert
                 if "No conversion rule" in line or "not supported" in line or "Cannot create" in line),
                text[0] if text else type(err).__name__,
            )
            raise ModelLoadError(
                f"OpenVINO cannot compile {shown} ({why[:200]})",
                'ship a portable .onnx: [artifact] offline_optimization_level = "basic"',
            ) from None

    def load(self, model: str | Path | bytes) -> OpenVinoSession:
        return OpenVinoSession(self.compile(model))

    def executed_layers(self, model: Path) -> list[tuple[str, str]]:
        """(layer type, runtime precision) of every layer the CPU plugin executes."""
        compiled = self.compile(model)
        return [
            (op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
            for op in compiled.get_runtime_model().get_ordered_ops()
        ]

    def optimized_op_types(self, model: Path) -> Counter:
        return Counter(kind for kind, _ in self.executed_layers(model))

    def optimized_op_counts(self, model: Path) -> dict[str, int] | None:
        layers = self.executed_layers(model)
        compute = [prec for kind, prec in layers if kind in _COMPUTE]
        return {
            "total": len(layers),
            "fp32_compute": sum(p in ("f32", "FP32", "bf16", "BF16") for p in compute),
            "quantize_dequantize": sum(kind == "FakeQuantize" for kind, _ in layers),
            "int8_kernels": sum(p.lower() in ("i8", "u8") for p in compute),
        }

    def memprobe_args(self) -> list[str]:
        return [
            "--engine",
            "openvino",
            "--threads",
            str(self.options.intra_op_threads),
            "--precision",
            self.options.inference_precision,
        ]

    def with_threads(self, threads: int) -> OpenVinoRuntime:
        return OpenVinoRuntime(self.options.model_copy(update={"intra_op_threads": threads}))
