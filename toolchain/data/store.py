"""A Dataset as files: its four splits in one .npz and what an app needs to feed it in a JSON-able
record. The pipeline caches generated datasets this way (pipeline/steps.py `dataset`): drawing
the shapes images and importing scikit-learn for the split cost 4.2 s in every process that
needs the data (each batch task, each search), reading them back and checking their fingerprint 0.4 s.

No pickle: a cache shared between nodes is read by every one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.data.feeds import Feeds
from toolchain.data.types import Dataset

FILE = "data.npz"
SPLITS = ("x_train", "y_train", "x_test", "y_test")


def save_dataset(data: Dataset, folder: Path) -> dict[str, Any]:
    """Write `data` into `folder`; returns the record that `load_saved` needs with it."""
    arrays: dict[str, np.ndarray] = {}
    layout: dict[str, Any] = {}
    for split in SPLITS:
        value = getattr(data, split)
        if isinstance(value, Feeds):  # several inputs: one array each, the feed's layout in the record
            arrays.update({f"{split}/{name}": value.arrays[name] for name in value.names})
            layout[split] = {"names": list(value.names), "axes": [value.axes[n] for n in value.names],
                             "fixed_batch": value.fixed_batch}
        else:
            arrays[split] = value
    np.savez(Path(folder) / FILE, **arrays)
    return {"file": FILE, "name": data.name, "labels": list(data.labels), "preprocessing": data.preprocessing,
            "input_name": data.input_name, "feeds": layout, "fingerprint": data.fingerprint()}


def load_saved(folder: Path, record: dict[str, Any]) -> Dataset:
    """The Dataset `save_dataset` wrote: the same arrays, dtypes and fingerprint."""
    with np.load(Path(folder) / record["file"], allow_pickle=False) as npz:
        splits = {split: _split(npz, split, record["feeds"].get(split)) for split in SPLITS}
    data = Dataset(name=record["name"], labels=tuple(record["labels"]), preprocessing=record["preprocessing"],
                   input_name=record["input_name"], **splits)
    if data.fingerprint() != record["fingerprint"]:
        raise RuntimeError(f"{folder}: the cached data set does not hash to its record's fingerprint")
    return data


def _split(npz, split: str, layout: dict[str, Any] | None) -> np.ndarray | Feeds:
    if layout is None:
        return npz[split]
    names = layout["names"]
    return Feeds({n: npz[f"{split}/{n}"] for n in names}, dict(zip(names, layout["axes"], strict=True)),
                 layout["fixed_batch"], tuple(names))
