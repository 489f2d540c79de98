"""The pruning searches' unit of work as an executor task: one candidate pruned and fine-tuned
from the trained model, exported and scored, published in the stage cache.

A candidate lives under `<cache>/search-variants/prune-<key>/` (model.pt, plan.json, model.onnx,
facts.json), published atomically (fsio.publish_dir), keyed by the sha256 of everything its bytes
depend on: the trained weights and architecture, the prune and fine-tune configs, the data, code,
library versions and torch's thread count (fine-tuning on 1 and on 2 threads gives different
weights, measured). A pool task runs torch on one thread (toolchain.executor.threads), so a search
on N workers reproduces `--executor local --workers 1`; without an executor the search runs here
with torch's own thread count, as `edgeopt run` trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolchain.data.types import splits_fingerprint
from toolchain.fsio import publish_dir, sha256_json, write_json_atomic
from toolchain.search.measure import onnx_accuracy
from toolchain.search.tasks import VARIANTS
from toolchain.stages.export import export_onnx

FILES = ("model.pt", "plan.json", "model.onnx")
FACTS = "facts.json"
CODE = ("toolchain.search.prune_tasks", "toolchain.stages.prune", "toolchain.stages.export",
        "toolchain.search.measure", "toolchain.torch_io")


@dataclass(frozen=True)
class RecipeWeights:
    """How a worker rebuilds the trained model: the recipe's architecture and a weights file (a
    zoo model's class lives in a module a worker cannot import by name, so the model object itself
    does not pickle)."""

    recipe: Any  # toolchain.config.recipe.Recipe
    weights: Path

    def __call__(self):
        from toolchain.pipeline.steps import build_recipe_model
        from toolchain.torch_io import load_into

        return load_into(build_recipe_model(self.recipe), self.weights)


def knob_name(knob: dict[str, Any]) -> str:
    ((key, value),) = knob.items()
    return f"amount_{value:.4f}" if key == "amount" else f"{key}_{value}"


def build_candidate(cache_dir: Path, source, data, knob: dict[str, Any], prune_cfg, train_cfg,
                    export_cfg=None) -> dict[str, Any]:
    """Prune (`knob`: {"amount": a} or {"drop_blocks": n}) and fine-tune a fresh copy of the model
    `source` gives (an nn.Module, or a callable returning one), export it (`export_cfg`: the
    recipe's [export]; default opset 18) and score it; or find it in the cache. Returns its facts
    and the cache entry holding FILES."""
    import torch

    from toolchain.config.stages import ExportConfig

    model = source if isinstance(source, torch.nn.Module) else source()
    cfg = prune_cfg.model_copy(update={"kind": "structured", **knob})
    export_cfg = export_cfg or ExportConfig(opset=18)
    key = sha256_json({"kind": "prune", "model": _model_sha(model), "prune": cfg.model_dump(mode="json"),
                       "export": export_cfg.model_dump(mode="json"),
                       "train": train_cfg.model_dump(mode="json"), "data": splits_fingerprint(data),
                       "torch_threads": torch.get_num_threads(), **_code()})
    entry = Path(cache_dir) / VARIANTS / f"prune-{key[:24]}"
    if not _complete(entry):
        with publish_dir(entry, _complete) as tmp:
            write_json_atomic(tmp / FACTS, _build(model, data, cfg, train_cfg, export_cfg, tmp))
    return {**json.loads((entry / FACTS).read_text()), "entry": str(entry)}


def _build(model, data, cfg, train_cfg, export_cfg, dest: Path) -> dict[str, Any]:
    from toolchain.pruning.plan import PrunePlan
    from toolchain.stages.prune import prune
    from toolchain.torch_io import save_state_dict

    pruned, metrics = prune(model, data, cfg, train_cfg)
    save_state_dict(pruned, dest / "model.pt")
    PrunePlan.from_dict(metrics["plan"]).save(dest / "plan.json")
    onnx_path = dest / "model.onnx"
    export_onnx(pruned, data.x_test, export_cfg, onnx_path, dynamic_batch=True)
    return {"accuracy": onnx_accuracy(onnx_path, data.x_test, data.y_test), "bytes": onnx_path.stat().st_size,
            "amount": cfg.amount, "drop_blocks": cfg.drop_blocks, "blocks_dropped": metrics.get("blocks_dropped", []),
            **{k: metrics[k] for k in ("params_after", "macs_after", "accuracy_per_step")}}


def _complete(entry: Path) -> bool:
    return (entry / FACTS).is_file()


def _model_sha(model) -> str:
    """The architecture (its repr) and the tensors of its state dict."""
    import hashlib

    from toolchain.torch_io import tensors_sha256

    return tensors_sha256(model.state_dict(), hashlib.sha256(repr(model).encode()))


def _code() -> dict:
    from toolchain.pipeline.cache import library_versions
    from toolchain.pipeline.codehash import code_fingerprint

    return {"versions": library_versions(), "code": code_fingerprint(CODE)}


def warm() -> None:
    """Pay a worker's first-export cost now, while the driver exports the baseline: torch's ONNX
    exporter imports and registers its op library on first use (measured 6.6 s for the first
    export of the digits CNN, 1.6 s for the next ones), which the first candidate would wait for."""
    import tempfile

    import numpy as np
    import onnxruntime  # noqa: F401
    import torch

    import toolchain.stages.prune  # noqa: F401
    from toolchain.config.stages import ExportConfig

    with tempfile.TemporaryDirectory(prefix="edgeopt-warm-") as tmp:
        export_onnx(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten()),
                    np.zeros((2, 1, 4, 4), np.float32), ExportConfig(opset=18), Path(tmp) / "warm.onnx")
