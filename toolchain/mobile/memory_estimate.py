"""Static memory estimate: weight bytes plus the largest set of activations alive at once.

Walk the graph in topological order; an activation is live from the step that produces it (or
from step 0 for a graph input) through the step of its last consumer (or to the end for a graph
output). Tensors computed from weights alone (a DequantizeLinear of an int8 weight) are not
activations: ORT folds or fuses them. The peak is the largest sum of live activation bytes at
any step. Activations are counted at their graph dtype, so in a QDQ model the float outputs of
activation DequantizeLinear nodes count, though ORT's QDQ fusion keeps most of them int8. This is what a
runtime with perfect buffer reuse would need on top of the weights; ORT's planner adds
alignment, arena slack and kernel scratch (im2col buffers, packed weights), so the measured
`peak_memory_mb` of `edgeopt bench` is higher. Reported with `"label": "estimated"`.

Also home of the graph helpers the other estimates share (shape inference, tensor sizes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolchain.errors import BadInput, ModelLoadError, missing_file


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: int
    peak_activation_bytes: int
    peak_step: int  # index in topological order of the node running at the peak
    peak_node: str
    live_at_peak: tuple[str, ...]
    label: str = "estimated"

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.peak_activation_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "live_at_peak": list(self.live_at_peak), "total_bytes": self.total_bytes}


# ---- graph helpers (shared by ep_coverage and estimate) -------------------------------------

def load_onnx(path: str | Path, batch: int | None = None):
    """Load an .onnx file; with `batch`, pin a symbolic leading dimension to it (as the .ort
    conversion does) so every tensor gets a static shape."""
    import onnx

    path = Path(path)
    if path.suffix == ".ort":
        raise BadInput(f"{path.name} is an .ort file: its graph has no shape information to analyse",
                       f"pass the .onnx it was converted from{_run_report_hint(path)}")
    if not path.is_file():
        raise missing_file(path, "model file", "check the path", ModelLoadError)
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf raises DecodeError, onnx raises its own types
        raise ModelLoadError(f"cannot load {path.name} as ONNX ({type(err).__name__})",
                             "give a valid .onnx file") from None
    return pin_batch(proto, batch)


def pin_batch(proto, batch: int | None):
    """`proto` with a symbolic leading input dimension fixed to `batch` (None: unchanged)."""
    if batch is not None and _has_symbolic_batch(proto):
        from toolchain.stages.convert import fix_batch

        proto = fix_batch(proto, batch)
    return proto


def _run_report_hint(path: Path) -> str:
    """`edgeopt run` writes each mobile target's report beside its artifact: point there."""
    beside = path.parent / "mobile_report.json"
    return f"; `edgeopt run` wrote this analysis to {beside}" if beside.is_file() else ""


# Domains of ONNX Runtime's own fused ops (FusedConv, NCHWc layouts...) that its offline
# optimizer writes into an .onnx target's artifact: ONNX shape inference knows none of them.
_ORT_INTERNAL_DOMAINS = ("com.microsoft",)


def ort_internal_ops(proto) -> list[str]:
    """ORT-internal ops (from its offline optimizer) whose outputs ONNX shape inference cannot
    shape: a graph holding them is an artifact, not a model to analyse or compress."""
    types = value_types(infer_shapes(proto))
    return sorted({node.op_type for node in proto.graph.node
                   if node.domain.startswith(_ORT_INTERNAL_DOMAINS)
                   and any(o and (o not in types or types[o][1] is None) for o in node.output)})


def check_analysable(proto, path: str | Path) -> None:
    """Refuse in one line a graph whose ORT-internal ops leave tensors without static shapes;
    every analysis here (and ORT's own usability checker) needs those shapes."""
    path = Path(path)
    blind = ort_internal_ops(proto)
    if blind:
        raise BadInput(f"{path.name} was optimized offline by ONNX Runtime: its {', '.join(blind)} ops have no "
                       "shapes to analyse", "pass the ONNX model before optimization (the one exported or given "
                       f"to `edgeopt compress`){_run_report_hint(path)}")


def _has_symbolic_batch(proto) -> bool:
    inits = {i.name for i in proto.graph.initializer}
    for inp in proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name not in inits and dims and not dims[0].HasField("dim_value"):
            return True
    return False


def infer_shapes(proto):
    import onnx

    # data_prop lets Reshape/Shape chains resolve to static shapes on fixed-input models.
    return onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)


def value_types(proto) -> dict[str, tuple[int, tuple[int, ...] | None]]:
    """name -> (element type, static shape or None) for every typed tensor in the main graph."""
    out: dict[str, tuple[int, tuple[int, ...] | None]] = {}
    g = proto.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        tt = vi.type.tensor_type
        if not tt.elem_type:
            continue
        shape = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shape = tuple(d.dim_value for d in tt.shape.dim)
        out[vi.name] = (tt.elem_type, shape)
    for init in g.initializer:
        out[init.name] = (init.data_type, tuple(init.dims))
    for node in g.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].HasField("t"):
            t = node.attribute[0].t
            out[node.output[0]] = (t.data_type, tuple(t.dims))
    return out


def elem_size(elem_type: int) -> int:
    import onnx

    np_dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    return int(np_dtype.itemsize)


def nbytes(types: dict, name: str) -> int | None:
    """Bytes of tensor `name`, or None when its type or shape is unknown."""
    if name not in types or types[name][1] is None:
        return None
    elem, shape = types[name]
    n = 1
    for d in shape:
        n *= d
    return n * elem_size(elem)


def topo_order(graph) -> list:
    """Nodes in a topological order (ONNX requires one already; Kahn's keeps it stable)."""
    produced_by = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    deps = [{produced_by[x] for x in n.input if x in produced_by} for n in graph.node]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    remaining = [len(d) for d in deps]
    ready = [i for i, r in enumerate(remaining) if r == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users.get(i, []):
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) != len(graph.node):
        raise BadInput("the graph has a cycle", "re-export the model")
    return [graph.node[i] for i in order]


def weight_names(proto) -> set[str]:
    """Initializers and Constant outputs: weights, resident for the whole run."""
    names = {i.name for i in proto.graph.initializer}
    names.update(n.output[0] for n in proto.graph.node if n.op_type == "Constant")
    return names


def folded_names(nodes, weights: set[str]) -> set[str]:
    """Outputs computed from weights alone (e.g. DequantizeLinear of a quantized weight): ORT
    folds or fuses them at load, so they are neither activations nor extra weights."""
    folded: set[str] = set()
    for n in nodes:
        ins = [x for x in n.input if x]
        if ins and all(x in weights or x in folded for x in ins):
            folded.update(y for y in n.output if y)
    return folded


# ---- the estimate ---------------------------------------------------------------------------

def estimate_memory(proto) -> MemoryEstimate:
    """Estimate for an ONNX ModelProto whose tensors all have static shapes after inference."""
    proto = infer_shapes(proto)
    g = proto.graph
    types = value_types(proto)
    weights = weight_names(proto)
    weights_bytes = sum(nbytes(types, w) or 0 for w in weights)

    ordered = topo_order(g)
    resident = weights | folded_names(ordered, weights)
    nodes = [n for n in ordered if n.op_type != "Constant" and not all(y in resident for y in n.output if y)]
    last = len(nodes) - 1
    start: dict[str, int] = {i.name: 0 for i in g.input if i.name not in resident}
    end: dict[str, int] = dict(start)
    for step, node in enumerate(nodes):
        for x in node.input:
            if x and x not in resident:
                end[x] = step
        for y in node.output:
            if y:
                start[y] = end[y] = step
    for o in g.output:
        end[o.name] = last  # outputs stay live until the caller reads them

    sizes: dict[str, int] = {}
    for name in start:
        size = nbytes(types, name)
        if size is None:
            raise BadInput(f"tensor '{name}' has no static shape after shape inference",
                           "give a fixed-shape model (--target with shapes = \"fixed\", or fix the input shapes)")
        sizes[name] = size

    best, best_step, best_live = -1, 0, []
    for step in range(len(nodes)):
        live = [n for n in start if start[n] <= step <= end[n]]
        total = sum(sizes[n] for n in live)
        if total > best:
            best, best_step, best_live = total, step, live
    return MemoryEstimate(
        weights_bytes=int(weights_bytes), peak_activation_bytes=max(best, 0), peak_step=best_step,
        peak_node=(nodes[best_step].name or nodes[best_step].op_type) if nodes else "",
        live_at_peak=tuple(sorted(best_live)),
    )
