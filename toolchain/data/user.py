"""A user's data -> checked arrays -> a deterministic calibration / evaluation split.

Sources (`--data`): `.npz` (key `x` for a one-input model, or one array per input name; optional
`y`), `.npy` (inputs only), `.csv` (numeric columns, optional `--label-column`), `module:function`
returning `(x, y)` or `x`, or `random`: seeded values per input dtype (feeds_input.py).

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
from toolchain.data.feeds import Feeds
from toolchain.errors import BadInput, missing_file

SPLIT_SEED = 0


@dataclass(frozen=True)
class RawData:
    x: np.ndarray | dict[str, np.ndarray]  # one input's samples, or input name -> samples
    y: np.ndarray | None
    source: str
    random: bool = False


@dataclass(frozen=True)
class CompressData(Dataset):
    """A Dataset whose inputs are Feeds (x_train, x_test: every model input) and whose labels may be absent. `y_test` is set only for integer class labels, so the
    benchmark stage computes `accuracy` exactly when it means top-1 accuracy; `y_eval` carries
    whatever targets the evaluator uses (classes, regression targets, or None)."""

    y_eval: np.ndarray | None = None
    task: str = "agreement"  # "classify" | "regress" | "agreement"

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.task.encode())
        self.x_train.update_hash(h)
        self.x_test.update_hash(h)
        if self.y_eval is None:
            h.update(b"none")
        else:
            h.update(str(self.y_eval.dtype).encode() + str(self.y_eval.shape).encode())
            h.update(np.ascontiguousarray(self.y_eval).tobytes())
        return h.hexdigest()


def load_raw(spec: str, input_names: list[str] | None, label_column: str | None) -> RawData | None:
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
        return _from_npz(path, input_names)
    if suffix == ".npy":
        return RawData(_np_load(path), None, path.name)
    if suffix == ".csv":
        return _from_csv(path, label_column)
    raise BadInput(f"{path.name}: unknown data format '{suffix or '(none)'}'", "use .npz, .npy or .csv")


def check(raw: RawData, sample_shape: tuple[int, ...]) -> RawData:
    """Validate one float input's samples (x as one array); returns float32 inputs and checked labels."""
    x = np.asarray(raw.x)
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
    check_finite(x, raw.source, 0)
    return RawData(x, check_labels(raw.y, len(x), raw.source), raw.source, raw.random)


def check_finite(x: np.ndarray, source: str, axis: int | None) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.argwhere(bad)[0]
        where = f", first in sample {int(first[axis])}" if axis is not None else ""
        raise BadInput(f"{source}: {int(bad.sum())} NaN/inf input value(s){where}", "clean or drop those samples")


def check_labels(y, n: int, source: str) -> np.ndarray | None:
    """Integer labels are class indices (classify), float ones regression targets."""
    if y is None:
        return None
    y = np.asarray(y)
    if len(y) != n:
        raise BadInput(f"{source}: {len(y)} labels for {n} samples", "give one label per sample")
    if np.issubdtype(y.dtype, np.bool_) or np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.int64)
        if y.ndim != 1 or (y < 0).any():
            raise BadInput(
                f"{source}: integer labels must be a 1-D array of class indices >= 0",
                "store class indices, or float targets for regression",
            )
    elif np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float32)
        if not np.isfinite(y).all():
            raise BadInput(f"{source}: NaN/inf in the targets", "clean or drop those samples")
    else:
        raise BadInput(f"{source}: labels have dtype {y.dtype}", "give integer classes or float targets")
    return y


def split(feeds: Feeds, y: np.ndarray | None, source: str, eval_fraction: float) -> CompressData:
    """Seeded permutation: the same data always gives the same calibration and evaluation parts.
    Data that is a single run (no input has a batch axis) calibrates and evaluates on that run."""
    n = len(feeds)
    if not feeds.batched:
        cal = ev = np.arange(1)
    else:
        n_eval = min(max(1, round(n * eval_fraction)), n - 1)
        order = np.random.default_rng(SPLIT_SEED).permutation(n)
        ev, cal = np.sort(order[:n_eval]), np.sort(order[n_eval:])
    task = "agreement" if y is None else ("classify" if y.dtype == np.int64 else "regress")
    first = next(iter(feeds.arrays.values()))
    return CompressData(
        name=source,
        x_train=feeds.take(cal),
        y_train=y[cal] if task == "classify" else None,
        x_test=feeds.take(ev),
        y_test=y[ev] if task == "classify" else None,
        labels=(),
        # The axis order of a user's model is not knowable from shapes alone, so claim none.
        preprocessing={
            "layout": "NC" if len(feeds.names) == 1 and first.ndim == 2 else "as-given",
            "dtype": str(first.dtype),  # of the first input; the manifest's inputs list every dtype
            "description": "user data, fed as given",
        },
        input_name=feeds.names[0],
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


def _from_npz(path: Path, input_names: list[str] | None) -> RawData:
    """Key 'x' (one input), or one key per model input name; optional 'y' (or 'labels')."""
    names = list(input_names or [])
    with _np_load(path) as npz:
        keys = list(npz.files)
        label_key = "y" if "y" in keys else "labels" if "labels" in keys else None
        data_keys = [k for k in keys if k != label_key]
        try:
            y = npz[label_key] if label_key else None
            if data_keys == ["x"] and "x" not in names and len(names) <= 1:
                return RawData(npz["x"], y, path.name)
            if len(names) == 1 and data_keys == names:
                return RawData(npz[names[0]], y, path.name)
            missing = [n for n in names if n not in data_keys]
            extra = [k for k in data_keys if k not in names]
            if missing or extra or not names:
                problem = f"no array for input '{missing[0]}'" if missing else f"unexpected key '{extra[0]}'"
                raise BadInput(
                    f"{path.name}: {problem} (keys {keys})",
                    f"store one array per input ({', '.join(names) or 'x'}) and optional 'y' for labels",
                )
            return RawData({n: npz[n] for n in names}, y, path.name)
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
