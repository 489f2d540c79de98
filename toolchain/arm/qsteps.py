"""Find each graph output's quantization step (1 LSB), from a .onnx or a .ort file.

The parity rule for quantized models is "within 1 LSB of the output quantization", so we need
the LSB. For an output produced by DequantizeLinear it is that node's (scalar) scale; for an
integer output it is 1. Anything else (a float op after the last DequantizeLinear, or a
per-channel scale) has no single step and gets None: the caller falls back to a float rule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolchain.errors import ModelLoadError

_INT_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64"}  # TensorProto ids
_FLOAT = 1


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}


def _graph(model_path: Path) -> _GraphView:
    model_path = Path(model_path)
    return _OrtGraph(model_path) if model_path.suffix == ".ort" else _OnnxGraph(model_path)


def is_quantized(model_path: Path) -> bool:
    """True if any node is a quantization op (QDQ pair, QLinear*, integer matmul/conv)."""
    ops = {op for op, _ in _graph(model_path).producers()}
    return any(op in _QUANT_OPS or op.startswith("QLinear") for op in ops)


def output_steps(model_path: Path) -> list[float | None]:
    """One entry per graph output, in graph order."""
    graph = _graph(model_path)
    steps: list[float | None] = []
    for name in graph.outputs:
        if graph.output_elem_type(name) in _INT_TYPES:
            steps.append(1.0)
            continue
        node = graph.producer(name)
        step = None
        if node is not None and node[0] == "DequantizeLinear":
            scale = graph.initializer(node[1][1]) if len(node[1]) > 1 else None
            if scale is not None and scale.size == 1:
                step = float(scale.reshape(()))
        steps.append(step)
    return steps


class _GraphView:
    """What the step analysis reads from a graph; subclasses fill the three tables from .onnx or .ort."""

    outputs: list[str]
    _types: dict[str, int]
    _producers: dict[str, tuple[str, list[str]]]

    def output_elem_type(self, name: str) -> int:
        return self._types.get(name, _FLOAT)

    def producer(self, name: str):
        return self._producers.get(name)

    def producers(self):
        return self._producers.values()

    def initializer(self, name: str) -> np.ndarray | None:
        raise NotImplementedError


class _OnnxGraph(_GraphView):
    def __init__(self, path: Path):
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # noqa: BLE001 - onnx raises many types for a bad file
            raise ModelLoadError(f"cannot read ONNX model {path}: {err}", "give a valid .onnx file") from None
        g = model.graph
        self.outputs = [o.name for o in g.output]
        self._types = {o.name: o.type.tensor_type.elem_type for o in g.output}
        self._producers = {out: (n.op_type, list(n.input)) for n in g.node for out in n.output}
        self._inits = {t.name: t for t in g.initializer}
        self._to_array = numpy_helper.to_array
        # Constant nodes also carry scales in models exported by some tools.
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self._inits[n.output[0]] = n.attribute[0].t

    def initializer(self, name: str) -> np.ndarray | None:
        t = self._inits.get(name)
        return None if t is None else self._to_array(t)


class _OrtGraph(_GraphView):
    """Reads the flatbuffer with the schema classes that ship inside the onnxruntime wheel."""

    def __init__(self, path: Path):
        from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs

        buf = bytearray(path.read_bytes())
        if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
            raise ModelLoadError(f"{path} is not an ORT format model", "give a .ort file made by edgeopt")
        g = fbs.InferenceSession.InferenceSession.GetRootAsInferenceSession(buf, 0).Model().Graph()
        self.outputs = [g.Outputs(i).decode() for i in range(g.OutputsLength())]
        self._types: dict[str, int] = {}
        for i in range(g.NodeArgsLength()):
            arg = g.NodeArgs(i)
            tinfo = arg.Type()
            value = tinfo.Value() if tinfo is not None else None
            if value is not None and arg.Name().decode() in self.outputs:
                tensor = fbs.TensorTypeAndShape.TensorTypeAndShape()
                tensor.Init(value.Bytes, value.Pos)
                self._types[arg.Name().decode()] = tensor.ElemType()
        self._producers = {}
        for i in range(g.NodesLength()):
            n = g.Nodes(i)
            ins = [n.Inputs(j).decode() for j in range(n.InputsLength())]
            for j in range(n.OutputsLength()):
                self._producers[n.Outputs(j).decode()] = (n.OpType().decode(), ins)
        self._inits = {}
        for i in range(g.InitializersLength()):
            t = g.Initializers(i)
            self._inits[t.Name().decode()] = t

    def initializer(self, name: str) -> np.ndarray | None:
        t = self._inits.get(name)
        if t is None or t.DataType() != _FLOAT or t.RawDataIsNone():
            return None
        return np.frombuffer(t.RawDataAsNumpy().tobytes(), dtype="<f4")
