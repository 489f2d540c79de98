"""The conformance corpus: each case is an ONNX file plus the `compress` flags it needs.

Torch cases are exported here (torch 2.13's dynamo exporter, opset 18 asked for and checked,
external data only where a case wants it), with dynamic axes and as fixed-shape variants.
ONNX's own test graphs are read from the installed `onnx` package. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OPSET = 18
# The re-created families (torch_specs keys): named here so collecting tests needs no torch import.
TORCH_CASES = ("detector", "crnn", "gru_state", "lstm_state", "encoder", "segnet")


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    args: tuple[str, ...] = ()  # extra `compress` flags: --input-shape, --input-range
    slow: bool = False
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # run shapes for the test's own inputs
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TorchSpec:
    build: Callable[[], object]
    example: Callable[[int], tuple]  # batch -> example inputs
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: Callable[[], dict]  # forward arg name -> {axis: Dim}
    args: tuple[str, ...] = ()
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    slow: bool = False


def _g(seed: int = 0):
    import torch

    return torch.Generator().manual_seed(seed)


def _image(c: int, h: int, w: int):
    import torch

    return lambda b: (torch.randn(b, c, h, w, generator=_g()),)


def _state(layers: int, with_c: bool):
    import torch

    def example(b: int):
        x = torch.randn(b, 16, 8, generator=_g())
        h = torch.zeros(layers, b, 32)
        sr = torch.tensor(16000, dtype=torch.int64)
        return (x, h, torch.zeros(layers, b, 32), sr) if with_c else (x, h, sr)

    return example


def _tokens(b: int):
    import torch

    ids = torch.randint(0, 100, (b, 12), generator=_g())
    return ids, torch.ones(b, 12, dtype=torch.int64)


def _dims():
    from torch.export import Dim

    return Dim("batch", min=1, max=64), Dim


def torch_specs() -> dict[str, TorchSpec]:
    from . import models as m

    def hw(mult: int):
        def dyn():
            batch, dim = _dims()
            return {"x": {0: batch, 2: mult * dim("h", min=2, max=32), 3: mult * dim("w", min=2, max=32)}}

        return dyn

    def seq(names):
        def dyn():
            batch, dim = _dims()
            t = dim("t", min=2, max=64)
            return {n: ({0: batch, 1: t} if n == "x" else {1: batch} if n in ("h", "c") else None) for n in names}

        return dyn

    def crnn():
        batch, dim = _dims()
        return {"x": {0: batch, 3: 4 * dim("w", min=2, max=64)}}

    def tokens():
        batch, dim = _dims()
        length = dim("seq", min=2, max=64)
        return {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}

    return {
        "detector": TorchSpec(m.Detector, _image(3, 64, 64), ("images",), ("detections",), hw(8),
                              ("--input-shape", "images=1,3,64,64")),
        "crnn": TorchSpec(m.CRNN, _image(1, 32, 64), ("x",), ("logits",), crnn, ("--input-shape", "x=1,1,32,64")),
        "gru_state": TorchSpec(m.GRUState, _state(1, False), ("x", "h", "sr"), ("prob", "hn"), seq(("x", "h", "sr")),
                               ("--input-shape", "x=1,16,8", "--input-range", "sr=16000,16001"), {"sr": (16000, 16001)}),
        "lstm_state": TorchSpec(m.LSTMState, _state(2, True), ("x", "h", "c", "sr"), ("y", "hn", "cn"),
                                seq(("x", "h", "c", "sr")),
                                ("--input-shape", "x=1,16,8", "--input-range", "sr=16000,16001"), {"sr": (16000, 16001)}),
        "encoder": TorchSpec(m.Encoder, _tokens, ("input_ids", "attention_mask"), ("hidden", "pooled"), tokens,
                             ("--input-shape", "input_ids=1,12", "--input-shape", "attention_mask=1,12",
                              "--input-range", "input_ids=0,100", "--input-range", "attention_mask=0,2"),
                             {"input_ids": (0, 100), "attention_mask": (0, 2)}),
        "segnet": TorchSpec(m.SegNet, _image(3, 32, 32), ("x",), ("mask",), hw(8), ("--input-shape", "x=1,3,32,32")),
    }


def export_torch(name: str, spec: TorchSpec, dest: Path, dynamic: bool, external: bool = False) -> Path:
    """Export one re-creation to `dest` (a folder); returns the .onnx path."""
    import onnx
    import torch

    torch.manual_seed(0)
    model = spec.build().eval()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{name}.onnx"
    with contextlib.redirect_stdout(sys.stderr), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, spec.example(2 if dynamic else 1), str(path), dynamo=True, external_data=external,
            opset_version=OPSET, input_names=list(spec.inputs), output_names=list(spec.outputs),
            dynamic_shapes=spec.dynamic() if dynamic else None, verbose=False,
        )
    proto = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset != OPSET:
        raise RuntimeError(f"{name}: the exporter wrote opset {opset}, asked for {OPSET}")
    return path


def fixed_args(spec: TorchSpec) -> tuple[str, ...]:
    """A fixed-shape export needs no --input-shape; ranges still apply."""
    out, args = [], list(spec.args)
    while args:
        flag, value = args.pop(0), args.pop(0)
        if flag != "--input-shape":
            out += [flag, value]
    return tuple(out)


def run_shapes(args: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for flag, value in zip(args[::2], args[1::2]):
        if flag == "--input-shape":
            name, _, dims = value.partition("=")
            shapes[name] = tuple(int(d) for d in dims.split(","))
    return shapes


def onnx_data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def onnx_cases() -> list[Case]:
    """ONNX's shipped graphs: `light` (full-size CNNs with weights made at load: slow) and the
    `pytorch-converted` / `pytorch-operator` graphs (opset 6-9, one or a few ops, fixed shapes)."""
    root = onnx_data_dir()
    cases = [Case(f"light/{p.stem}", p, slow=True) for p in sorted((root / "light").glob("*.onnx"))]
    for group in ("pytorch-converted", "pytorch-operator"):
        for d in sorted((root / group).iterdir()):
            if (d / "model.onnx").is_file():
                cases.append(Case(f"{group}/{d.name}", d / "model.onnx"))
    return cases


def random_inputs(path: Path, case: Case, batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Inputs from the calibration distribution (compress's --data random): floats N(0, 1), ints
    in the case's range or [0, 10), bools 50/50; `batch` on the exporter's "batch" dims, the
    case's --input-shape on its other dynamic dims."""
    import onnx
    import onnxruntime as ort

    from toolchain.compress.shapes import index_ranges

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # compress's own default for ids that index a weight table (its calibration distribution)
    ranges = {**index_ranges(onnx.load(str(case.path), load_external_data=False)), **case.ranges}
    rng = np.random.default_rng(seed)
    feed = {}
    for inp in sess.get_inputs():
        override = case.shapes.get(inp.name)
        shape = [d if isinstance(d, int) and d > 0 else batch if d == "batch" or override is None else override[i]
                 for i, d in enumerate(inp.shape)]
        kind = inp.type
        if "bool" in kind:
            feed[inp.name] = rng.random(shape) < 0.5
        elif "int" in kind:
            lo, hi = ranges.get(inp.name, (0, 10))
            feed[inp.name] = rng.integers(lo, hi, size=shape).astype(np.int64 if "64" in kind else np.int32)
        else:
            feed[inp.name] = rng.standard_normal(shape).astype(np.float32 if kind == "tensor(float)" else np.float64)
    return feed
