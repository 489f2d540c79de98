"""What `edgeopt batch` is given: SPECs, each a recipe file, `model.onnx@data.npz` (the
`edgeopt compress` path) or a TOML listing SPECs:

    schema_version = 1
    specs = ["models/digits-cnn.toml", "user/model.onnx@user/data.npz"]   # relative to this file

Every SPEC is read before any work: the bad ones are named together, in one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from toolchain.config.base import read_toml
from toolchain.config.recipe import Recipe, load_recipe
from toolchain.errors import BadInput, EdgeoptError, missing_file

LIST_KEYS = {"schema_version", "specs"}


@dataclass(frozen=True)
class RecipeSpec:
    source: str
    recipe: Recipe

    @property
    def name(self) -> str:
        return self.recipe.name


@dataclass(frozen=True)
class CompressSpec:
    source: str
    model: Path
    data: Path

    @property
    def name(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.model.stem).strip("-._") or "model"


Spec = RecipeSpec | CompressSpec


def _compress_spec(text: str, base: Path | None) -> CompressSpec:
    model_text, _, data_text = text.partition("@")
    model, data = (
        Path(t) if base is None or Path(t).is_absolute() else base / t for t in (model_text, data_text)
    )
    if not model_text or not data_text:
        raise BadInput(f"{text}: expected MODEL.onnx@DATA.npz", "name both files")
    for path, what in ((model, "model"), (data, "data file")):
        if not path.is_file():
            raise missing_file(path, what, "check the path")
    if model.suffix.lower() != ".onnx":
        raise BadInput(
            f"{model}: a batch compresses ONNX models", "export it to .onnx first, or use `edgeopt compress`"
        )
    return CompressSpec(text, model, data)


def _one(text: str, base: Path | None, nested: bool) -> list[Spec]:
    path = Path(text) if base is None or Path(text).is_absolute() else base / text
    if "@" in text and not path.exists():
        return [_compress_spec(text, base)]
    data = read_toml(path, "SPEC")  # missing, a directory, malformed: named by read_toml
    if "specs" in data:
        unknown = sorted(set(data) - LIST_KEYS)
        if unknown:
            raise BadInput(
                f"{path}: unknown key '{unknown[0]}' in a SPEC list", f"known: {', '.join(sorted(LIST_KEYS))}"
            )
        if nested:
            raise BadInput(
                f"{path}: a SPEC list inside a SPEC list", "list recipes and MODEL@DATA pairs only"
            )
        if not isinstance(data["specs"], list) or not all(isinstance(s, str) for s in data["specs"]):
            raise BadInput(
                f"{path}: 'specs' must be a list of strings", 'e.g. specs = ["models/digits-cnn.toml"]'
            )
        return [s for item in data["specs"] for s in _one(item, path.parent, nested=True)]
    return [RecipeSpec(str(path), load_recipe(path))]


def parse_specs(texts: list[str] | tuple[str, ...]) -> list[Spec]:
    """Every SPEC, read and checked; all the bad ones named in one BadInput."""
    if not texts:
        raise BadInput(
            "no SPEC given", "pass recipe files, MODEL.onnx@DATA.npz pairs, or a TOML listing them"
        )
    specs: list[Spec] = []
    bad: list[str] = []
    for text in texts:
        try:
            specs += _one(text, None, nested=False)
        except EdgeoptError as err:
            bad.append(err.problem if text in err.problem else f"{text}: {err.problem}")
    if bad:
        raise BadInput(f"{len(bad)} bad SPEC(s): " + "; ".join(bad), "fix or drop them; nothing was run")
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadInput(
            f"two SPECs are both named '{twice[0]}'", "give each recipe (or model file) its own name"
        )
    return specs
