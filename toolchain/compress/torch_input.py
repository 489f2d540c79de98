"""PyTorch models -> one ONNX file, which model_input then normalizes like any user ONNX file.

Two sources:
- `module:factory` plus an optional `--weights` state dict. The factory is code the user names
  (as with recipes); the weights are data, read with `torch.load(weights_only=True)` through
  `toolchain.torch_io`, so a weights file can never run code.
- A `torch.export` `.pt2` archive. `torch.export.load` is NOT safe on untrusted files: in torch
  2.13 it unpickles pickled weights and constants with `torch.load(weights_only=False)` and
  `pickle.loads`, and falls back to `weights_only=False` when a safe load fails. So we refuse
  .pt2 files unless the user passes `--trust-pt2`, saying they made the file themselves.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import BadInput, ModelLoadError, VerificationError, missing_file
from toolchain.fsio import sha256_file, sha256_json


@dataclass(frozen=True)
class TorchExport:
    onnx_path: Path
    load_model: Callable[[], Any]  # the eager reference for the benchmark (timed beside ORT)
    sha: str  # identifies the eager model: weights file bytes, or the .pt2 bytes
    facts: dict[str, Any]


def is_factory_ref(spec: str) -> bool:
    """`pkg.module:factory`, not an existing file (a Windows drive letter is not a module)."""
    module, sep, attr = spec.partition(":")
    return bool(
        sep
        and module
        and attr.isidentifier()
        and not Path(spec).exists()
        and all(part.isidentifier() for part in module.split("."))
    )


def is_pt2(path: Path) -> bool:
    return Path(path).suffix == ".pt2" or (Path(path).is_file() and zipfile.is_zipfile(path))


def from_factory(ref: str, weights: Path | None, example: np.ndarray, workdir: Path) -> TorchExport:
    from toolchain.config.zoo import ModelConfig, build_model
    from toolchain.torch_io import load_into

    # seed 0: a factory that draws random initial weights gives the same model on every run
    model = build_model(ModelConfig(name=ref), seed=0).eval()
    if weights is not None:
        model = load_into(model, weights)
    sha = sha256_file(weights) if weights is not None else sha256_json({"factory": ref, "seed": 0})
    dest = workdir / "exported.onnx"
    facts = _export(model, example, dest, ref)
    facts.update(source="torch-factory", factory=ref, weights=None if weights is None else Path(weights).name)
    return TorchExport(dest, lambda: model, sha, facts)


def refuse_untrusted_pt2(path: Path, trust: bool) -> None:
    """Called before anything reads the archive (or even imports torch)."""
    if not trust:
        raise BadInput(
            f"{Path(path).name} is a torch.export archive, and loading one unpickles it (it can run code)",
            "pass --trust-pt2 only for a file you created, or export it to ONNX yourself",
        )


def from_pt2(path: Path, example: np.ndarray, workdir: Path, trust: bool) -> TorchExport:
    import torch

    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "model file", "check the path", ModelLoadError)
    refuse_untrusted_pt2(path, trust)
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path.name} is not a torch.export .pt2 archive", "save it with torch.export.save"
        )
    try:
        program = torch.export.load(str(path))
    except Exception as err:
        raise ModelLoadError(
            f"torch.export.load cannot read {path.name} ({_first_line(err)})",
            "save it with torch.export.save from the installed torch version",
        ) from None
    dest = workdir / "exported.onnx"
    facts = _export(program, example, dest, path.name)
    facts.update(source="torch-export-pt2")
    module = program.module()
    return TorchExport(dest, lambda: module, sha256_file(path), facts)


def _export(model, example: np.ndarray, dest: Path, what: str) -> dict[str, Any]:
    """ExportedPrograms keep their own dynamic shapes; nn.Modules get a dynamic batch dimension."""
    import torch

    from toolchain.stages.export import ExportConfig, check_parity, export_onnx

    cfg = ExportConfig()
    is_program = isinstance(model, torch.export.ExportedProgram)
    try:
        if is_program:
            facts = _export_program(model, example, dest, cfg)
        else:
            facts = export_onnx(model, example, cfg, dest, dynamic_batch=True)
    except VerificationError:
        raise
    except Exception as err:  # exporter failures are many types; the first line names the op
        raise ModelLoadError(
            f"cannot export {what} to ONNX ({_first_line(err)})",
            "make the model torch.export-able, or export it to ONNX yourself",
        ) from None
    reference = _Eager(model.module()) if is_program else model
    facts["export_parity"] = check_parity(dest, reference, example, cfg)  # raises (exit 3) on mismatch
    return facts


def _export_program(program, example: np.ndarray, dest: Path, cfg) -> dict[str, Any]:
    """An ExportedProgram carries its own (static) shapes: export it as is, through the same
    verified single-file export as every other model."""
    from toolchain.stages.export import export_onnx

    return export_onnx(program, example, cfg, dest, dynamic_batch=False)


class _Eager:
    """check_parity calls `.eval()`, which an ExportedProgram's module refuses (it has no train mode)."""

    def __init__(self, module):
        self._module = module

    def eval(self) -> _Eager:
        return self

    def __call__(self, *args):
        return self._module(*args)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__
