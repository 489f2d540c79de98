"""`[data]`: which bundled dataset a recipe trains, calibrates and evaluates on."""

from __future__ import annotations

from pydantic import Field

from toolchain.config.base import Strict


class DataConfig(Strict):
    name: str = Field("digits", description="bundled dataset: digits, shapes, sequences, breast_cancer or wine")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share held out (stratified) for evaluation")
    seed: int = Field(0, description="seed of the held-out split")
    kwargs: dict[str, int | float | str | bool] = Field(default_factory=dict, description="dataset options (docs/recipes.md)")
