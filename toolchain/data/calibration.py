"""What static quantization calibrates on: `[quantize] calibration_data` (docs/privacy.md).

"train" is the training split (as before); "synthetic" draws inputs from the training split's
per-channel statistics (toolchain.data.synthetic: aggregates, no rows); a path names an .npz of
public data holding the model's inputs. Whichever it is, the calibration data is an input to
quantization that no privacy accounting covers, and the report says which kind was used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.data.feeds import Feeds
from toolchain.errors import BadInput

KINDS = ("train", "synthetic")
NOTE = (
    "calibration data is a non-private input to quantization: activation ranges are computed "
    "from it, outside any privacy accounting of training"
)


def calibration_kind(value: str) -> str:
    return value if value in KINDS else "file"


def check_calibration_path(value: str) -> Path | None:
    """The .npz path `value` names (None for "train"/"synthetic"); BadInput if it is no readable file."""
    if value in KINDS:
        return None
    path = Path(value)
    if path.suffix.lower() != ".npz":
        raise BadInput(
            f"[quantize] calibration_data = {value!r} is neither 'train', 'synthetic' nor an .npz path",
            "give 'train', 'synthetic' or the path of an .npz holding the model's inputs",
        )
    if path.is_dir():
        raise BadInput(f"[quantize] calibration_data {value} is a directory", "give the path of an .npz file")
    if not path.is_file():
        raise BadInput(
            f"[quantize] calibration_data file not found: {value}",
            "check the path (relative paths start at the working directory)",
        )
    return path


def calibration_inputs(
    value: str, x_train: np.ndarray | Feeds, samples: int, input_name: str = "x"
) -> np.ndarray | Feeds:
    """The inputs to calibrate on, laid out like `x_train` (an array for a one-input model, or Feeds)."""
    if value == "train":
        return x_train
    if value == "synthetic":
        from toolchain.data.synthetic import synthetic_like

        return synthetic_like(x_train, min(samples, len(x_train)))
    return _from_file(check_calibration_path(value), x_train, input_name)


def _from_file(path: Path, x_train: np.ndarray | Feeds, input_name: str) -> np.ndarray | Feeds:
    from toolchain.data import user as data_input

    names = list(x_train.names) if isinstance(x_train, Feeds) else [input_name]
    raw = data_input.load_raw(str(path), names, None)
    given = raw.x if isinstance(raw.x, dict) else {names[0]: raw.x}
    if not isinstance(x_train, Feeds):
        return _checked(path, names[0], np.asarray(given[names[0]]), x_train, 0)
    arrays = {n: _checked(path, n, np.asarray(given[n]), x_train.arrays[n], x_train.axes[n]) for n in names}
    return Feeds(arrays, dict(x_train.axes), x_train.fixed_batch, x_train.names)


def _checked(path: Path, name: str, arr: np.ndarray, like: np.ndarray, axis: int | None) -> np.ndarray:
    from toolchain.data.user import check_finite

    def sample(a: np.ndarray) -> list[int]:
        return list(a.shape) if axis is None else [d for i, d in enumerate(a.shape) if i != axis]

    fix = f"store '{name}' as {like.dtype} with samples of shape {sample(like)} on axis {axis}"
    if arr.ndim != like.ndim or sample(arr) != sample(like) or (axis is not None and arr.shape[axis] < 1):
        raise BadInput(
            f"{path.name}: calibration input '{name}' has shape {list(arr.shape)}, "
            f"the model's data has {list(like.shape)}",
            fix,
        )
    if arr.dtype.kind not in ("fiub" if like.dtype.kind == "f" else "iub"):
        raise BadInput(
            f"{path.name}: calibration input '{name}' is {arr.dtype}, the model takes {like.dtype}", fix
        )
    arr = arr.astype(like.dtype)
    if arr.dtype.kind == "f":
        check_finite(arr, path.name, axis)
    return arr


def calibration_facts(value: str) -> dict[str, Any]:
    """What the report states about the calibration data (report.json and the page)."""
    return {"kind": calibration_kind(value), "source": value, "private": False, "note": NOTE}
