"""Quantize: ONNX Runtime post-training quantization as the target profile says.

Static schemes (QDQ / QOperator) are calibrated on training samples after ORT's quantization
pre-processing (symbolic shape inference + graph cleanup), which ORT requires for reliable
per-channel quantization. `quantize_static` overwrites the model's producer fields, so the
provenance stamp (producer, version, target, recipe hash) is applied afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config.stages import QuantizeConfig
from toolchain.config.target import QuantizeScheme
from toolchain.data.feeds import Feeds, as_feeds
from toolchain.stages.transformer_fusion import attention_count, fuse_transformer

_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def calibration_subset(x: np.ndarray | Feeds, cfg: QuantizeConfig) -> np.ndarray | Feeds:
    """A seeded random subset, so calibration does not depend on the dataset's order."""
    rng = np.random.default_rng(cfg.seed)
    n = min(cfg.calibration_samples, len(x))
    index = np.sort(rng.choice(len(x), size=n, replace=False))
    return x.take(index) if isinstance(x, Feeds) else x[index]


def static_kwargs(scheme: QuantizeScheme) -> dict[str, Any]:
    """quantize_static keyword arguments for a scheme: one mapping shared by the stage and the search."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    return {
        "quant_format": QuantFormat.QDQ if scheme.format == "qdq" else QuantFormat.QOperator,
        "per_channel": scheme.per_channel,
        "reduce_range": scheme.reduce_range,
        "activation_type": qtype[scheme.activation_type],
        "weight_type": qtype[scheme.weight_type],
        "calibrate_method": getattr(CalibrationMethod, _METHODS[scheme.calibration_method]),
    }


# Input channels at or below which a conv on the model input is a "stem": RGB(A), grey, stereo audio.
STEM_MAX_CHANNELS = 4


def _weight_dims(graph, name: str) -> list[int] | None:
    """Shape of a weight, followed through Constant and DequantizeLinear (pre-quantized) producers."""
    for init in graph.initializer:
        if init.name == name:
            return list(init.dims)
    for node in graph.node:
        if name in node.output:
            if node.op_type == "Constant":
                return next((list(a.t.dims) for a in node.attribute if a.name == "value"), None)
            if node.op_type == "DequantizeLinear":
                return _weight_dims(graph, node.input[0])
            return None
    return None


def stem_convs(model) -> list[str]:
    """Names of the Conv nodes that read a graph input directly with <= STEM_MAX_CHANNELS channels."""
    graph = model.graph
    inputs = {i.name for i in graph.input} - {init.name for init in graph.initializer}
    stems = []
    for node in graph.node:
        if node.op_type != "Conv" or not node.name or node.input[0] not in inputs:
            continue
        dims = _weight_dims(graph, node.input[1])
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        # dims[1] is input channels *per group*: a depthwise conv on a 32-channel input has dims[1] = 1.
        # Only 2-D convs (4-D weights): the reason to keep a stem fp32 is ORT's NCHWc stem kernel,
        # which 1-D convs do not get (measured, 1 thread, 64 px / 128 steps: fp32 stem 3-8% faster on
        # resnet-small, shapes-mobilenet and digits; 9% slower on seq-conv1d's 2-channel Conv1d).
        if dims and len(dims) == 4 and dims[1] * group <= STEM_MAX_CHANNELS:
            stems.append(node.name)
    return stems


def excluded_nodes(model, scheme: QuantizeScheme, extra: list[str]) -> tuple[list[str], list[str]]:
    """(nodes_to_exclude for ORT, stem convs the scheme keeps fp32): one rule for the stage and the search."""
    stems = [n for n in stem_convs(model) if n not in extra] if scheme.fp32_stem else []
    return list(extra) + stems, stems


def _reader(feeds: Feeds, batch: int, fixed: bool = False):
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        def __init__(self):
            # A fixed-batch model takes only full batches ("Got: 2 Expected: 4"): pad the last one
            # with copies of its last sample, which does not move a min/max range.
            self._it = (feed for feed, _ in feeds.batches(batch, pad=fixed))

        def get_next(self):
            return next(self._it, None)

    return _Batches()


def _fixed_batch(model_path: Path) -> int | None:
    """The first real input's leading dimension when the graph fixes it (initializers listed as
    inputs, as opset < 13 exporters did, are not real inputs)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    first = next(i for i in graph.input if i.name not in inits)
    dims = first.type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


@contextlib.contextmanager
def _inside(directory: Path):
    """Run with `directory` as the working directory: ORT's symbolic shape inference saves
    `sym_shape_infer_temp.onnx` (+ `.data`) to the cwd when it gives up, which must not be
    the user's directory."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


# ORT's pre-processing, most to least thorough. Symbolic shape inference raises on many real
# graphs (Shape/Range/Resize chains, If subgraphs, "Incomplete symbolic shape inference", an
# AssertionError in _infer_Concat); without it ORT's optimizer and ONNX shape inference still run.
_PRE_PROCESS = (("full", {}), ("skip_symbolic_shape", {"skip_symbolic_shape": True}))


def pre_process(src: Path, dest: Path) -> dict[str, Any]:
    """ORT's quant_pre_process of `src` into `dest`, best effort: when every level fails the
    model is quantized as it is. Returns what was done and, for a fallback, why."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reasons = []
    for level, kwargs in _PRE_PROCESS:
        try:
            quant_pre_process(str(src), str(dest), **kwargs)
            return {"pre_process": level, **({"pre_process_note": "; ".join(reasons)} if reasons else {})}
        except Exception as err:  # noqa: BLE001 - ORT raises bare Exception, AssertionError, onnx errors
            reasons.append(f"{level} failed ({type(err).__name__}: {str(err).strip()[:160]})")
    shutil.copyfile(src, dest)
    return {"pre_process": "skipped", "pre_process_note": "; ".join(reasons)}


def _keep_fp32(src: Path, pre: Path, raw: Path, calib_x, cfg: QuantizeConfig, exclude: list[str]) -> None:
    shutil.copyfile(src, raw)


def _dynamic(src: Path, pre: Path, raw: Path, calib_x, cfg: QuantizeConfig, exclude: list[str]) -> None:
    """Weights int8 ahead of time, activations quantized at run time: no calibration."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scheme = cfg.scheme
    quantize_dynamic(str(pre), str(raw), weight_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[scheme.weight_type],
                     per_channel=scheme.per_channel, reduce_range=scheme.reduce_range, nodes_to_exclude=exclude)


def _static(src: Path, pre: Path, raw: Path, calib_x, cfg: QuantizeConfig, exclude: list[str]) -> None:
    """QDQ or QOperator, calibrated on every input at the model's own batch."""
    from onnxruntime.quantization import quantize_static

    calib = calibration_subset(as_feeds(calib_x, _first_input(pre)), cfg)
    # Feeds know their model's batch; a bare array is one input whose dim 0 is the batch.
    fixed = calib.fixed_batch if isinstance(calib_x, Feeds) else _fixed_batch(pre)
    reader = _reader(calib, fixed or cfg.calibration_batch, fixed=fixed is not None)
    quantize_static(str(pre), str(raw), reader, nodes_to_exclude=exclude, **static_kwargs(cfg.scheme))


# [quantize] format -> how; a new format is one function and one entry (like PRUNERS).
QUANTIZERS: dict[str, Callable[..., None]] = {"none": _keep_fp32, "dynamic": _dynamic, "qdq": _static, "qoperator": _static}


def quantize(src: Path, calib_x: np.ndarray | Feeds, cfg: QuantizeConfig, dest: Path, stamp: dict[str, str]) -> dict[str, Any]:
    """Write a quantized copy of `src` to `dest`; `src` is never modified. Temporary files go to
    a directory next to `dest` (the stage's output dir), removed on return."""
    import onnx

    from toolchain.package.metadata import stamp_onnx_metadata

    src, dest = Path(src).resolve(), Path(dest).resolve()
    scheme = cfg.scheme
    exclude, stems, facts = list(cfg.nodes_to_exclude), [], {}
    with (tempfile.TemporaryDirectory(dir=dest.parent, prefix=".quantize-") as tmp,
          _inside(Path(tmp)), contextlib.redirect_stdout(sys.stderr)):
        pre = Path(tmp) / "pre.onnx"
        raw = Path(tmp) / "quant.onnx"
        if scheme.format != "none":
            fused = Path(tmp) / "fused.onnx"
            fusion = fuse_transformer(src, fused, scheme.fuse_transformer)
            facts = {**pre_process(fused, pre), "transformer_fusion": fusion}
            # Stems are found in the pre-processed graph: those are the node names ORT's quantizer sees.
            model = onnx.load(str(pre), load_external_data=False)
            exclude, stems = excluded_nodes(model, scheme, exclude)
            # What a flipped scheme would change (pipeline/variants.py builds only flips that do).
            facts["stem_convs"] = [n for n in stem_convs(model) if n not in cfg.nodes_to_exclude]
            facts["attention_nodes"] = attention_count(model)
        QUANTIZERS[scheme.format](src, pre, raw, calib_x, cfg, exclude)
        stamp_onnx_metadata(raw, dest, stamp)
    return {"format": scheme.format, "calibration_samples": int(min(cfg.calibration_samples, len(calib_x))),
            "fp32_nodes": exclude, "fp32_stem_nodes": stems, **facts}


def _first_input(model_path: Path) -> str:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    return next(i.name for i in graph.input if i.name not in inits)
