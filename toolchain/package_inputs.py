"""Gather what a package describes (I/O signature, golden samples, provenance) from a run."""

from __future__ import annotations

from typing import Any

import numpy as np

from toolchain.cache import Entry, library_versions
from toolchain.config.recipe import Recipe
from toolchain.config.target import TargetProfile
from toolchain.data import Dataset

GOLDEN_SAMPLES = 4  # enough to catch a wrong output, small enough to keep packages tiny


def _signature(values) -> list[dict[str, Any]]:
    from toolchain.bench.session import numpy_dtype

    return [
        {"name": v.name, "dtype": np.dtype(numpy_dtype(v.type)).name,
         "shape": [d if isinstance(d, int) else str(d) for d in v.shape]}
        for v in values
    ]


def package_spec(recipe: Recipe, profile: TargetProfile, data: Dataset, artifact: Entry,
                 metrics: dict, verdicts: dict):
    from toolchain.bench.session import fixed_batch, load_session
    from toolchain.package import PackageSpec

    path = artifact.path(artifact.record["file"])
    sess = load_session(path, profile.runtime)
    n = fixed_batch(sess) or GOLDEN_SAMPLES
    golden = np.ascontiguousarray(data.x_test[:n])
    name = sess.get_inputs()[0].name
    outputs = sess.run(None, {name: golden})
    extra = {k: artifact.path(v) for k, v in artifact.record.get("extra_files", {}).items()}
    return PackageSpec(
        name=recipe.name,
        target=profile.name,
        artifact=path,
        artifact_format=profile.artifact.format,
        inputs=_signature(sess.get_inputs()),
        outputs=_signature(sess.get_outputs()),
        preprocessing=dict(data.preprocessing),
        labels=list(data.labels),
        metrics={k: v for k, v in metrics.items() if k != "latency_by_batch"},
        budgets=verdicts,
        target_profile=profile.model_dump(mode="json"),
        versions=library_versions(),
        recipe_hash=recipe.content_hash(),
        golden_inputs={name: golden},
        golden_outputs=list(outputs),
        extra_files=extra,
    )
