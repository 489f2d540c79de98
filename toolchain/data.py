"""Datasets edgeopt trains, calibrates and evaluates on.

Everything here ships with a dependency (scikit-learn's bundled datasets) or is generated
deterministically: nothing is downloaded at run time. The registry is an explicit dict, not
filled by import side effects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from toolchain.config.base import Strict
from toolchain.errors import BadInput


class DataConfig(Strict):
    name: str = Field("digits", description="bundled dataset: digits, shapes, sequences, breast_cancer or wine")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share held out (stratified) for evaluation")
    seed: int = Field(0, description="seed of the held-out split")
    kwargs: dict[str, int | float | str | bool] = Field(default_factory=dict, description="dataset options (docs/recipes.md)")


@dataclass(frozen=True)
class Dataset:
    """Arrays plus what an app needs to feed the model the same way."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    input_name: str = "x"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample (no batch dimension)."""
        return tuple(self.x_train.shape[1:])

    @classmethod
    def split(cls, name: str, x: np.ndarray, y: np.ndarray, cfg: DataConfig, labels: tuple[str, ...],
              preprocessing: dict[str, Any]) -> Dataset:
        """A data set from all samples: stratified, seeded train/test split (see _split)."""
        x_tr, x_te, y_tr, y_te = _split(x, y, cfg)
        return cls(name=name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, labels=labels,
                   preprocessing=preprocessing)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def _split(x: np.ndarray, y: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, ...]:
    """Stratified, seeded split so the held-out set has every class in proportion."""
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(x, y, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=y))


def load_digits(cfg: DataConfig) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 images), bundled with scikit-learn."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    # Pixel values are 0..16; scaling to 0..1 keeps activations in a range int8 calibrates well.
    x = (raw.images / 16.0).astype(np.float32)[:, None, :, :]
    y = raw.target.astype(np.int64)
    return Dataset.split(
        "digits", x, y, cfg,
        labels=tuple(str(i) for i in range(10)),
        preprocessing={
            "layout": "NCHW",
            "dtype": "float32",
            "description": "8x8 grayscale, pixel values 0..16 divided by 16 (range 0..1)",
            "scale": 1 / 16.0,
            "offset": 0.0,
        },
    )


from toolchain import datasets_extra as _extra

DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    "digits": load_digits,
    "shapes": _extra.load_shapes,
    "breast_cancer": _extra.load_breast_cancer,
    "wine": _extra.load_wine,
    "sequences": _extra.load_sequences,
}


def load_dataset(cfg: DataConfig) -> Dataset:
    loader = DATASETS.get(cfg.name)
    if loader is None:
        raise BadInput(f"unknown dataset '{cfg.name}'", f"known: {', '.join(sorted(DATASETS))}")
    return loader(cfg)
