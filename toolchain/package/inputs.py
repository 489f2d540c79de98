"""Gather what a package describes (I/O signature, golden samples, provenance) for an artifact,
either from a pipeline run (held-out samples, measured metrics) or for a bare file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config.target import TargetProfile
from toolchain.pipeline.cache import Entry, library_versions

GOLDEN_SAMPLES = 4  # enough to catch a wrong output, small enough to keep packages tiny


def _signature(values) -> list[dict[str, Any]]:
    from toolchain.bench.session import numpy_dtype

    return [
        {"name": v.name, "dtype": np.dtype(numpy_dtype(v.type)).name,
         "shape": [d if isinstance(d, int) else str(d) for d in v.shape]}
        for v in values
    ]


def spec_for_artifact(path: Path, profile: TargetProfile, *, name: str, recipe_hash: str, labels: list[str],
                      preprocessing: dict, metrics: dict, verdicts: dict, samples,
                      extra_files: dict[str, Path] | None = None, reference=None, privacy: dict | None = None):
    """`samples=None` draws seeded random golden inputs shaped like the model's first input;
    Feeds give one run of every input (state tensors need not hold samples on axis 0).
    `reference` (an array, or input name -> array, of calibration data) adds a drift reference."""
    from toolchain.bench.session import fixed_batch, input_spec, load_session
    from toolchain.data.feeds import Feeds
    from toolchain.drift.reference import reference_for_session
    from toolchain.package import PackageSpec

    sess = load_session(path, profile.runtime)
    if isinstance(samples, Feeds):
        feed = samples.at_batch(samples.fixed_batch or GOLDEN_SAMPLES)
    else:
        n = fixed_batch(sess) or GOLDEN_SAMPLES
        input_name, shape, dtype = input_spec(sess)[0]
        if samples is None:
            dims = [n if d is None else d for d in shape]
            dims[0] = n
            samples = np.random.default_rng(0).random(dims).astype(dtype)
        feed = {input_name: np.ascontiguousarray(samples[:n])}
    outputs = sess.run(None, feed)
    return PackageSpec(
        name=name,
        target=profile.name,
        artifact=Path(path),
        artifact_format=Path(path).suffix.lstrip("."),
        inputs=_signature(sess.get_inputs()),
        outputs=_signature(sess.get_outputs()),
        preprocessing=dict(preprocessing),
        labels=list(labels),
        metrics=metrics,
        budgets=verdicts,
        target_profile=profile.model_dump(mode="json"),
        versions=library_versions(),
        recipe_hash=recipe_hash,
        golden_inputs=feed,
        golden_outputs=list(outputs),
        golden_single_run=isinstance(samples, Feeds),
        extra_files=extra_files or {},
        drift_reference=None if reference is None else reference_for_session(sess, reference),
        privacy=privacy,
    )


def package_spec(src, profile: TargetProfile, artifact: Entry, metrics: dict, verdicts: dict,
                 extra_files: dict[str, Path] | None = None):
    """`src` is a build_target.ModelSource; `extra_files` are added beside the converter's own."""
    path = artifact.path(artifact.record["file"])
    extra = {k: artifact.path(v) for k, v in artifact.record.get("extra_files", {}).items()}
    extra.update(extra_files or {})
    return spec_for_artifact(
        path, profile, name=src.name, recipe_hash=src.recipe_hash, labels=list(src.data.labels),
        preprocessing=src.data.preprocessing, metrics={k: v for k, v in metrics.items() if k != "latency_by_batch"},
        verdicts=verdicts, samples=src.data.x_test, extra_files=extra, reference=_reference_data(src.data.x_train),
        privacy=_dp_facts(getattr(src, "privacy", None)),
    )


def _dp_facts(record: dict | None) -> dict | None:
    """The manifest's DP-SGD facts from the privacy ledger's record (its history stays in the run)."""
    from toolchain.package.manifest import DPTraining

    return None if record is None else {k: record[k] for k in DPTraining.model_fields}


def _reference_data(x):
    """Calibration data for the drift reference: one array, or input name -> array for Feeds.
    None (no reference) when an input holds no samples on axis 0 (a recurrent state, a scalar
    sample rate): per-sample statistics of it mean nothing, and the drift check feeds samples."""
    from toolchain.data.feeds import Feeds

    if not isinstance(x, Feeds):
        return x
    if any(x.axes[n] != 0 or np.ndim(a) == 0 for n, a in x.arrays.items()):
        return None
    return dict(x.arrays)
