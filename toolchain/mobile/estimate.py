"""Analytical latency estimate: a roofline per op from shapes and device figures, summed.

For each op: MACs (Conv, ConvTranspose, Gemm, MatMul and their quantized forms, computed from
shapes), bytes moved (weights + activations read + activations written), then
`time = max(2 * MACs / rate, bytes / bandwidth) + op_overhead`, with the int8 rate for
quantized ops (QDQ units, QLinear*/ *Integer) and the fp32 rate otherwise. A QDQ unit is costed
once, at its quantized input/output sizes: ORT fuses it into one int8 kernel.

The figures are theoretical peaks, so the result is an optimistic bound, not a prediction:
real kernels reach a fraction of peak, and small models are dominated by per-op dispatch,
which only `op_overhead_us` models. Always labelled "estimated"; never mix it with `edgeopt
bench` numbers, which are measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from toolchain.config.device import DeviceFigures
from toolchain.mobile.ep_coverage import node_units
from toolchain.mobile.memory_estimate import infer_shapes, nbytes, topo_order, value_types

# Reference figures, derived from datasheets and microarchitecture, not measured (see report).
REFERENCE_DEVICES: dict[str, DeviceFigures] = {
    # Mid-range phone big core: Cortex-A76 at ~2.2 GHz (Snapdragon 720G: 2.3 GHz, Helio G90: 2.05 GHz).
    # fp32: 2 x 128-bit NEON FMA pipes = 2 * 4 lanes * 2 FLOP = 16 FLOP/cycle -> 35.2 GFLOP/s.
    # int8: Armv8.2 SDOT, 16 MACs per 128-bit instruction on 2 pipes = 64 ops/cycle -> 140.8 GOP/s.
    # memory: LPDDR4X-3733 on a 2 x 16-bit bus (typical mid-range SoC) = 3733e6 * 4 B -> 14.9 GB/s.
    "cortex-a76": DeviceFigures(int8_gops=140.8, fp32_gflops=35.2, memory_gbps=14.9,
                                source="derived: Cortex-A76 @2.2 GHz, 2x128-bit NEON, SDOT; LPDDR4X-3733 x32"),
    # Raspberry Pi 4: BCM2711, Cortex-A72 at 1.5 GHz (1.8 GHz on boards from 2020 on).
    # fp32: 2 x 128-bit NEON pipes with FMA = 16 FLOP/cycle -> 24 GFLOP/s.
    # int8: Armv8.0-A has no SDOT; int8 GEMMs use widening SMLAL (8 MACs per 128-bit instruction),
    #       which issues on one pipe: 8 MACs = 16 ops/cycle -> 24 GOP/s (no faster than fp32).
    # memory: LPDDR4-3200 on a 32-bit bus = 3200e6 * 4 B -> 12.8 GB/s.
    "raspberry-pi-4": DeviceFigures(int8_gops=24.0, fp32_gflops=24.0, memory_gbps=12.8,
                                    source="derived: Cortex-A72 @1.5 GHz, 2x128-bit NEON, no SDOT; LPDDR4-3200 x32"),
}

_INT8_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}


@dataclass(frozen=True)
class OpCost:
    name: str
    op: str
    precision: str  # "int8" | "fp32" | "none" (no MACs)
    macs: int
    bytes: int
    ms: float | None
    bound: str | None  # "compute" | "memory"


@dataclass(frozen=True)
class LatencyEstimate:
    macs_int8: int
    macs_fp32: int
    bytes_moved: int
    latency_ms: float | None
    compute_ms: float | None
    memory_ms: float | None
    overhead_ms: float | None
    missing: tuple[str, ...]  # figures needed but absent
    ops: tuple[OpCost, ...]
    device_source: str = ""
    label: str = "estimated"

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        d = asdict(self)
        d["missing"] = list(self.missing)
        d["ops"] = [asdict(o) for o in sorted(self.ops, key=lambda o: -(o.ms or 0.0))[:top]]
        d["ops_total"] = len(self.ops)
        return d


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def macs_of(node, types: dict) -> int:
    """Multiply-accumulates of one node from static shapes; 0 for ops without a MAC loop."""
    op = node.op_type

    def shape(i: int):
        if len(node.input) <= i or node.input[i] not in types:
            return None
        return types[node.input[i]][1]

    out = types.get(node.output[0], (0, None))[1] if node.output else None
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = shape(3 if op == "QLinearConv" else 1)  # [Cout, Cin/group, k...]
        return _prod(out) * _prod(w[1:]) if out is not None and w is not None else 0
    if op == "ConvTranspose":
        x, w = shape(0), shape(1)  # w: [Cin, Cout/group, k...]; every input pixel hits a kernel
        return _prod(x) * _prod(w[1:]) if x is not None and w is not None else 0
    if op == "Gemm":
        a = shape(0)
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        return _prod(out) * a[0 if trans_a else 1] if out is not None and a is not None else 0
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = shape(0)
        return _prod(out) * a[-1] if out is not None and a else 0
    return 0


def estimate_latency(proto, device: DeviceFigures | None) -> LatencyEstimate:
    """Roofline estimate for a fixed-shape ONNX ModelProto on `device`."""
    proto = infer_shapes(proto)
    g = proto.graph
    types = value_types(proto)
    nodes = topo_order(g)  # keep referenced: protobuf wrappers (and so their id()) live only while held
    order = {id(n): i for i, n in enumerate(nodes)}
    ops: list[OpCost] = []
    for target, members in sorted(node_units(g), key=lambda u: order[id(u[0])]):
        if target.op_type == "Constant":
            continue
        qdq = len(members) > 1
        if qdq:  # read the DQs' quantized inputs, write the Qs' quantized outputs
            dq_src = {m.output[0]: m.input[0] for m in members if m.op_type == "DequantizeLinear"}
            reads = [dq_src.get(x, x) for x in target.input if x]
            writes = [m.output[0] for m in members if m.op_type == "QuantizeLinear"]
        else:
            reads, writes = [x for x in target.input if x], [y for y in target.output if y]
        moved = sum(nbytes(types, t) or 0 for t in {*reads, *writes})
        macs = macs_of(target, types)
        precision = "none" if not macs else ("int8" if qdq or target.op_type in _INT8_OPS else "fp32")
        ops.append(OpCost(name=target.name or target.op_type, op=target.op_type, precision=precision,
                          macs=macs, bytes=moved, ms=None, bound=None))
    return _apply_device(ops, device)


def _apply_device(ops: list[OpCost], device: DeviceFigures | None) -> LatencyEstimate:
    macs8 = sum(o.macs for o in ops if o.precision == "int8")
    macs32 = sum(o.macs for o in ops if o.precision == "fp32")
    moved = sum(o.bytes for o in ops)
    missing = []
    if device is None:
        missing = ["device"]
    else:
        if macs8 and device.int8_gops is None:
            missing.append("int8_gops")
        if macs32 and device.fp32_gflops is None:
            missing.append("fp32_gflops")
        if device.memory_gbps is None:
            missing.append("memory_gbps")
    if missing:
        return LatencyEstimate(macs8, macs32, moved, None, None, None, None, tuple(missing), tuple(ops),
                               device.source if device else "")
    costed, compute_total, memory_total = [], 0.0, 0.0
    overhead = device.op_overhead_us * 1e-3
    for o in ops:
        rate = {"int8": device.int8_gops, "fp32": device.fp32_gflops}.get(o.precision)
        compute = 2 * o.macs / (rate * 1e9) * 1e3 if rate else 0.0
        memory = o.bytes / (device.memory_gbps * 1e9) * 1e3
        compute_total += compute
        memory_total += memory
        costed.append(OpCost(o.name, o.op, o.precision, o.macs, o.bytes, max(compute, memory) + overhead,
                             "compute" if compute >= memory else "memory"))
    total = sum(o.ms for o in costed)
    return LatencyEstimate(macs8, macs32, moved, total, compute_total, memory_total, overhead * len(ops),
                           (), tuple(costed), device.source)
