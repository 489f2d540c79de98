"""A user's data -> checked arrays -> a deterministic calibration / evaluation split.

Sources (`--data`): `.npz` (key `x` or the model input's name, optional `y`), `.npy` (inputs
only), `.csv` (numeric columns, optional `--label-column`), `module:function` returning `(x, y)`
or `x`, or `random`: seeded normal noise shaped like the input, calibration only.

Labels decide the evaluation: integer labels are classes (top-1 accuracy), float targets are
regression (MSE/MAE), no labels means agreement with the fp32 model. Arrays are read with
`allow_pickle=False`: a data file is data, never code.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.data import Dataset
from toolchain.errors import BadInput, missing_file

RANDOM_SAMPLES = 128  # enough for minmax calibration of small models; evaluation is agreement only
SPLIT_SEED = 0


@dataclass(frozen=True)
class RawData:
    x: np.ndarray
    y: np.ndarray | None
    source: str
    random: bool = False


@dataclass(frozen=True)
class CompressData(Dataset):
    """A Dataset whose labels may be absent. `y_test` is set only for integer class labels, so the
    benchmark stage computes `accuracy` exactly when it means top-1 accuracy; `y_eval` carries
    whatever targets the evaluator uses (classes, regression targets, or None)."""

    y_eval: np.ndarray | None = None
    task: str = "agreement"  # "classify" | "regress" | "agreement"

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.task.encode())
        for arr in (self.x_train, self.x_test, self.y_eval):
            if arr is None:
                h.update(b"none")
                continue
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def load_raw(spec: str, input_name: str | None, label_column: str | None) -> RawData | None:
    """Read `--data`; `random` returns None (it needs the model's input shape: see random_data)."""
    if spec == "random":
        return None
    path = Path(spec)
    if not path.exists() and _is_ref(spec):
        return _from_factory(spec)
    if not path.is_file():
        raise missing_file(spec, "data file", "pass a .npz/.npy/.csv file, module:function, or 'random'")
    suffix = path.suffix.lower()
    if label_column is not None and suffix != ".csv":
        raise BadInput(
            "--label-column applies to CSV data only", "drop it, or store labels as key 'y' in the .npz"
        )
    if suffix == ".npz":
        return _from_npz(path, input_name)
    if suffix == ".npy":
        return RawData(_np_load(path), None, path.name)
    if suffix == ".csv":
        return _from_csv(path, label_column)
    raise BadInput(f"{path.name}: unknown data format '{suffix or '(none)'}'", "use .npz, .npy or .csv")


def random_data(sample_shape: tuple[int, ...], n: int = RANDOM_SAMPLES) -> RawData:
    x = np.random.default_rng(SPLIT_SEED).standard_normal((n, *sample_shape)).astype(np.float32)
    return RawData(x, None, "random", random=True)


def check(raw: RawData, sample_shape: tuple[int, ...]) -> RawData:
    """Validate against the model's input; returns float32 inputs and normalized labels."""
    x = raw.x
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise BadInput(f"{raw.source}: inputs have dtype {x.dtype}", "give numeric inputs")
    if (
        x.ndim >= 1
        and x.shape[1:] != sample_shape
        and x.ndim == 2
        and int(np.prod(sample_shape)) == x.shape[1]
    ):
        x = x.reshape((len(x), *sample_shape))  # flat rows (CSV) for a model with a shaped input
    if x.ndim == 0 or tuple(x.shape[1:]) != tuple(sample_shape):
        raise BadInput(
            f"{raw.source}: samples have shape {tuple(x.shape[1:])}, the model takes {tuple(sample_shape)}",
            "reshape the data to (N, " + ", ".join(map(str, sample_shape)) + "), or fix --input-shape",
        )
    if len(x) < 2:
        raise BadInput(
            f"{raw.source}: {len(x)} sample(s)", "give at least 2: one to calibrate, one to evaluate"
        )
    x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise BadInput(
            f"{raw.source}: {int(bad.sum())} NaN/inf input value(s), first in sample {row}",
            "clean or drop those samples",
        )
    y = raw.y
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise BadInput(f"{raw.source}: {len(y)} labels for {len(x)} samples", "give one label per sample")
        if np.issubdtype(y.dtype, np.bool_) or np.issubdtype(y.dtype, np.integer):
            y = y.astype(np.int64)
            if y.ndim != 1 or (y < 0).any():
                raise BadInput(
                    f"{raw.source}: integer labels must be a 1-D array of class indices >= 0",
                    "store class indices, or float targets for regression",
                )
        elif np.issubdtype(y.dtype, np.floating):
            y = y.astype(np.float32)
            if not np.isfinite(y).all():
                raise BadInput(f"{raw.source}: NaN/inf in the targets", "clean or drop those samples")
        else:
            raise BadInput(
                f"{raw.source}: labels have dtype {y.dtype}", "give integer classes or float targets"
            )
    return RawData(x, y, raw.source, raw.random)


def split(raw: RawData, eval_fraction: float, input_name: str, labels: tuple[str, ...]) -> CompressData:
    """Seeded permutation: the same data always gives the same calibration and evaluation parts."""
    n = len(raw.x)
    n_eval = min(max(1, round(n * eval_fraction)), n - 1)
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    ev, cal = np.sort(order[:n_eval]), np.sort(order[n_eval:])
    y = raw.y
    task = "agreement" if y is None else ("classify" if y.dtype == np.int64 else "regress")
    y_test = y[ev] if task == "classify" else None
    return CompressData(
        name=raw.source,
        x_train=raw.x[cal],
        y_train=y[cal] if task == "classify" else None,
        x_test=raw.x[ev],
        y_test=y_test,
        labels=labels if task == "classify" else (),
        # The axis order of a user's model is not knowable from shapes alone, so claim none.
        preprocessing={
            "layout": "NC" if raw.x.ndim == 2 else "as-given",
            "dtype": "float32",
            "description": "user data, fed as given",
        },
        input_name=input_name,
        y_eval=None if y is None else y[ev],
        task=task,
    )


def _is_ref(spec: str) -> bool:
    module, sep, attr = spec.partition(":")
    return bool(sep and attr.isidentifier() and all(p.isidentifier() for p in module.split(".")))


def _np_load(path: Path, **kw) -> Any:
    try:
        return np.load(path, allow_pickle=False, **kw)
    except ValueError as err:  # object arrays need pickle: refused on purpose
        raise BadInput(f"{path.name}: holds pickled objects ({err})", "save plain numeric arrays") from None
    except Exception as err:
        raise BadInput(
            f"{path.name} is not a readable numpy file ({type(err).__name__})",
            "save it with numpy.save/savez",
        ) from None


def _from_npz(path: Path, input_name: str | None) -> RawData:
    with _np_load(path) as npz:
        keys = list(npz.files)
        x_key = "x" if "x" in keys else input_name if input_name in keys else None
        if x_key is None or set(keys) - {x_key, "y"}:
            raise BadInput(
                f"{path.name}: keys {keys}",
                f"use 'x' (or '{input_name}') for inputs and optional 'y' for labels",
            )
        try:
            return RawData(npz[x_key], npz["y"] if "y" in keys else None, path.name)
        except ValueError as err:
            raise BadInput(
                f"{path.name}: holds pickled objects ({err})", "save plain numeric arrays"
            ) from None


def _from_csv(path: Path, label_column: str | None) -> RawData:
    try:
        rows = [r for r in csv.reader(path.read_text(encoding="utf-8").splitlines()) if r]
    except (UnicodeDecodeError, csv.Error) as err:
        raise BadInput(
            f"{path.name}: not a readable CSV file ({err})", "save UTF-8 comma-separated numbers"
        ) from None
    if not rows:
        raise BadInput(f"{path.name} is empty", "give one sample per row")
    header = None if all(_is_number(c) for c in rows[0]) else [c.strip() for c in rows[0]]
    body = rows[1:] if header else rows
    label_idx = _label_index(label_column, header, len(rows[0]), path.name)
    feats, labels = [], []
    for i, row in enumerate(body, start=2 if header else 1):
        if len(row) != len(rows[0]):
            raise BadInput(
                f"{path.name}: row {i} has {len(row)} columns, expected {len(rows[0])}",
                "make every row the same width",
            )
        for j, cell in enumerate(row):
            if not _is_number(cell) and cell.strip() != "":
                raise BadInput(
                    f"{path.name}: row {i} column {j + 1}: {cell!r} is not a number",
                    "give numeric features only",
                )
        labels.append(row[label_idx].strip() if label_idx is not None else None)
        feats.append([float(c) if c.strip() else float("nan") for j, c in enumerate(row) if j != label_idx])
    x = np.asarray(feats, dtype=np.float32)
    y = None
    if label_idx is not None:
        as_int = all(_is_int(v) for v in labels)
        y = np.asarray(
            [int(v) if as_int else float(v or "nan") for v in labels],
            dtype=np.int64 if as_int else np.float32,
        )
    return RawData(x, y, path.name)


def _label_index(label_column: str | None, header: list[str] | None, width: int, name: str) -> int | None:
    if label_column is None:
        return None
    if header and label_column in header:
        return header.index(label_column)
    if label_column.lstrip("-").isdigit() and -width <= int(label_column) < width:
        return int(label_column) % width
    raise BadInput(
        f"{name}: no column {label_column!r}",
        f"name a header column ({', '.join(header or [])}) or a 0-based index",
    )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _is_int(cell: str | None) -> bool:
    return cell is not None and cell.lstrip("+-").isdigit()


def _from_factory(ref: str) -> RawData:
    module_name, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise BadInput(
            f"cannot import data function '{ref}' ({err})", "check PYTHONPATH and the name"
        ) from None
    try:
        out = fn()
    except Exception as err:
        raise BadInput(
            f"data function '{ref}' raised {type(err).__name__}: {err}", "fix the function"
        ) from None
    x, y = out if isinstance(out, tuple) and len(out) == 2 else (out, None)
    try:
        return RawData(np.asarray(x), None if y is None else np.asarray(y), ref)
    except Exception as err:
        raise BadInput(
            f"data function '{ref}' returned something that is not arrays ({err})",
            "return x or (x, y) as numpy arrays",
        ) from None
