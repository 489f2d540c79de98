"""Datasets edgeopt trains, calibrates and evaluates on.

Everything here ships with a dependency (scikit-learn's bundled datasets) or is generated
deterministically: nothing is downloaded at run time. The registry is an explicit dict, not
filled by import side effects.
"""

from __future__ import annotations

from collections.abc import Callable

from toolchain.config.data import DataConfig
from toolchain.data import images, sequences, tabular, tokens
from toolchain.data.types import Dataset, stratified_split
from toolchain.errors import BadInput

__all__ = ["DATASETS", "DataConfig", "Dataset", "load_dataset", "stratified_split"]

DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    "digits": images.load_digits,
    "shapes": images.load_shapes,
    "breast_cancer": tabular.load_breast_cancer,
    "wine": tabular.load_wine,
    "sequences": sequences.load_sequences,
    "token_patterns": tokens.load_token_patterns,
}


def load_dataset(cfg: DataConfig) -> Dataset:
    loader = DATASETS.get(cfg.name)
    if loader is None:
        raise BadInput(f"unknown dataset '{cfg.name}'", f"known: {', '.join(sorted(DATASETS))}")
    return loader(cfg)
