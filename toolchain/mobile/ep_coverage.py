"""Which execution providers could run how much of a mobile model, before `.ort` conversion.

NNAPI and CoreML: onnxruntime's own mobile usability checker
(`onnxruntime.tools.mobile_helpers.usability_checker`, what `python -m
onnxruntime.tools.check_onnx_model_mobile_usability` runs). We call its steps directly rather
than the CLI module, because that module calls `logging.basicConfig()` at import and so would
reconfigure our process's logging; the checker's log lines are captured into `log`.

XNNPACK: the checker does not cover it, and the installed onnxruntime wheel has no XNNPACK EP
to ask. The rules below restate ORT's source (microsoft/onnxruntime):
  - onnxruntime/core/providers/xnnpack/detail/node_support_checker.cc: `IsNodeSupported` takes
    ai.onnx Conv, ConvTranspose, QLinearConv, MaxPool, AveragePool, Softmax, Resize, Gemm,
    MatMul; `IsNodeSupportedWithFusion` fuses Relu/Clip into a preceding fp32 (non-QDQ) NHWC
    Conv, MaxPool or AveragePool.
  - onnxruntime/core/providers/xnnpack/detail/utils.cc `GetQuantizedOpType`: the QDQ node units
    it accepts are Conv, MaxPool, AveragePool, Softmax, Resize, ConvTranspose.
  - xnnpack_execution_provider.cc `GetCapability` claims a whole QDQ node unit (DQ inputs,
    target node, Q outputs) when its target op is supported.
The per-op `IsOnnxNodeSupported` checks (2-D only, constant weights, attribute limits) are
approximated by the shape/constant checks in `_xnnpack_supports`, and QDQ units are found with
a simplified version of ORT's selectors, so the XNNPACK result is labelled "approximate".
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolchain.mobile.memory_estimate import value_types, weight_names

_FLOAT = {1, 10, 16}  # float32, float16, bfloat16 element types
_QUANT = {2, 3}  # uint8, int8
_XNN_FP32 = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "Softmax", "Resize", "Gemm", "MatMul", "QLinearConv"}
_XNN_QDQ = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "Softmax", "Resize"}
_XNN_FUSABLE_INTO = {"Conv", "MaxPool", "AveragePool"}
_TWO_QUANT_INPUTS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}  # ORT's selectors want DQ on input and weight


@dataclass(frozen=True)
class EPCoverage:
    ep: str
    nodes_covered: int
    nodes_total: int
    partitions: int
    unsupported_ops: tuple[str, ...]
    source: str  # where the op list came from
    accuracy: str  # "checker" (ORT's own tool) or "approximate"
    suitability: str | None = None  # the checker's YES / MAYBE / NO; None for XNNPACK

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unsupported_ops": list(self.unsupported_ops)}


@dataclass(frozen=True)
class CoverageReport:
    model: str
    eps: tuple[EPCoverage, ...]
    log: tuple[str, ...]  # the usability checker's messages, captured

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "eps": {e.ep: e.to_dict() for e in self.eps}, "log": list(self.log)}


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# ---- QDQ node units -------------------------------------------------------------------------

def node_units(graph) -> list[tuple[Any, list]]:
    """(target node, all nodes of its unit) for every node that is not a bare Q/DQ.

    A target forms a QDQ unit when input 0 (and the weight, for Conv/Gemm/MatMul) comes from
    DequantizeLinear and every output feeds only QuantizeLinear nodes and is not a graph
    output, which is the shape ORT's QDQ selectors look for. Standalone Q/DQ nodes not claimed
    by a unit are returned as single-node units of their own.
    """
    producer = {o: n for n in graph.node for o in n.output if o}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for x in n.input:
            if x:
                consumers.setdefault(x, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    units, claimed = [], set()
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        n_dq = 2 if n.op_type in _TWO_QUANT_INPUTS else 1
        dqs = [producer.get(x) for x in n.input[:n_dq]]
        outs = [o for o in n.output if o]
        qs = [c for o in outs for c in consumers.get(o, [])]
        is_qdq = (
            len(n.input) >= n_dq and all(d is not None and d.op_type == "DequantizeLinear" for d in dqs)
            and outs and not any(o in graph_outputs for o in outs)
            and qs and all(q.op_type == "QuantizeLinear" for q in qs)
        )
        if is_qdq:
            # a bias DQ (Conv input 2) belongs to the unit too
            extra = [producer[x] for x in n.input[n_dq:] if x in producer and producer[x].op_type == "DequantizeLinear"]
            members = [*dqs, *extra, n, *qs]
            claimed.update(id(m) for m in members)
            units.append((n, members))
        else:
            units.append((n, [n]))
    for n in graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and id(n) not in claimed:
            units.append((n, [n]))
    return units


# ---- XNNPACK --------------------------------------------------------------------------------

def _xnnpack_supports(node, members: list, types: dict, weights: set[str]) -> bool:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return False
    x = types.get(node.input[0]) if node.input else None
    rank = len(x[1]) if x and x[1] is not None else None
    if len(members) > 1:  # QDQ unit: the quantized element type comes from the DQ input
        dq_in = types.get(members[0].input[0])
        return op in _XNN_QDQ and (dq_in is None or dq_in[0] in _QUANT) and rank in (None, 4)
    if op not in _XNN_FP32 or (x is not None and op != "QLinearConv" and x[0] not in _FLOAT):
        return False
    spatial = op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "Resize", "QLinearConv")
    if spatial and rank is not None and rank != 4:  # XNNPACK kernels here are 2-D (NCHW in, NHWC inside)
        return False
    if op in ("Conv", "ConvTranspose") and node.input[1] not in weights:
        return False  # weights are packed once at load: they must be constant
    if op in ("Gemm", "MatMul"):
        b = node.input[1]
        if b not in weights or (rank is not None and rank != 2):
            return False
    if op == "Resize":
        modes = [a.s.decode() for a in node.attribute if a.name == "mode"]
        return modes == ["linear"]  # bilinear only
    return True


def xnnpack_coverage(proto) -> EPCoverage:
    """Approximate XNNPACK coverage of an ONNX model that has had shape inference."""
    from onnxruntime.tools.mobile_helpers.usability_checker import check_partitioning

    g = proto.graph
    types, weights = value_types(proto), weight_names(proto)
    covered: set[int] = set()
    unsupported: set[str] = set()
    units = node_units(g)  # holds the node wrappers, so the id()s in `covered` stay valid
    unit_of = {id(m): (t, ms) for t, ms in units for m in ms}
    for target, members in units:  # ORT walks in topological order; graph order is one
        if _xnnpack_supports(target, members, types, weights):
            covered.update(id(m) for m in members)
        elif target.op_type in ("Relu", "Clip") and len(members) == 1 and _fusable(target, g, covered, unit_of):
            covered.add(id(target))
        elif not any(id(m) in covered for m in members):
            unsupported.add(f"{target.domain or 'ai.onnx'}:{target.op_type}")

    class _Covered:  # duck-types the checker's _SupportedOpsChecker for its partition count
        def is_op_supported(self, node):
            return id(node) in covered

        def get_caveats(self):
            return []

    info = check_partitioning(g, _Covered(), require_fixed_input_sizes=False)
    return EPCoverage(
        ep="XNNPACK", nodes_covered=info.num_supported_nodes, nodes_total=info.num_nodes,
        partitions=info.num_partitions, unsupported_ops=tuple(sorted(unsupported)),
        source="onnxruntime/core/providers/xnnpack/detail/node_support_checker.cc (restated)",
        accuracy="approximate",
    )


def _fusable(act, graph, covered: set[int], unit_of: dict) -> bool:
    producer = {o: n for n in graph.node for o in n.output if o}
    src = producer.get(act.input[0])
    if src is None or id(src) not in covered or src.op_type not in _XNN_FUSABLE_INTO:
        return False
    return len(unit_of[id(src)][1]) == 1  # fusion never joins a QDQ unit


# ---- NNAPI / CoreML via ORT's checker -------------------------------------------------------

def check_model(onnx_path: str | Path, proto=None) -> CoverageReport:
    """Coverage of NNAPI, CoreML (NeuralNetwork, MLProgram) and XNNPACK for an ONNX model.

    Like ORT's checker (and the .ort conversion), the model is first optimized at level BASIC.
    `proto`, if given, is analysed instead of the file (e.g. with its batch already fixed).
    """
    import onnx
    from onnxruntime.tools.mobile_helpers import usability_checker as uc
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    handler = _ListHandler()
    logger = logging.getLogger("edgeopt.mobile.usability")
    logger.handlers[:] = [handler]
    logger.propagate = False  # the checker's INFO lines belong in the report, not on stderr
    logger.setLevel(logging.INFO)

    onnx_path = Path(onnx_path)
    with tempfile.TemporaryDirectory() as tmp:
        src = onnx_path
        if proto is not None:
            src = Path(tmp) / "input.onnx"
            onnx.save(proto, str(src))
        optimized = Path(tmp) / "optimized.onnx"
        optimize_model(src, optimized, use_external_initializers=True)
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info

        checks = [
            ("NNAPI", lambda m: uc.check_nnapi_partitions(m, True), "nnapi_supported_ops.md"),
            ("CoreML-NeuralNetwork", lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_neuralnetwork_ops.md"),
             "coreml_supported_neuralnetwork_ops.md"),
            ("CoreML-MLProgram", lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"),
             "coreml_supported_mlprogram_ops.md"),
        ]
        results = []
        for name, fn, md in checks:
            logger.info(f"Checking {name}")
            info = fn(model)
            info.print_analysis(logger, name)
            results.append(EPCoverage(
                ep=name, nodes_covered=info.num_supported_nodes, nodes_total=info.num_nodes,
                partitions=info.num_partitions, unsupported_ops=tuple(sorted(info.unsupported_ops)),
                source=f"onnxruntime/tools/mobile_helpers/{md}", accuracy="checker",
                suitability=info.suitability().name,
            ))
        results.append(xnnpack_coverage(model))
    return CoverageReport(model=onnx_path.name, eps=tuple(results), log=tuple(handler.lines))
