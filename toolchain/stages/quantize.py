"""Quantize: ONNX Runtime post-training quantization as the target profile says.

Static schemes (QDQ / QOperator) are calibrated on training samples after ORT's quantization
pre-processing (symbolic shape inference + graph cleanup), which ORT requires for reliable
per-channel quantization. `quantize_static` overwrites the model's producer fields, so the
provenance stamp (producer, version, target, recipe hash) is applied afterwards.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from toolchain.config.base import Strict
from toolchain.config.target import QuantizeScheme
from toolchain.feeds import Feeds, as_feeds


class QuantizeConfig(Strict):
    scheme: QuantizeScheme = QuantizeScheme()
    calibration_samples: int = Field(256, ge=1)
    calibration_batch: int = Field(32, ge=1, description="samples per calibration batch (dynamic-batch models)")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names kept in fp32")
    seed: int = 0


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


def _reader(feeds: Feeds, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        def __init__(self):
            self._it = (feed for feed, _ in feeds.batches(batch))

        def get_next(self):
            return next(self._it, None)

    return _Batches()


def _fixed_batch(model_path: Path) -> int | None:
    import onnx

    dim0 = onnx.load(str(model_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim0.dim_value if dim0.HasField("dim_value") else None


def quantize(src: Path, calib_x: np.ndarray | Feeds, cfg: QuantizeConfig, dest: Path, stamp: dict[str, str]) -> dict[str, Any]:
    """Write a quantized copy of `src` to `dest`; `src` is never modified."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from toolchain.package.metadata import stamp_onnx_metadata

    scheme = cfg.scheme
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    exclude, stems = list(cfg.nodes_to_exclude), []
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        pre = Path(tmp) / "pre.onnx"
        raw = Path(tmp) / "quant.onnx"
        if scheme.format == "none":
            shutil.copyfile(src, raw)
        else:
            quant_pre_process(str(src), str(pre))
            # Stems are found in the pre-processed graph: those are the node names ORT's quantizer sees.
            exclude, stems = excluded_nodes(onnx.load(str(pre), load_external_data=False), scheme, exclude)
        if scheme.format == "dynamic":
            quantize_dynamic(
                str(pre), str(raw), weight_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[scheme.weight_type],
                per_channel=scheme.per_channel, reduce_range=scheme.reduce_range, nodes_to_exclude=exclude,
            )
        elif scheme.format in ("qdq", "qoperator"):
            calib = calibration_subset(as_feeds(calib_x, input_name), cfg)
            # Feeds know their model's batch; a bare array is one input whose dim 0 is the batch.
            batch = (calib.fixed_batch if isinstance(calib_x, Feeds) else _fixed_batch(pre)) or cfg.calibration_batch
            quantize_static(
                str(pre), str(raw), _reader(calib, batch), nodes_to_exclude=exclude, **static_kwargs(scheme),
            )
        stamp_onnx_metadata(raw, dest, stamp)
    return {"format": scheme.format, "calibration_samples": int(min(cfg.calibration_samples, len(calib_x))),
            "fp32_nodes": exclude, "fp32_stem_nodes": stems}
