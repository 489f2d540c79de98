"""Resolve a model reference to a factory: a zoo name (a file in models/) or `module:factory`.

Zoo files are plain Python modules in the models directory, loaded by path, each exposing
`build(**kwargs) -> torch.nn.Module`. Recipes pass the kwargs.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from pydantic import Field

from toolchain.config.base import Strict
from toolchain.errors import BadInput
from toolchain.resources import bundled_dir


class ModelConfig(Strict):
    name: str = Field("digits_cnn", description="zoo name (`models/<name>.py`) or `package.module:factory`")
    kwargs: dict[str, int | float | str | bool] = Field(default_factory=dict, description="keyword arguments of its `build()`")


def zoo_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir("models").glob("*.py") if not p.stem.startswith("_"))


def _load_zoo_module(name: str) -> Any:
    path = bundled_dir("models") / f"{name}.py"
    if not path.is_file():
        raise BadInput(
            f"unknown model '{name}'",
            f"use a zoo name ({', '.join(zoo_names())}) or 'package.module:factory'",
        )
    spec = importlib.util.spec_from_file_location(f"edgeopt_zoo_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resolve_factory(ref: str) -> Callable[..., Any]:
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise BadInput(f"cannot import model module '{module_name}' ({err})", "check PYTHONPATH and the name") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise BadInput(f"'{ref}' is not a callable in {module_name}", "name a function returning an nn.Module")
        return factory
    return _load_zoo_module(ref).build


def model_source_sha256(ref: str) -> str | None:
    """sha256 of the file defining the model, so editing a zoo model retrains it instead of
    reusing weights cached for the old code. None when there is no such file.

    The file is located, never executed: a cache key must not import torch (a zoo module does),
    or a rerun that hits every stage would pay for it."""
    from toolchain.fsio import sha256_file

    if ":" in ref:
        try:
            spec = importlib.util.find_spec(ref.partition(":")[0])
        except (ImportError, ValueError):
            return None  # resolve_factory reports the bad name when the model is built
        path = spec.origin if spec is not None and spec.has_location else None
    else:
        zoo_file = bundled_dir("models") / f"{ref}.py"
        path = zoo_file if zoo_file.is_file() else None
    return sha256_file(path) if path else None


def build_model(cfg: ModelConfig, seed: int = 0) -> Any:
    """Build the model with initial weights drawn from `seed`: the same config and seed give the
    same weights, which makes training reproducible end to end. Global RNG state is restored."""
    import torch

    factory = resolve_factory(cfg.name)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(**cfg.kwargs)
    except TypeError as err:
        raise BadInput(f"model factory '{cfg.name}' rejected its kwargs ({err})", "fix [model.kwargs]") from None
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"model factory '{cfg.name}' returned {type(model).__name__}", "return a torch.nn.Module")
    return model
