"""Int8 weights, fp32 compute: a converted .onnx artifact at about a quarter of its weight bytes,
running the very graph it ran before.

Why this exists: int8 kernels do not always pay. After structured pruning the narrow network ran
faster in fp32 than in int8 (shapes-mobilenet-structured, 64 px, 1 thread: 0.121 vs 0.163 ms), and
the tabular MLP's int8 artifact ran at 0.68x of fp32. Shipping fp32 there used to mean shipping
4x the bytes.

What it does: every float32 weight of a Conv, Gemm, MatMul or RNN that saves at least
`min_saved_bytes` is stored as symmetric int8 with one fp32 scale per output channel, and the
graph rebuilds it with Cast(int8 -> float) -> Mul(scale), writing the weight's original name. ORT
constant-folds those two nodes when it loads the model (any graph optimization level but
"disable"), so the session holds a plain fp32 graph: measured before building this, on the
structured-pruned MobileNet, 170,454 -> 57,550 bytes at 157.32 vs 157.37 us.
DequantizeLinear would state the same thing more directly, but ORT keeps it unfolded for its QDQ
int8 fusions (it folds only with the session option `session.disable_quant_qdq`, which every app
would then have to set).

It runs on the *converted* artifact: ORT's offline optimizer would fold the pairs back into fp32
initializers at build time. `verify` proves the folding on this model: the graph ORT builds from
the result has exactly the op counts of the graph it builds from the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.config.stages import Int8WeightsConfig
from toolchain.errors import VerificationError
from toolchain.fsio import atomic_path

# op type -> {input index of a weight: the axis of its output channels}. Gemm's depends on transB.
_WEIGHT_SLOTS: dict[str, dict[int, int]] = {
    "Conv": {1: 0},  # [out, in/groups, k...]
    "FusedConv": {1: 0},  # com.microsoft: what the offline optimizer makes of Conv + activation
    "ConvTranspose": {1: 1},  # [in, out/groups, k...]
    "MatMul": {1: -1},  # [..., in, out]
    "GRU": {1: 1, 2: 1},  # W, R: [directions, gates*hidden, in]
    "LSTM": {1: 1, 2: 1},
    "RNN": {1: 1, 2: 1},
}
_GEMMS = {"Gemm", "FusedGemm"}


def _weight_axis(node, index: int) -> int | None:
    """The output-channel axis of `node`'s input `index` when that input is a weight, else None."""
    if node.op_type in _GEMMS:
        if index != 1:
            return None
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return _WEIGHT_SLOTS.get(node.op_type, {}).get(index)


def _eligible_weights(graph, min_saved_bytes: int) -> dict[str, int]:
    """Initializer name -> output-channel axis, for float32 initializers read only as weights
    (all with the same axis). Anything else reading one (a Shape, an Add) keeps it fp32."""
    import onnx

    inits = {t.name: t for t in graph.initializer}
    overridable = {v.name for v in graph.input}  # an app may feed these: they are not constants
    axes: dict[str, set[int | None]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in inits:
                axes.setdefault(name, set()).add(_weight_axis(node, index))
    for output in graph.output:  # a weight that is also a graph output must stay as it is
        axes.setdefault(output.name, set()).add(None)
    chosen = {}
    for name, found in axes.items():
        t = inits.get(name)
        if t is None or name in overridable or len(found) != 1 or None in found:
            continue
        if t.data_type != onnx.TensorProto.FLOAT or len(t.dims) < 2:
            continue
        axis = found.pop() % len(t.dims)
        numel = 1
        for d in t.dims:
            numel *= d
        if 3 * numel - 4 * t.dims[axis] >= min_saved_bytes:
            chosen[name] = axis
    return chosen


def quantize_per_channel(w, axis: int):
    """Symmetric int8 and the fp32 scales (shaped to broadcast against `w`) with
    q * scale ~= w; an all-zero channel gets scale 1 (q = 0 either way)."""
    import numpy as np

    reduce = tuple(i for i in range(w.ndim) if i != axis)
    peak = np.abs(w).max(axis=reduce, keepdims=True).astype(np.float32)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


class _Names:
    """Fresh tensor names that collide with nothing in the graph."""

    def __init__(self, graph):
        self.used = {t.name for t in graph.initializer} | {v.name for v in graph.input}
        self.used |= {o for n in graph.node for o in n.output} | {i for n in graph.node for i in n.input}

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used:
            k += 1
            name = f"{base}{k}"
        self.used.add(name)
        return name


def int8_weights(src: Path, cfg: Int8WeightsConfig, dest: Path) -> dict[str, Any]:
    """Write `src` with its weights stored as int8 + per-channel scales to `dest`; returns facts.

    Metadata (the provenance stamp), opsets and every other node are kept as they are."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    chosen = _eligible_weights(graph, cfg.min_saved_bytes)
    names = _Names(graph)
    kept, rebuild, worst = [], [], 0.0
    for t in graph.initializer:
        axis = chosen.get(t.name)
        if axis is None:
            kept.append(t)
            continue
        w = numpy_helper.to_array(t)
        q, scale = quantize_per_channel(w, axis)
        worst = max(worst, float(np.abs(w - q * scale).max() / max(float(np.abs(w).max()), 1e-30)))
        q_name, s_name, f_name = names.fresh(t.name + "_q"), names.fresh(t.name + "_s"), names.fresh(t.name + "_f")
        kept += [numpy_helper.from_array(q, q_name), numpy_helper.from_array(scale, s_name)]
        # Initializers feed these nodes, so placing them first keeps the graph topologically sorted.
        rebuild += [helper.make_node("Cast", [q_name], [f_name], to=onnx.TensorProto.FLOAT),
                    helper.make_node("Mul", [f_name, s_name], [t.name])]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = rebuild + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)

    # worst rounding error of any weight, relative to that weight's largest magnitude
    facts: dict[str, Any] = {"weights_int8": len(chosen), "bytes_before": Path(src).stat().st_size,
                             "max_relative_weight_error": worst}
    with atomic_path(dest) as tmp:  # verified before it lands at `dest`: a failed check leaves nothing
        tmp.write_bytes(model.SerializeToString())
        facts["bytes_after"] = tmp.stat().st_size
        if cfg.verify and chosen:
            facts["verified"] = verify_folded(src, tmp)
    return facts


def verify_folded(before: Path, after: Path) -> dict[str, Any]:
    """Raise VerificationError unless ORT builds the same op counts from both files (every
    Cast -> Mul pair folded away); returns what was checked, with the outputs' SQNR on a
    seeded input (weight rounding changes them slightly; the benchmark measures accuracy)."""
    import numpy as np

    from toolchain.stages.compact import optimized_ops, seeded_runs

    ops_before, ops_after = optimized_ops(before, False), optimized_ops(after, False)
    if ops_before != ops_after:
        raise VerificationError(
            f"ORT did not fold the int8 weights back into fp32: {dict(ops_before)} -> {dict(ops_after)}",
            "leave this candidate out (set [artifact] ship = \"quantized\") and report the model",
        )
    checked: dict[str, Any] = {"optimized_ops": sum(ops_after.values()), "sqnr_db": None}
    runs = seeded_runs(before, after)
    if isinstance(runs, str):
        return {**checked, "outputs": runs}
    _, expected, got = runs
    ref, out = np.asarray(expected[0], np.float64), np.asarray(got[0], np.float64)
    noise = float(((ref - out) ** 2).sum())
    if noise > 0:
        checked["sqnr_db"] = 10 * float(np.log10(max(float((ref ** 2).sum()), 1e-300) / noise))
    return checked
