"""Input/output shapes of a user's model: dynamic dims, the batch axis, and the shapes we run at.

A dimension is dynamic when the model gives no number for it: a symbolic name, '?', or -1
(some exporters write -1 as a value). The normalized model names every dynamic dim, so a
dynamic-shape target keeps them symbolic while a fixed-shape target (`.ort`) gets them fixed
to the run shape: `--input-shape` where given, else the data's own shape.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from toolchain.data.feeds import TensorSpec, batch_axes
from toolchain.errors import BadInput

# Element types a feed can be made of (strings, sequences and maps cannot be calibrated on).
SUPPORTED = {"float16", "float32", "float64", "int8", "int16", "int32", "int64",
             "uint8", "uint16", "uint32", "uint64", "bool"}


def np_dtype_name(elem_type: int) -> str | None:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return None


def _dims(value_info) -> tuple[int | str | None, ...] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return tuple(out)


def declare_dims(inp, override: tuple[int | None, ...] | None) -> None:
    """Check one graph input against its --input-shape and give every dynamic dim a name, in place.

    Axis 0 is called "batch" (what the stages have always assumed); other unnamed dims get
    "<input>_d<axis>". A declared number the override contradicts is bad input."""
    import onnx

    name = inp.name
    dtype = np_dtype_name(inp.type.tensor_type.elem_type) if inp.type.HasField("tensor_type") else None
    if dtype not in SUPPORTED:
        kind = onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type) if dtype else "not a tensor"
        raise BadInput(f"input '{name}' is {kind}", "compress feeds numeric and bool tensors only")
    declared = _dims(inp)
    if declared is None:
        if override is None:
            raise BadInput(f"input '{name}' declares no shape", f"pass --input-shape {name}=D0,D1,... (-1 for a dynamic dim)")
        shape = inp.type.tensor_type.shape
        for d in override:
            shape.dim.add()
        declared = (None,) * len(override)
    if override is not None:
        if len(override) != len(declared):
            raise BadInput(
                f"--input-shape {name} has {len(override)} dims but the model's input has {len(declared)}",
                f"give {len(declared)} numbers ({_example(name, declared)})",
            )
        for axis, (have, want) in enumerate(zip(declared, override)):
            if isinstance(have, int) and want is not None and want != have:
                fixed = [have if isinstance(d, int) else (want if i == axis else "-1") for i, d in enumerate(declared)]
                raise BadInput(
                    f"input '{name}' dimension {axis} is fixed at {have} by the model, not {want}",
                    f"use --input-shape {name}={','.join(map(str, fixed))}",
                )
    for axis, d in enumerate(inp.type.tensor_type.shape.dim):
        if not (d.HasField("dim_value") and d.dim_value > 0) and not d.dim_param:
            d.Clear()
            d.dim_param = "batch" if axis == 0 else f"{name}_d{axis}"


def _example(name: str, dims) -> str:
    return f"--input-shape {name}=" + ",".join(str(d) if isinstance(d, int) else ("1" if i == 0 else "N") for i, d in enumerate(dims))


def graph_specs(proto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs (with batch axes) and outputs of a normalized model; output shapes come from ONNX
    shape inference when the graph does not declare them (never fails: unknown stays None)."""
    import onnx

    inputs = [TensorSpec(i.name, np_dtype_name(i.type.tensor_type.elem_type) or "float32", _dims(i)) for i in proto.graph.input]
    axes = batch_axes(inputs)
    inputs = [TensorSpec(s.name, s.dtype, s.shape, a) for s, a in zip(inputs, axes)]
    outs = list(proto.graph.output)
    if any(_dims(o) is None for o in outs):
        # Inference is a nicety here: an output of unknown shape is still compared, as flat values.
        with contextlib.suppress(Exception):
            inferred = {o.name: o for o in onnx.shape_inference.infer_shapes(proto).graph.output}
            outs = [inferred.get(o.name, o) for o in outs]
    batched = [s.shape[s.batch_axis] for s in inputs if s.shape and s.batch_axis is not None]
    symbol = next((d for d in batched if isinstance(d, str)), None)
    fixed = batched[0] if batched and not symbol else None  # a fixed batch: axis 0 of that size
    outputs = []
    for o in outs:
        shape = _dims(o)
        if symbol is not None:
            axis = shape.index(symbol) if shape and symbol in shape else None
        else:
            axis = 0 if shape and fixed is not None and shape[0] == fixed else None
        outputs.append(TensorSpec(o.name, np_dtype_name(o.type.tensor_type.elem_type) or "float32", shape, axis))
    return tuple(inputs), tuple(outputs)


def run_shape(spec: TensorSpec, override: tuple[int | None, ...] | None, n: int) -> tuple[int, ...]:
    """The shape of `n` samples of `spec`: n on the batch axis, --input-shape or the declared
    number elsewhere; a dynamic dim nobody fixed is bad input naming the flag that fixes it."""
    dims = list(spec.shape or ())
    if override is not None:
        dims = [o if o is not None else d for d, o in zip(dims, override)]
    out = []
    for axis, d in enumerate(dims):
        if axis == spec.batch_axis:
            out.append(n)
        elif isinstance(d, int):
            out.append(d)
        else:
            raise BadInput(
                f"input '{spec.name}' has a dynamic dimension {axis} ('{d or '?'}')",
                f"fix it with {_example(spec.name, [1 if i == spec.batch_axis else x for i, x in enumerate(dims)])}",
            )
    return tuple(out)


def random_array(spec: TensorSpec, shape: tuple[int, ...], rng, lo_hi: tuple[float, float] | None) -> np.ndarray:
    """Seeded values by dtype: floats N(0, 1) (or uniform in --input-range), ints in [0, 10) (or
    the range: token ids and lengths must stay valid), bools fair coin flips."""
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo, hi = (int(lo_hi[0]), int(lo_hi[1])) if lo_hi else (0, 10)
        return rng.integers(lo, max(hi, lo + 1), size=shape).astype(dtype)
    if lo_hi:
        return rng.uniform(lo_hi[0], lo_hi[1], size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def probe_feed(inputs, shapes: dict, n: int = 2) -> dict[str, Any] | None:
    """A seeded feed of `n` samples for the import parity check; None when a dynamic dim is
    unknown until the data is read (the check is then skipped, and said so in the facts)."""
    rng = np.random.default_rng(0)
    feed = {}
    for spec in inputs:
        batch = spec.shape[spec.batch_axis] if spec.shape and spec.batch_axis is not None else n
        try:
            shape = run_shape(spec, shapes.get(spec.name), batch if isinstance(batch, int) else n)
        except BadInput:
            return None
        feed[spec.name] = random_array(spec, shape, rng, None)
    return feed


def fix_dims(proto, run_shapes: dict[str, tuple[int, ...]]):
    """A copy of `proto` whose inputs have exactly `run_shapes` (fixed-shape targets)."""
    import onnx
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for inp in proto.graph.input:
        if inp.name in run_shapes:
            make_input_shape_fixed(proto.graph, inp.name, list(run_shapes[inp.name]))
    with contextlib.suppress(Exception):  # output shapes that depend on values stay symbolic
        fix_output_shapes(proto)
    return proto


def index_ranges(proto) -> dict[str, tuple[int, int]]:
    """Default --input-range for int inputs that index a weight table directly (Gather of an
    initializer: token ids, embeddings): [0, min(10, table size)), so random ids stay valid."""
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    inputs = {i.name for i in proto.graph.input}
    ranges: dict[str, tuple[int, int]] = {}
    for node in proto.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[1] not in inputs or node.input[0] not in inits:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        dims = inits[node.input[0]]
        size = dims[axis] if -len(dims) <= axis < len(dims) else 0
        if size > 0:
            hi = min(10, size, ranges.get(node.input[1], (0, size))[1])
            ranges[node.input[1]] = (0, hi)
    return ranges
