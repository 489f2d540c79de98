"""Gather what a package describes (I/O signature, golden samples, provenance) for an artifact,
either from a pipeline run (synthetic or, opted in, held-out samples; measured metrics) or for a bare file."""

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
                      preprocessing: dict, metrics: dict, verdicts: dict, samples, golden: str = "samples",
                      extra_files: dict[str, Path] | None = None, reference=None, privacy: dict | None = None):
    """`samples=None` draws seeded random golden inputs shaped like the model's first input;
    Feeds give one run of every input (state tensors need not hold samples on axis 0).
    `golden="synthetic"`: `samples` is calibration data, and the golden inputs are drawn from its
    per-channel statistics (toolchain.data.synthetic), never copied from it.
    `reference` (calibration data: an array, input name -> array, or Feeds) adds a drift
    reference, its histograms as coarse as the profile's [drift] min_bin_count."""
    from toolchain.bench.session import accepted_batch, fixed_batch, input_spec
    from toolchain.data.feeds import Feeds
    from toolchain.data.synthetic import synthetic_like
    from toolchain.drift.reference import reference_for_session
    from toolchain.package import PackageSpec
    from toolchain.runtime import load_session

    sess = load_session(path, profile.runtime)
    source = "random" if samples is None else golden
    if isinstance(samples, Feeds):
        n = accepted_batch(sess, samples) or GOLDEN_SAMPLES
        feed = (synthetic_like(samples, n) if golden == "synthetic" else samples).at_batch(n)
    else:
        n = fixed_batch(sess) or GOLDEN_SAMPLES
        input_name, shape, dtype = input_spec(sess)[0]
        if samples is None:
            dims = [n if d is None else d for d in shape]
            dims[0] = n
            samples = np.random.default_rng(0).random(dims).astype(dtype)
        elif golden == "synthetic":
            samples = synthetic_like(samples, n)
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
        golden_source=source,
        extra_files=extra_files or {},
        drift_reference=None if reference is None else reference_for_session(sess, reference, profile.drift.min_bin_count),
        privacy=privacy,
    )


def package_spec(src, profile: TargetProfile, artifact: Entry, metrics: dict, verdicts: dict,
                 extra_files: dict[str, Path] | None = None):
    """`src` is a build_target.ModelSource; `extra_files` are added beside the converter's own."""
    path = artifact.path(artifact.record["file"])
    extra = {k: artifact.path(v) for k, v in artifact.record.get("extra_files", {}).items()}
    extra.update(extra_files or {})
    golden = src.package.golden  # synthetic: drawn from the training split's statistics, not its rows
    return spec_for_artifact(
        path, profile, name=src.name, recipe_hash=src.recipe_hash, labels=list(src.data.labels),
        preprocessing=src.data.preprocessing, metrics={k: v for k, v in metrics.items() if k != "latency_by_batch"},
        # the calibration (training) samples, whatever they are: a recipe's data, the user's, or
        # compress's seeded random feeds; inputs without samples on axis 0 are recorded as skipped
        verdicts=verdicts, samples=src.data.x_test if golden == "samples" else src.data.x_train, golden=golden,
        extra_files=extra, reference=src.data.x_train, privacy=_dp_facts(getattr(src, "privacy", None)),
    )


def _dp_facts(record: dict | None) -> dict | None:
    """The manifest's DP-SGD facts from the privacy ledger's record (its history stays in the run)."""
    from toolchain.package.manifest import DPTraining

    return None if record is None else {k: record[k] for k in DPTraining.model_fields}


def reference_from_file(data: str, artifact: Path, profile: TargetProfile):
    """`edgeopt package --data FILE`: the user's samples (.npz one array per input, .npy, .csv) as
    checked Feeds for the drift reference, each input on the batch axis its shape implies."""
    from toolchain.compress.feeds_input import to_feeds
    from toolchain.data import user as data_input
    from toolchain.drift.reference import session_specs
    from toolchain.errors import BadInput
    from toolchain.runtime import load_session

    specs = session_specs(load_session(artifact, profile.runtime))
    raw = data_input.load_raw(data, [s.name for s in specs], None)
    if raw is None:
        raise BadInput("--data random describes no data: a drift reference of random values would flag every "
                       "real input", "pass the samples the model was calibrated on, e.g. --data calib.npz")
    return to_feeds(raw, specs, {})[0]
