"""Load a user's ONNX file and normalize it into what the per-target stages expect.

What the stages need, and why each fix exists:
- One self-contained file: quantize/convert/package copy a single path. External data is read
  only after `check_external_data` proves every location stays inside the model's folder.
- Initializers not listed as graph inputs: models from old exporters (IR < 4) list every weight
  as an input; ORT's quantizer then treats weights as activations and `fix_batch` tries to fix
  their shapes.
- Default-domain opset >= 13: per-channel QDQ (every bundled profile) needs per-axis
  QuantizeLinear, which arrived in opset 13. Older models are upgraded with onnx's version
  converter and the result is checked against the original in ONNX Runtime.
- Named dynamic dimensions: -1, '?' and unnamed dims get a symbolic name (axis 0: "batch"), so
  the batch axis of every input can be told apart (feeds.batch_axes) and ORT's tools can fix
  them by name for fixed-shape targets (shapes.fix_dims).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.compress.shapes import declare_dims, graph_specs, probe_feed
from toolchain.data.feeds import TensorSpec, fixed_batch_of
from toolchain.errors import BadInput, ModelLoadError, missing_file

MIN_OPSET = 13  # per-axis QuantizeLinear (per_channel = true in the bundled profiles) needs 13
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf's hard limit for one serialized message
_PARITY_ATOL, _PARITY_RTOL = 1e-4, 1e-3  # same defaults as [export]: float reassociation only


@dataclass(frozen=True)
class NormalizedModel:
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def input(self) -> TensorSpec:
        """The first input (torch sources and single-input models have only this one)."""
        return self.inputs[0]

    @property
    def fixed_batch(self) -> int | None:
        return fixed_batch_of(self.inputs)


def parse_input_shapes(specs: tuple[str, ...] | list[str]) -> dict[str, tuple[int | None, ...]]:
    """`["x=1,3,64,64"]` -> {"x": (1, 3, 64, 64)}; -1 or ? leaves a dimension dynamic (None)."""
    shapes: dict[str, tuple[int | None, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            parsed = tuple(None if d.strip() in ("-1", "?") else int(d) for d in dims.split(","))
        except ValueError:
            parsed = ()
        if not sep or not name.strip() or not parsed or any(d is not None and d < 1 for d in parsed):
            raise BadInput(
                f"bad --input-shape {spec!r}",
                "write NAME=D0,D1,... with positive integers (-1 keeps a dimension dynamic), e.g. x=1,3,64,64",
            )
        shapes[name.strip()] = parsed
    return shapes


def read_onnx(path: Path):
    """(model with its external data loaded in memory, external locations); refuses locations
    outside the model's folder before reading any of them."""
    import onnx

    from toolchain.package import check_external_data

    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "model file", "check the path", ModelLoadError)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # DecodeError and friends
        proto = None
    # Arbitrary bytes sometimes parse as an (empty) ModelProto, so also require a graph with outputs.
    if proto is None or not proto.graph.output or not proto.opset_import:
        raise ModelLoadError(
            f"{path.name} is not an ONNX model",
            "pass a .onnx file, a torch.export .pt2 file, or module:factory with --weights",
        )
    locations = check_external_data(path)  # raises UnsafeModel (exit 2) for anything outside the folder
    if locations:
        missing = sorted({loc for loc in locations if not (path.parent / loc).is_file()})
        if missing:
            raise ModelLoadError(
                f"{path.name}: external data file {missing[0]!r} is missing",
                "keep the model's data files beside it",
            )
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except Exception as err:
            raise ModelLoadError(
                f"{path.name}: cannot read its external data ({_first_line(err)})",
                "re-save the model with onnx.save(..., save_as_external_data=False)",
            ) from None
    if proto.ByteSize() > _MAX_PROTO_BYTES:
        raise ModelLoadError(
            f"{path.name} is over 2 GB once its external data is inlined",
            "compress models under 2 GB (one self-contained ONNX file is the artifact)",
        )
    return proto, locations


def default_opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _refuse_ort_optimized(proto, name: str) -> None:
    """An .onnx target's artifact holds ORT's fused ops, which the quantizer's shape inference
    cannot follow: one line now instead of an internal error in the quantize stage."""
    from toolchain.mobile.memory_estimate import ort_internal_ops

    internal = ort_internal_ops(proto)
    if internal:
        raise BadInput(f"{name} was optimized offline by ONNX Runtime: its {', '.join(internal)} ops are "
                       "ONNX Runtime-internal", "compress the model before optimization (the one you exported)")


def normalize_onnx(
    src: Path, dest: Path, shapes: dict[str, tuple[int | None, ...]], facts: dict | None = None
) -> NormalizedModel:
    """Write the normalized model to `dest` and return what it takes and gives; `src` is not touched."""
    import onnx

    name = Path(src).name
    original, locations = read_onnx(src)
    proto = onnx.ModelProto.FromString(original.SerializeToString())
    graph = proto.graph
    init_names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    stripped = len(graph.input) - len(real_inputs)
    del graph.input[:]
    graph.input.extend(real_inputs)
    proto.ir_version = max(proto.ir_version, 4)  # IR < 4 wants every initializer as an input
    if not real_inputs:
        raise BadInput(f"{name} has no inputs (every graph input has an initializer)", "export a model that takes inputs")
    known = [i.name for i in graph.input]
    unknown = sorted(set(shapes) - set(known))
    if unknown:
        raise BadInput(
            f"--input-shape names '{unknown[0]}', which is not an input of the model",
            f"the inputs are {', '.join(known)}",
        )
    for inp in graph.input:  # the messages inside the graph: extend() copied them
        declare_dims(inp, shapes.get(inp.name))

    opset_before = default_opset(proto)
    if opset_before < MIN_OPSET:
        proto = _upgrade(proto, opset_before, name)
    proto.ir_version = max(proto.ir_version, onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True))
    del proto.graph.value_info[:]  # stale intermediate shapes after naming input dims; ORT re-infers them
    _refuse_ort_optimized(proto, name)
    try:
        onnx.checker.check_model(proto)
    except Exception as err:
        raise ModelLoadError(
            f"{name} is not a valid ONNX model ({_first_line(err)})",
            "re-export it; `python -m onnx.checker` shows the problem",
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(dest))

    sess = _session(dest.read_bytes(), name)
    inputs, outputs = graph_specs(proto)
    changed = stripped > 0 or opset_before < MIN_OPSET
    probe = probe_feed(inputs, shapes)
    max_diff = _check_against_original(original, sess, probe, name, opset_before) if changed and probe else None
    done = dict(facts or {})
    done.update(
        opset=default_opset(proto),
        original_opset=opset_before,
        initializer_inputs_removed=stripped,
        external_data_inlined=sorted(set(locations)),
        parity_vs_original_max_abs_diff=max_diff,
        inputs=[i.to_dict() for i in inputs],
        outputs=[o.to_dict() for o in outputs],
    )
    return NormalizedModel(dest, inputs, outputs, done)


def _upgrade(proto, opset: int, model_name: str):
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as err:  # the converter raises bare RuntimeErrors for ops without an adapter
        raise ModelLoadError(
            f"{model_name}: cannot upgrade opset {opset} to {MIN_OPSET} ({_first_line(err)})",
            f"re-export the model at opset {MIN_OPSET} or newer",
        ) from None


def _session(model_bytes: bytes, model_name: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: a failing run raises, and its log line would be a second stderr line
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises several unrelated types
        raise ModelLoadError(
            f"ONNX Runtime cannot load {model_name} ({_first_line(err)})",
            "use only standard ONNX operators that ONNX Runtime's CPU provider supports",
        ) from None


def _check_against_original(original, sess, feed: dict, name: str, opset: int) -> float | None:
    """Run the untouched model and the normalized one on the same seeded feed; refuse on mismatch.

    Returns the max abs difference, or None when ONNX Runtime cannot run the original at all
    (e.g. a declared shape it rejects), in which case only the normalized model is checked."""
    ops = sorted({n.op_type for n in original.graph.node})
    fix = f"re-export the model at opset {MIN_OPSET} or newer (its ops: {', '.join(ops[:6])})"
    try:
        expected = _session(original.SerializeToString(), "original").run(None, feed)
    except Exception:  # the original rejects the seeded probe (e.g. index ranges): nothing to compare
        return None
    try:
        got = sess.run(None, feed)
    except Exception as err:  # ORT raises unrelated types; an upgrade that breaks an op lands here
        raise BadInput(f"{name}: upgraded from opset {opset} to {MIN_OPSET}, it no longer runs ({ort_reason(err)})", fix) from None
    worst = 0.0
    for g, e in zip(got, expected):
        g, e = np.asarray(g), np.asarray(e)
        same = g.shape == e.shape and (
            np.array_equal(g, e) if g.dtype.kind not in "fc" else np.allclose(g, e, atol=_PARITY_ATOL, rtol=_PARITY_RTOL, equal_nan=True)
        )
        if not same:
            diff = float(np.max(np.abs(g.astype(np.float64) - e))) if g.shape == e.shape and g.size else float("nan")
            # Bad input, not a failed verification: the user's old opset is what we cannot use.
            raise BadInput(f"{name}: upgrading opset {opset} to {MIN_OPSET} changes its outputs (max abs diff {diff:.3g})", fix)
        if g.size and g.dtype.kind in "fc":
            worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - e))))
    return worst


def ort_reason(err: BaseException) -> str:
    """'PRelu: Attempting to broadcast ...' out of ORT's kernel error (source paths and C++
    signatures dropped)."""
    import re

    text = str(err)
    op = re.search(r"running (\w+) node", text)
    detail = text.split("Status Message:")[-1].split("was false.")[-1].strip()
    detail = re.sub(r"^\S+:\d+ ", "", detail).splitlines()[0][:160] if detail else type(err).__name__
    return f"{op.group(1)}: {detail}" if op else detail


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
