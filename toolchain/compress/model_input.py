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
- Exactly one float32 input, with concrete dimensions after the batch: the stages feed one input
  (quantize's calibration reader, the benchmark, golden samples), and `.ort` conversion can only
  fix the batch dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import BadInput, ModelLoadError, ToleranceExceeded, missing_file

MIN_OPSET = 13  # per-axis QuantizeLinear (per_channel = true in the bundled profiles) needs 13
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf's hard limit for one serialized message
_PARITY_ATOL, _PARITY_RTOL = 1e-4, 1e-3  # same defaults as [export]: float reassociation only
_PROBE_BATCH = 2


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]  # None: symbolic (only the batch dimension, for inputs)
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class NormalizedModel:
    path: Path
    input: TensorInfo
    outputs: tuple[TensorInfo, ...]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input.shape[1:])

    @property
    def fixed_batch(self) -> int | None:
        return self.input.shape[0]


def parse_input_shapes(specs: tuple[str, ...] | list[str]) -> dict[str, tuple[int, ...]]:
    """`["x=1,3,64,64"]` -> {"x": (1, 3, 64, 64)}; the first number is the batch dimension."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            parsed = tuple(int(d) for d in dims.split(","))
        except ValueError:
            parsed = ()
        if not sep or not name or not parsed or min(parsed) < 1:
            raise BadInput(
                f"bad --input-shape {spec!r}",
                "write NAME=BATCH,D1,D2,... with positive integers, e.g. x=1,3,64,64",
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


def _single_float_input(graph, name: str):
    """The graph's one float32 input (the message inside the graph, to edit in place)."""
    import onnx

    if len(graph.input) != 1:
        names = ", ".join(i.name for i in graph.input) or "none"
        raise BadInput(
            f"{name} has {len(graph.input)} inputs ({names})",
            "compress takes single-input models; wrap the model so it takes one tensor",
        )
    inp = graph.input[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type)
        raise BadInput(
            f"input '{inp.name}' is {kind}",
            "compress quantizes float32-input models; export with a float32 input",
        )
    return inp


def normalize_onnx(
    src: Path, dest: Path, shapes: dict[str, tuple[int, ...]], facts: dict | None = None
) -> NormalizedModel:
    """Write the normalized model to `dest` and return what it takes and gives; `src` is not touched."""
    import onnx

    original, locations = read_onnx(src)
    proto = onnx.ModelProto.FromString(original.SerializeToString())
    graph = proto.graph
    init_names = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in init_names]
    stripped = len(graph.input) - len(real_inputs)
    del graph.input[:]
    graph.input.extend(real_inputs)
    # IR < 4 requires every initializer to be an input; the version converter enforces it.
    proto.ir_version = max(proto.ir_version, 4)
    inp = _single_float_input(graph, Path(src).name)
    unknown = sorted(set(shapes) - {inp.name})
    if unknown:
        raise BadInput(
            f"--input-shape names '{unknown[0]}', which is not an input of the model",
            f"the input is '{inp.name}'",
        )
    _set_input_shape(inp, shapes.get(inp.name), Path(src).name)

    opset_before = default_opset(proto)
    if opset_before < MIN_OPSET:
        proto = _upgrade(proto, opset_before, Path(src).name)
    proto.ir_version = max(proto.ir_version, onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True))
    del proto.graph.value_info[:]  # stale intermediate shapes after fixing input dims; ORT re-infers them
    _refuse_ort_optimized(proto, Path(src).name)
    try:
        onnx.checker.check_model(proto)
    except Exception as err:
        raise ModelLoadError(
            f"{Path(src).name} is not a valid ONNX model ({_first_line(err)})",
            "re-export it; `python -m onnx.checker` shows the problem",
        ) from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(dest))

    sess = _session(dest.read_bytes(), Path(src).name)
    sig_in, outputs = _signature(sess)
    max_diff = _check_against_original(original, sess, sig_in)
    done = dict(facts or {})
    done.update(
        opset=default_opset(proto),
        original_opset=opset_before,
        initializer_inputs_removed=stripped,
        external_data_inlined=sorted(set(locations)),
        parity_vs_original_max_abs_diff=max_diff,
        inputs=[sig_in.to_dict()],
        outputs=[o.to_dict() for o in outputs],
    )
    return NormalizedModel(dest, sig_in, outputs, done)


def _set_input_shape(inp, override: tuple[int, ...] | None, model_name: str) -> None:
    dims = inp.type.tensor_type.shape.dim
    current = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if override is not None:
        if current and len(override) != len(current):
            raise BadInput(
                f"--input-shape {inp.name} has {len(override)} dims but the model's input has {len(current)}",
                f"give {len(current)} numbers, batch first",
            )
        if current and current[0] is not None and override[0] != current[0]:
            raise BadInput(
                f"the model's batch size is fixed at {current[0]}, not {override[0]}",
                f"use --input-shape {inp.name}={','.join(str(d) for d in [current[0], *override[1:]])}",
            )
        if not current:  # no declared shape at all: adopt the override's rank, batch stays symbolic
            inp.type.tensor_type.shape.dim.add().dim_param = "batch"
            for _ in override[1:]:
                inp.type.tensor_type.shape.dim.add()
            dims = inp.type.tensor_type.shape.dim
            current = [None] * len(override)
        for d, want in zip(list(dims)[1:], override[1:]):
            d.Clear()
            d.dim_value = want
        current = [current[0], *override[1:]]
    if not current:
        raise BadInput(
            f"input '{inp.name}' of {model_name} declares no shape", f"pass --input-shape {inp.name}=1,..."
        )
    if not dims[0].HasField("dim_value") and not dims[0].dim_param:
        dims[0].dim_param = "batch"
    if any(d is None for d in current[1:]):
        axis = next(i for i, d in enumerate(current) if i and d is None)
        example = ",".join("N" if d is None else str(d) for d in current[1:])
        raise BadInput(
            f"input '{inp.name}' has a symbolic dimension {axis} ('{dims[axis].dim_param or '?'}')",
            f"fix it with --input-shape {inp.name}=1,{example}",
        )


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
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises several unrelated types
        raise ModelLoadError(
            f"ONNX Runtime cannot load {model_name} ({_first_line(err)})",
            "use only standard ONNX operators that ONNX Runtime's CPU provider supports",
        ) from None


def _signature(sess) -> tuple[TensorInfo, tuple[TensorInfo, ...]]:
    def info(v, is_input: bool) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) else None for d in v.shape)
        return TensorInfo(v.name, shape, v.type.removeprefix("tensor(").rstrip(")"))

    return info(sess.get_inputs()[0], True), tuple(info(o, False) for o in sess.get_outputs())


def probe_input(sig: TensorInfo, batch: int = _PROBE_BATCH) -> np.ndarray:
    b = sig.shape[0] or batch
    return np.random.default_rng(0).standard_normal((b, *sig.shape[1:])).astype(np.float32)


def _check_against_original(original, sess, sig: TensorInfo) -> float | None:
    """Run the untouched model and the normalized one on the same seeded input; raise on mismatch.

    Returns the max abs difference, or None when ONNX Runtime cannot run the original at all
    (e.g. a declared shape it rejects), in which case only the normalized model is checked."""
    x = probe_input(sig)
    got = sess.run(None, {sig.name: x})
    try:
        ref_sess = _session(original.SerializeToString(), "original")
        expected = ref_sess.run(None, {sig.name: x})
    except Exception:
        return None
    worst = 0.0
    for g, e in zip(got, expected):
        g, e = np.asarray(g), np.asarray(e)
        if g.shape != e.shape or not np.allclose(g, e, atol=_PARITY_ATOL, rtol=_PARITY_RTOL, equal_nan=True):
            diff = float(np.max(np.abs(g - e))) if g.shape == e.shape and g.size else float("nan")
            raise ToleranceExceeded(
                f"normalizing the model changed its outputs (max abs diff {diff:.3g})",
                f"re-export the model at opset {MIN_OPSET} or newer yourself",
                max_abs_diff=diff,
            )
        if g.size and np.issubdtype(g.dtype, np.floating):
            worst = max(worst, float(np.max(np.abs(g - e))))
    return worst


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
