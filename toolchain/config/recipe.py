"""Recipes: one TOML file describing a whole run. Every section has defaults; the defaults are
the embedded default run (a small CNN on scikit-learn's digits, both bundled targets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from toolchain.config.base import Strict, read_toml, to_toml, validate
from toolchain.config.budgets import Budgets
from toolchain.config.data import DataConfig
from toolchain.config.stages import (
    CALIBRATION_DATA_HELP,
    ExportConfig,
    PackageConfig,
    PruneConfig,
    TrainConfig,
)
from toolchain.config.target import QuantizeScheme
from toolchain.config.zoo import ModelConfig
from toolchain.fsio import sha256_json

RECIPE_SCHEMA_VERSION = 1
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


# One statement per key lives in QuantizeScheme; here each key only says that it overrides it.
_OVERRIDE = "overrides the target profile's `[quantize] {}` for this recipe; unset keeps the profile's"


class _Calibration(Strict):
    """Calibration settings of a recipe; the scheme overrides are added from QuantizeScheme below."""

    calibration_samples: int = Field(256, ge=1, description="training samples used to calibrate activations")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="nodes kept in fp32 (see `edgeopt search`)")
    calibration_data: str = Field("train", min_length=1, description=CALIBRATION_DATA_HELP)

    def scheme_overrides(self) -> dict:
        return self.model_dump(exclude_none=True, exclude=set(_Calibration.model_fields))


def _overrides_of(schema: type[BaseModel]) -> dict[str, Any]:
    """Every field of `schema` as an optional override: same type, default None (keep the
    profile's). Derived, so a new scheme key is overridable without restating it here."""
    return {name: (f.annotation | None, Field(None, description=_OVERRIDE.format(name)))
            for name, f in schema.model_fields.items()}


# `[quantize]` of a recipe: calibration, fp32 fallbacks, and per-recipe overrides of the profile's scheme.
QuantizeOverrides = create_model("QuantizeOverrides", __base__=_Calibration, **_overrides_of(QuantizeScheme))


class Recipe(Strict):
    schema_version: Literal[1] = Field(RECIPE_SCHEMA_VERSION, description="recipe format version; required in a file")
    # The name becomes file names (artifact, package, run directory): no path separators or "..".
    name: str = Field("digits-cnn", pattern=SAFE_NAME, description=(
        "the run's name: run directory `runs/<name>/`, artifact and package names; letters, digits, "
        "'.', '_' and '-', starting with a letter or digit"))
    model: ModelConfig = Field(ModelConfig(), description="the model to build")
    data: DataConfig = Field(DataConfig(), description="the bundled dataset and its held-out split")
    train: TrainConfig = Field(TrainConfig(), description="seeded training (initial weights included)")
    prune: PruneConfig = Field(PruneConfig(), description="pruning and its fine-tune schedule")
    export: ExportConfig = Field(ExportConfig(), description="ONNX export and its parity check against PyTorch")
    quantize: QuantizeOverrides = Field(
        QuantizeOverrides(), description="calibration, fp32 fallbacks, and per-recipe overrides of the profile's scheme")
    package: PackageConfig = Field(PackageConfig(), description="what the app package may carry (docs/privacy.md)")
    targets: list[str] = Field(default_factory=lambda: ["cpu-server", "arm-mobile"], min_length=1,
                               description="target profile names to build for")
    # One table per target name, or "all" for every target; merged over the profile's budgets.
    budgets: dict[str, Budgets] = Field(default_factory=dict, description=(
        "limits per target name (`all`: every target), merged over the profile's `[budgets]`: a key set here wins"))

    def content_hash(self) -> str:
        return sha256_json(self.model_dump(mode="json"))

    def budgets_for(self, target: str, profile_budgets: Budgets) -> Budgets:
        merged = profile_budgets
        for key in ("all", target):
            if key in self.budgets:
                merged = self.budgets[key].merged_over(merged)
        return merged

    def to_toml(self) -> str:
        return to_toml(self.model_dump(mode="json"))


def load_recipe(path: str | Path | None) -> Recipe:
    """Load a recipe file; `None` gives the embedded default."""
    if path is None:
        return Recipe()
    data = read_toml(path, "recipe")
    if "schema_version" not in data:
        from toolchain.errors import ConfigError

        raise ConfigError(f"{path}: missing 'schema_version'", f"add schema_version = {RECIPE_SCHEMA_VERSION} at the top")
    return validate(Recipe, data, str(path))
