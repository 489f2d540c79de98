"""Export: torch -> one self-contained ONNX file, opset verified, parity-checked against PyTorch.

Measured traps with torch 2.13's exporter: it defaults to the dynamo path, writes weights to a
side `.onnx.data` file unless told otherwise, and may emit another opset than requested. So we
ask for a single file, then *read back* what was written and check both facts.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config.stages import ExportConfig
from toolchain.data.feeds import Feeds
from toolchain.errors import ShapeMismatch, ToleranceExceeded, VerificationError
from toolchain.torch_io import torch_inputs


def export_onnx(model, example: np.ndarray | Feeds, cfg: ExportConfig, dest: Path, dynamic_batch: bool = True) -> dict[str, Any]:
    """Write `model` to `dest` as a single ONNX file and return facts about what was written."""
    import logging

    import onnx
    import torch

    # The exporter warns once per missing optional op library (torchvision::nms, ...) on every
    # export; none of them can occur in a model that was built without torchvision.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    if isinstance(model, torch.nn.Module):  # a torch.export ExportedProgram has no train/eval mode
        model = model.eval()
    args, axes = torch_inputs(example, slice(0, 2)), _dynamic_axes(example, dynamic_batch)
    # The exporter prints progress to stdout; keep stdout clean for `--json` consumers.
    with contextlib.redirect_stdout(sys.stderr), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch-internal
        if cfg.exporter == "torchscript":
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # shape arithmetic in forward()
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            names = list(example.names) if isinstance(example, Feeds) else ["x"]
            torch.onnx.export(model, args, str(dest), dynamo=False, opset_version=cfg.opset, input_names=names,
                              output_names=["output"], dynamic_axes={n: dict(a) for n, a in zip(names, axes)} or None)
        else:
            dims = {name: torch.export.Dim(name, min=1, max=4096) for a in axes for name in a.values()}
            torch.onnx.export(model, args, str(dest), dynamo=True, external_data=False, opset_version=cfg.opset,
                              dynamic_shapes=tuple({i: dims[n] for i, n in a.items()} for a in axes) if axes else None,
                              verbose=False)
    _stamp_transformer_dims(model, dest)
    side_files = [p.name for p in dest.parent.iterdir() if p.name.startswith(dest.name) and p != dest]
    if side_files:
        raise VerificationError(f"exporter wrote side files {side_files}", "the export must be one self-contained file")
    proto = onnx.load(str(dest))
    opset = _default_opset(proto)
    if opset != cfg.opset:
        proto = _convert_opset(proto, cfg.opset, got=opset)
        onnx.save(proto, str(dest))
    try:
        onnx.checker.check_model(str(dest))
    except onnx.checker.ValidationError as err:
        raise VerificationError(
            f"exported model fails the ONNX checker at opset {cfg.opset} ({str(err).splitlines()[0]})",
            f"set [export] opset = {opset} (what the exporter wrote)",
        ) from None
    return {"opset": _default_opset(onnx.load(str(dest))), "exporter_opset": opset, "ir_version": proto.ir_version}


def _dynamic_axes(example, dynamic_batch: bool) -> list[dict[int, str]]:
    """Per input, axis -> symbolic name: the batch (axis 0), and for a 2-D integer input (token
    ids, attention mask) the sequence too, so one file takes any text length."""
    if not dynamic_batch:
        return []
    arrays = [example.arrays[n] for n in example.names] if isinstance(example, Feeds) else [example]
    return [{0: "batch", **({1: "sequence"} if a.ndim == 2 and a.dtype.kind in "iu" else {})} for a in arrays]


def _stamp_transformer_dims(model, dest: Path) -> None:
    """Record a transformer's `num_heads` / `hidden_size` attributes in the file: ORT's transformer
    optimizer needs them and cannot always read them from the graph (stages/transformer_fusion.py)."""
    from toolchain.stages.transformer_fusion import HEADS_KEY, HIDDEN_KEY

    dims = {HEADS_KEY: getattr(model, "num_heads", None), HIDDEN_KEY: getattr(model, "hidden_size", None)}
    if not all(isinstance(v, int) for v in dims.values()):
        return
    import onnx

    proto = onnx.load(str(dest))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props},
                                        **{k: str(v) for k, v in dims.items()}})
    onnx.save(proto, str(dest))


def _default_opset(proto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _convert_opset(proto, wanted: int, got: int):
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(proto, wanted)
    except Exception as err:  # the converter raises bare RuntimeErrors for unsupported adapters
        raise VerificationError(
            f"exporter emitted opset {got}, and converting to the requested opset {wanted} failed ({err})",
            f"set [export] opset = {got}",
        ) from None
    _drop_unknown_attributes(converted, wanted)
    return converted


def _drop_unknown_attributes(proto, opset: int) -> None:
    """Remove attributes the target opset's schema does not define.

    Measured: converting 18 -> 17 leaves ReduceMean's `noop_with_empty_axes` (new in 18) in place,
    which the checker and ORT then reject. Such attributes only exist at their default value after
    a down-conversion (the converter fails otherwise), so dropping them keeps the semantics.
    """
    import onnx

    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        try:
            allowed = onnx.defs.get_schema(node.op_type, opset, "").attributes
        except onnx.defs.SchemaError:
            continue
        keep = [a for a in node.attribute if a.name in allowed]
        if len(keep) != len(node.attribute):
            del node.attribute[:]
            node.attribute.extend(keep)


def check_parity(onnx_path: Path, model, x: np.ndarray, cfg: ExportConfig) -> dict[str, float]:
    """Compare ONNX Runtime outputs with PyTorch eager on held-out data; raise on mismatch."""
    import onnxruntime as ort
    import torch

    rows = slice(0, cfg.parity_samples)
    with torch.no_grad():
        expected = model.eval()(*torch_inputs(x, rows)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = ({n: np.ascontiguousarray(x.arrays[n][rows]) for n in x.names} if isinstance(x, Feeds)
            else {sess.get_inputs()[0].name: x[rows]})
    got = sess.run(None, feed)[0]
    if got.shape != expected.shape:
        raise ShapeMismatch(
            f"ONNX output shape {got.shape} != PyTorch output shape {expected.shape}",
            "check dynamic axes and the model's forward()",
        )
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if not np.allclose(got, expected, atol=cfg.parity_atol, rtol=cfg.parity_rtol):
        raise ToleranceExceeded(
            f"ONNX output differs from PyTorch: max abs diff {diff:.3g} > atol {cfg.parity_atol}",
            "inspect unsupported ops, or raise [export] parity_atol if the difference is expected",
            max_abs_diff=diff,
        )
    return {"max_abs_diff": diff, "samples": len(expected)}
