"""`[data]`: which bundled dataset a recipe trains, calibrates and evaluates on."""

from __future__ import annotations

from pydantic import Field

from toolchain.config.base import Strict


class DataConfig(Strict):
    name: str = "digits"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    kwargs: dict[str, int | float | str | bool] = Field(default_factory=dict)
