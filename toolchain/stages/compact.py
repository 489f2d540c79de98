"""Compact: cut an ONNX artifact's bytes without changing a single output value.

Measured on shapes-mobilenet's int8 cpu-server artifact (807,203 bytes, offline-optimized
QLinearConv graph): tensor and node names are ~28 KB, all-zero per-channel weight zero points
~9 KB, value_info a few KB. None of them reach a kernel:
- value_info is a shape hint; ORT re-runs shape inference when it loads the model.
- names only wire nodes together; graph input/output names are the app's API and stay.
- QLinearConv's weight zero point may be a scalar (ONNX spec), and an all-zero per-channel one
  is the same numbers as a scalar 0.
- identical initializers (same dtype, shape and bytes) can be one tensor read by many nodes.
Every renamed name goes to a JSON map, so an ORT error naming a short tensor can be traced.
`verify` loads both files in ORT and proves the claim on this model: same op counts after ORT's
own optimization (the int8 fusions still happen) and bit-identical outputs on a seeded input.
"""

from __future__ import annotations

import hashlib
import itertools
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from toolchain.config.base import Strict
from toolchain.errors import VerificationError
from toolchain.fsio import atomic_path, write_json_atomic


class CompactConfig(Strict):
    strip_value_info: bool = True
    short_names: bool = True
    scalar_weight_zero_points: bool = True
    dedupe_initializers: bool = True
    verify: bool = True  # costs two ORT session loads and one run; cheap next to quantization
    # the profile's [runtime] disabled_optimizers: the check compares the graphs its sessions build
    disabled_optimizers: list[str] = Field(default_factory=list)


def _short_name_source(reserved: set[str]) -> Iterator[str]:
    """a, b, .., z, a0, b0, ..: lowercase C identifiers (valid ONNX names, and no two differ only
    in case, in case a tool turns them into file names), shortest first, skipping kept names."""
    for length in itertools.count(1):
        for tail in itertools.product(string.ascii_lowercase + string.digits, repeat=length - 1):
            for head in string.ascii_lowercase:
                name = head + "".join(tail)
                if name not in reserved:
                    yield name


def _has_subgraphs(graph) -> bool:
    import onnx

    kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    return any(a.type in kinds for n in graph.node for a in n.attribute)


def _io_names(graph) -> set[str]:
    return {v.name for v in graph.input} | {v.name for v in graph.output}


def _replace_inputs(graph, alias: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]


def _drop_unused_initializers(graph, candidates: set[str]) -> None:
    """Remove initializers in `candidates` that no node input or graph output still reads."""
    used = {name for n in graph.node for name in n.input} | {v.name for v in graph.output}
    kept = [t for t in graph.initializer if t.name in used or t.name not in candidates]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _fresh(stem: str, taken: set[str]) -> str:
    name, i = stem, 0
    while name in taken:
        i += 1
        name = f"{stem}_{i}"
    taken.add(name)
    return name


def scalarize_weight_zero_points(graph) -> int:
    """Point each QLinearConv whose weight zero point (input 5) is an all-zero initializer at one
    shared scalar zero of the same dtype; returns how many inputs were rewired.

    DequantizeLinear zero points are left alone: ONNX requires them to match the scale's shape,
    and only QLinearConv's spec allows a scalar beside per-channel scales.
    """
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer if t.name not in _io_names(graph)}
    taken = set(inits) | _io_names(graph) | {o for n in graph.node for o in n.output}
    zeros: dict[int, str] = {}  # TensorProto dtype -> name of the shared scalar zero
    replaced: set[str] = set()
    count = 0
    for node in graph.node:
        if node.op_type != "QLinearConv" or node.domain not in ("", "ai.onnx") or len(node.input) < 6:
            continue
        zp = inits.get(node.input[5])
        if zp is None or len(zp.dims) != 1:  # computed at run time, or already a scalar
            continue
        values = numpy_helper.to_array(zp)
        if values.any():
            continue
        if zp.data_type not in zeros:
            zeros[zp.data_type] = _fresh(f"zero_{values.dtype.name}", taken)
            graph.initializer.append(numpy_helper.from_array(np.zeros((), values.dtype), zeros[zp.data_type]))
        replaced.add(node.input[5])
        node.input[5] = zeros[zp.data_type]
        count += 1
    _drop_unused_initializers(graph, replaced)
    return count


def dedupe_initializers(graph) -> int:
    """Make initializers with equal dtype, shape and bytes one tensor (the first one); returns how
    many were dropped. Graph inputs (overridable at run time) and outputs are never merged."""
    import onnx
    from onnx import numpy_helper

    keep = _io_names(graph)
    first: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for t in graph.initializer:
        if t.name in keep or t.data_type == onnx.TensorProto.STRING:
            continue
        # A digest, not the bytes, as key: no second copy of every weight in memory.
        digest = hashlib.sha256(numpy_helper.to_array(t).tobytes()).digest()
        key = (t.data_type, tuple(t.dims), digest)
        if key in first:
            alias[t.name] = first[key]
        else:
            first[key] = t.name
    _replace_inputs(graph, alias)
    _drop_unused_initializers(graph, set(alias))
    return len(alias)


def shorten_names(graph) -> dict[str, dict[str, str]]:
    """Rename every tensor except graph inputs/outputs, and every node, to short names in order of
    first appearance (deterministic). Returns {"tensors": {short: old}, "nodes": {short: old}}."""
    reserved = _io_names(graph)
    source = _short_name_source(reserved)
    tensors: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in reserved:  # "" marks an omitted optional input
            return name
        if name not in tensors:
            tensors[name] = next(source)
        return tensors[name]

    for t in graph.initializer:
        t.name = short(t.name)
    for s in graph.sparse_initializer:
        s.values.name = short(s.values.name)
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for v in graph.value_info:
        v.name = short(v.name)
    for ann in graph.quantization_annotation:
        ann.tensor_name = short(ann.tensor_name)
        for kv in ann.quant_parameter_tensor_names:
            kv.value = short(kv.value)
    # Node names are kept short rather than cleared: ORT's run-time errors name the failing node.
    node_source = _short_name_source(set())
    nodes: dict[str, str] = {}
    for node in graph.node:
        if node.name:
            new = next(node_source)
            nodes[new], node.name = node.name, new
    return {"tensors": {new: old for old, new in tensors.items()}, "nodes": nodes}


def compact(src: Path, cfg: CompactConfig, dest: Path, names: Path | None = None) -> dict[str, Any]:
    """Write a compacted copy of `src` to `dest` (atomically; `src` is not touched) and the
    short->original name map to `names` (default: `<dest stem>.names.json` beside `dest`)."""
    import onnx

    src, dest = Path(src), Path(dest)
    names = Path(names) if names is not None else dest.with_name(dest.stem + ".names.json")
    model = onnx.load(str(src))
    graph = model.graph
    facts: dict[str, Any] = {"bytes_before": src.stat().st_size, "value_info_removed": 0, "names_renamed": 0,
                             "nodes_renamed": 0, "zero_points_scalarized": 0, "initializers_deduped": 0,
                             "names_file": None}
    if cfg.strip_value_info:
        facts["value_info_removed"] = len(graph.value_info)
        del graph.value_info[:]
    # If/Loop/Scan bodies read outer tensors by name without listing them, so renaming, merging
    # or dropping a main-graph tensor would need a scoped walk of every body. Edge models rarely
    # have control flow; for those we only strip value_info.
    facts["subgraphs"] = _has_subgraphs(graph)
    mapping = None
    if not facts["subgraphs"]:
        if cfg.scalar_weight_zero_points:
            facts["zero_points_scalarized"] = scalarize_weight_zero_points(graph)
        if cfg.dedupe_initializers:
            facts["initializers_deduped"] = dedupe_initializers(graph)
        if cfg.short_names:
            mapping = shorten_names(graph)
            facts["names_renamed"], facts["nodes_renamed"] = len(mapping["tensors"]), len(mapping["nodes"])
    with atomic_path(dest) as tmp:  # verified before it lands at `dest`: a failed check leaves nothing
        tmp.write_bytes(model.SerializeToString())
        facts["bytes_after"] = tmp.stat().st_size
        if cfg.verify:
            facts["verified"] = verify_same_outputs(src, tmp, cfg.disabled_optimizers)
    if mapping is not None:
        write_json_atomic(names, mapping)
        facts["names_file"] = names.name
    return facts


def optimized_ops(path: Path, int8_allowed: bool, disabled: list[str] = ()) -> Counter:
    """Op types of the graph ORT builds at level "all" on this host: the int8 fusions show here.
    `int8_allowed` is the switch ORT's .ort converter sets for ARM targets (S8S8 QDQ fusions)."""
    import onnxruntime as ort

    from toolchain.runtime.ort_runtime import disable_optimizers, optimized_op_types

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    disable_optimizers(opts, list(disabled))
    opts.add_session_config_entry("session.qdqisint8allowed", "1" if int8_allowed else "0")
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1  # only optimizes, never runs: no need for a thread pool
    return optimized_op_types(path, opts)


_NUMERIC = {"tensor(float)", "tensor(double)", "tensor(int64)", "tensor(int32)", "tensor(uint8)", "tensor(int8)"}


def seeded_inputs(sess) -> dict[str, Any] | None:
    """One seeded random input per graph input (symbolic dims = 1); None if a type is unsupported."""
    import numpy as np

    from toolchain.bench.session import numpy_dtype

    rng = np.random.default_rng(0)
    feeds = {}
    for inp in sess.get_inputs():
        if inp.type not in _NUMERIC:  # strings, bools, sequences, maps: no meaningful random value
            return None
        dtype = np.dtype(numpy_dtype(inp.type))
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        # Floats get [0, 1) like normalized images; integers get zeros, always a valid index.
        feeds[inp.name] = rng.random(shape).astype(dtype) if dtype.kind == "f" else np.zeros(shape, dtype)
    return feeds


def seeded_runs(before: Path, after: Path, disabled: list[str] = ()) -> tuple[list[str], list, list] | str:
    """Output names and both files' outputs for one seeded input, in one-thread sessions (no
    run-to-run reordering of float sums); or, when `before` cannot take such an input, why not."""
    import onnxruntime as ort

    from toolchain.runtime.ort_runtime import disable_optimizers

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    disable_optimizers(opts, list(disabled))
    opts.log_severity_level = 4  # a seeded input the graph rejects is caught below; its log line is noise
    sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in (before, after)]
    feeds = seeded_inputs(sessions[0])
    if feeds is None:
        return "skipped: non-numeric input"
    try:
        expected = sessions[0].run(None, feeds)
    except Exception:  # noqa: BLE001 - ORT raises unrelated types; e.g. a symbolic dim that must not be 1
        return "skipped: seeded input not accepted"
    return [o.name for o in sessions[0].get_outputs()], expected, sessions[1].run(None, feeds)


def verify_same_outputs(before: Path, after: Path, disabled: list[str] = ()) -> dict[str, Any]:
    """Raise VerificationError unless ORT optimizes both files to the same op counts and gives
    bit-identical outputs for a seeded input; returns what was checked."""
    import numpy as np

    # Measured: dropping DequantizeLinear weight zero points keeps the outputs but silently
    # loses the QGemm fusion; op counts catch that kind of change, outputs alone do not.
    for int8_allowed in (False, True):
        ops_before, ops_after = (optimized_ops(p, int8_allowed, disabled) for p in (before, after))
        if ops_before != ops_after:
            raise VerificationError(
                f"compact changed what ORT runs: {dict(ops_before)} -> {dict(ops_after)}",
                "set compact = false in the target's [artifact] table and report the model",
            )
    runs = seeded_runs(before, after, disabled)
    if isinstance(runs, str):
        return {"optimized_ops": sum(ops_after.values()), "outputs": runs}
    names, expected, got = runs
    diff = [name for name, a, b in zip(names, expected, got) if not np.array_equal(a, b)]
    if diff:
        raise VerificationError(
            f"compact changed output values of {diff}",
            "set compact = false in the target's [artifact] table and report the model",
        )
    return {"optimized_ops": sum(ops_after.values()), "outputs": "bit-identical"}
