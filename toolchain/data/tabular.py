"""Tabular datasets bundled with scikit-learn, standardized with training-split statistics."""

from __future__ import annotations

import numpy as np

from toolchain.config.data import DataConfig
from toolchain.data.types import Dataset, dataset_kwargs, stratified_split


def _standardized(name: str, raw, cfg: DataConfig) -> Dataset:

    dataset_kwargs(cfg, {})
    x = np.asarray(raw.data, dtype=np.float64)
    y = np.asarray(raw.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = stratified_split(x, y, cfg)
    # Statistics from the training split only: using the test split would leak it into training.
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant feature would divide by zero
    return Dataset(
        name=name,
        x_train=((x_tr - mean) / std).astype(np.float32),
        y_train=y_tr,
        x_test=((x_te - mean) / std).astype(np.float32),
        y_test=y_te,
        labels=tuple(str(t) for t in raw.target_names),
        preprocessing={
            "layout": "NF",
            "dtype": "float32",
            "description": "x = (raw - mean) / std per feature; mean and std from the training split",
            "features": [str(f) for f in raw.feature_names],
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
        },
    )


def load_breast_cancer(cfg: DataConfig) -> Dataset:
    """Wisconsin breast cancer (569 samples, 30 features, 2 classes), bundled with scikit-learn."""
    from sklearn.datasets import load_breast_cancer as sk_load

    return _standardized("breast_cancer", sk_load(), cfg)


def load_wine(cfg: DataConfig) -> Dataset:
    """UCI wine (178 samples, 13 features, 3 classes), bundled with scikit-learn."""
    from sklearn.datasets import load_wine as sk_load

    return _standardized("wine", sk_load(), cfg)
