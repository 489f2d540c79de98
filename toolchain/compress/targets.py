"""Per-target model sources for `edgeopt compress`: the imported model as a cache entry, and
for a fixed-shape target a copy with every input fixed to the run shape."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from toolchain.compress.model_input import NormalizedModel
from toolchain.compress.shapes import fix_dims
from toolchain.fsio import sha256_file
from toolchain.pipeline.build_target import ModelSource
from toolchain.pipeline.cache import StageCache, StageSpec

# The import stage only copies the normalized model: its key follows this module alone.
IMPORT = StageSpec("import", ("toolchain.compress.targets",))


def import_entry(cache: StageCache, path: Path, facts: dict, label: str, fixed: dict | None = None):
    sha = sha256_file(path)

    def produce(out: Path) -> dict:
        shutil.copyfile(path, out / "model.onnx")
        return {**facts, "file": "model.onnx", "sha256": sha}

    config = {"source": facts.get("source")} if fixed is None else {"source": facts.get("source"), "fixed": fixed}
    return cache.run(IMPORT, config, {"model": sha}, produce, label=label)


def target_source(cache: StageCache, source: ModelSource, model: NormalizedModel, profile, tmp: Path) -> ModelSource:
    """A fixed-shape target runs one batch size: its Feeds say so, and when the model has
    dynamic dims the converter cannot fix (anything but axis 0), they are fixed here to the
    data's shapes, so the artifact, its calibration and its memory estimate are all static."""
    if profile.artifact.shapes != "fixed":
        return source
    batch = model.fixed_batch or profile.artifact.fixed_batch
    x_train = dataclasses.replace(source.data.x_train, fixed_batch=batch)
    x_test = dataclasses.replace(source.data.x_test, fixed_batch=batch)
    data = dataclasses.replace(source.data, x_train=x_train, x_test=x_test)
    if not any(a != 0 for s in model.inputs for a in s.dynamic_axes):
        return dataclasses.replace(source, data=data)
    import onnx

    feed = x_test.at_batch(batch)
    run = {n: tuple(int(d) for d in a.shape) for n, a in feed.items()}
    fixed = fix_dims(onnx.load(str(model.path)), run)
    tmp.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp) as d:
        path = Path(d) / "model.onnx"
        onnx.save(fixed, str(path))
        facts = {**model.facts, "fixed_input_shapes": {n: list(v) for n, v in run.items()}}
        entry = import_entry(cache, path, facts, f"import[{profile.name}/fixed]", {n: list(v) for n, v in run.items()})
    return dataclasses.replace(source, fp32_onnx=entry, compressed_onnx=entry, data=data)
