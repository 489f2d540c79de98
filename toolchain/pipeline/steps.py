"""Cached steps: each wraps one stage function in the stage cache.

A step names exactly what its output depends on (the stage config, the sha256 of its input
files, the dataset fingerprint), so the cache key changes when, and only when, one of them does.
Every entry's record carries `file` and `sha256` of its main output, which downstream steps use
as their input hashes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.config.data import DataConfig
from toolchain.config.recipe import Recipe
from toolchain.config.target import RuntimeOptions, TargetProfile
from toolchain.data import Dataset, load_dataset
from toolchain.fsio import sha256_file, sha256_json
from toolchain.hostinfo import host_info
from toolchain.pipeline.cache import Entry, StageCache, StageSpec
from toolchain.stages.benchmark import BenchConfig
from toolchain.stages.convert import ConvertConfig
from toolchain.stages.export import ExportConfig
from toolchain.stages.int8_weights import Int8WeightsConfig
from toolchain.stages.prune import PruneConfig
from toolchain.stages.quantize import QuantizeConfig
from toolchain.stages.train import TrainConfig


def _dump(cfg) -> Any:
    return cfg.model_dump(mode="json")


def artifact_path(entry: Entry) -> Path:
    return entry.path(entry.record["file"])


DATA = StageSpec("data", ("toolchain.data", "toolchain.data.store"), DataConfig)


def dataset(recipe: Recipe, cache: StageCache | None = None) -> Dataset:
    """The recipe's data set; with a cache, generated once and read back after (toolchain.data.store)."""
    if cache is None:
        return load_dataset(recipe.data)
    from toolchain.data.store import load_saved, save_dataset

    entry = cache.run(DATA, {"data": _dump(recipe.data)}, {}, lambda out: save_dataset(load_dataset(recipe.data), out))
    return load_saved(entry.dir, dict(entry.record))


def _model_code(recipe: Recipe) -> dict[str, str | None]:
    from toolchain.config.zoo import model_source_sha256

    return {"model_code": model_source_sha256(recipe.model.name)}


def build_recipe_model(recipe: Recipe):
    """The recipe's freshly initialized model; with [train.privacy] fix_modules, as DP-SGD trains
    it (BatchNorm replaced by GroupNorm), so every stage loading weights builds the same layers."""
    from toolchain.config.zoo import build_model

    model = build_model(recipe.model, recipe.train.seed)
    if recipe.train.privacy is not None and recipe.train.privacy.fix_modules:
        from toolchain.privacy.dpsgd import dp_trainable

        model = dp_trainable(model, recipe.train.privacy)
    return model


def privacy_plan(recipe: Recipe, data: Dataset):
    """The recipe's one DP budget solved for train + every fine-tune (None without [train.privacy])."""
    if recipe.train.privacy is None:
        return None
    from toolchain.privacy.budget import plan_privacy

    return plan_privacy(recipe.train, recipe.prune, len(data.y_train))


def load_model(recipe: Recipe, entry: Entry):
    from toolchain.torch_io import load_into

    model = build_recipe_model(recipe)
    if entry.record.get("plan"):  # structured pruning changed the architecture: replay it first
        from toolchain.pruning import PrunePlan, replay_plan

        model = replay_plan(model, PrunePlan.load(entry.path(entry.record["plan"])))
    return load_into(model, artifact_path(entry))


_PRIVACY_MODULES = ("toolchain.privacy.budget", "toolchain.privacy.dpsgd")
TRAIN = StageSpec("train", ("toolchain.stages.train", "toolchain.config.zoo", "toolchain.torch_io", *_PRIVACY_MODULES),
                  TrainConfig)


def train(cache: StageCache, recipe: Recipe, data: Dataset) -> Entry:
    plan = privacy_plan(recipe, data)  # bad privacy settings fail here, before any training
    model = build_recipe_model(recipe)
    if plan is not None:
        from toolchain.privacy.dpsgd import dp_trainable

        dp_trainable(model, recipe.train.privacy)  # BatchNorm and the like: refused by name, before training

    def produce(out: Path) -> dict:
        from toolchain.stages.train import train as train_stage
        from toolchain.torch_io import save_state_dict, state_dict_sha256

        ledger = plan.new_ledger() if plan is not None else None
        trained, metrics = train_stage(model, data, recipe.train, ledger)
        save_state_dict(trained, out / "model.pt")
        record = {"file": "model.pt", "sha256": state_dict_sha256(out / "model.pt"), **metrics}
        return record if ledger is None else {**record, "privacy": ledger.record()}

    config = {"model": _dump(recipe.model), "train": _dump(recipe.train)}
    if plan is not None:  # the noise was solved for the fine-tunes too: their schedule shapes training
        config["privacy_plan"] = plan.key()
    return cache.run(TRAIN, config, {"data": data.fingerprint(), **_model_code(recipe)}, produce)


PRUNE = StageSpec("prune", ("toolchain.stages.prune", "toolchain.torch_io", *_PRIVACY_MODULES), PruneConfig)


def prune(cache: StageCache, recipe: Recipe, data: Dataset, trained: Entry) -> Entry:
    spent = trained.record.get("privacy")  # the accountant's state after training: fine-tunes continue it

    def produce(out: Path) -> dict:
        from toolchain.stages.prune import prune as prune_stage
        from toolchain.torch_io import save_state_dict, state_dict_sha256

        ledger = None
        if spent is not None:
            from toolchain.privacy.budget import PrivacyLedger

            ledger = PrivacyLedger.from_record(recipe.train.privacy, spent)
        model, metrics = prune_stage(load_model(recipe, trained), data, recipe.prune, recipe.train, ledger)
        save_state_dict(model, out / "model.pt")
        record = {"file": "model.pt", "sha256": state_dict_sha256(out / "model.pt"), **metrics}
        if ledger is not None:
            record["privacy"] = ledger.record()
        if "plan" in record:  # the plan is data: saved beside the weights, replayed by load_model
            from toolchain.pruning import PrunePlan

            PrunePlan.from_dict(record.pop("plan")).save(out / "plan.json")
            record["plan"] = "plan.json"
        return record

    config = {"prune": _dump(recipe.prune), "train": _dump(recipe.train)}
    inputs = {"model": trained.record["sha256"], "data": data.fingerprint(), **_model_code(recipe)}
    if spent is not None:
        inputs["privacy"] = sha256_json(spent["history"])
    return cache.run(PRUNE, config, inputs, produce)


EXPORT = StageSpec("export", ("toolchain.stages.export", "toolchain.torch_io"), ExportConfig)


def export(cache: StageCache, recipe: Recipe, data: Dataset, model_entry: Entry, label: str) -> Entry:
    def produce(out: Path) -> dict:
        from toolchain.stages.export import check_parity, export_onnx

        model = load_model(recipe, model_entry)
        dest = out / "model.onnx"
        facts = export_onnx(model, data.x_test, recipe.export, dest, dynamic_batch=True)
        parity = check_parity(dest, model, data.x_test, recipe.export)
        return {"file": "model.onnx", "sha256": sha256_file(dest), **facts, "parity": parity}

    config = {"export": _dump(recipe.export), "model": _dump(recipe.model)}
    inputs = {"model": model_entry.record["sha256"], "data": data.fingerprint(), **_model_code(recipe)}
    return cache.run(EXPORT, config, inputs, produce, label)


QUANTIZE = StageSpec("quantize", ("toolchain.stages.quantize", "toolchain.data.calibration",
                                    "toolchain.stages.transformer_fusion"), QuantizeConfig)


def quantize(cache: StageCache, cfg: QuantizeConfig, data: Dataset, src: Entry, stamp: dict, label: str) -> Entry:
    from toolchain.data.calibration import calibration_facts, calibration_inputs, check_calibration_path

    def produce(out: Path) -> dict:
        from toolchain.stages.quantize import quantize as quantize_stage

        dest = out / "model.onnx"
        calib = calibration_inputs(cfg.calibration_data, data.x_train, cfg.calibration_samples, data.input_name)
        facts = quantize_stage(artifact_path(src), calib, cfg, dest, stamp)
        return {"file": "model.onnx", "sha256": sha256_file(dest), **facts,
                "calibration_data": {**calibration_facts(cfg.calibration_data), "samples_available": len(calib)}}

    config = {"quantize": _dump(cfg), "stamp": stamp}
    inputs = {"model": src.record["sha256"], "data": data.fingerprint()}
    calib_file = check_calibration_path(cfg.calibration_data)
    if calib_file is not None:  # keyed by the file's bytes, not only its path
        inputs["calibration_file"] = sha256_file(calib_file)
    return cache.run(QUANTIZE, config, inputs, produce, label)


CONVERT = StageSpec("convert", ("toolchain.stages.convert",), ConvertConfig)


def convert(cache: StageCache, cfg: ConvertConfig, src: Entry, stamp: dict, label: str) -> Entry:
    def produce(out: Path) -> dict:
        from toolchain.stages.convert import convert as convert_stage

        facts = convert_stage(artifact_path(src), cfg, out, stamp)
        return {"file": facts["artifact"], "sha256": sha256_file(out / facts["artifact"]), **facts}

    return cache.run(CONVERT, {"convert": _dump(cfg), "stamp": stamp}, {"model": src.record["sha256"]}, produce, label)


INT8_WEIGHTS = StageSpec("int8_weights", ("toolchain.stages.int8_weights",), Int8WeightsConfig)


def int8_weights(cache: StageCache, cfg: Int8WeightsConfig, src: Entry, label: str) -> Entry:
    def produce(out: Path) -> dict:
        from toolchain.stages.int8_weights import int8_weights as int8_weights_stage

        facts = int8_weights_stage(artifact_path(src), cfg, out / "model.onnx")
        return {"file": "model.onnx", "sha256": sha256_file(out / "model.onnx"), **facts}

    return cache.run(INT8_WEIGHTS, {"int8_weights": _dump(cfg)}, {"model": src.record["sha256"]}, produce, label)


# The engines are imported by name (toolchain/runtime/__init__.py), which codehash cannot follow.
_ENGINES = ("toolchain.runtime.ort_runtime", "toolchain.runtime.openvino_runtime")
BENCHMARK = StageSpec("benchmark", ("toolchain.stages.benchmark", "toolchain.stages.train", "toolchain.torch_io", *_ENGINES),
                      BenchConfig)


def benchmark(cache: StageCache, cfg: BenchConfig, src, candidates: dict[str, Entry], rebench: bool, label: str) -> Entry:
    """Measurements are not deterministic, so strictly they are not cacheable. We still cache
    them keyed by the exact artifact bytes *and the host*, so an unchanged rerun on the same
    machine is fast; `--rebench` forces fresh numbers."""
    import time

    def produce(out: Path) -> dict:
        from toolchain.stages.benchmark import benchmark as bench_stage

        model = src.torch_model() if src.torch_model is not None else None
        paths = {k: artifact_path(e) for k, e in candidates.items()}
        results = bench_stage(paths, src.data.x_test, src.data.y_test, cfg, torch_model=model)
        return {"results": results, "host": host_info()}

    inputs = {k: e.record["sha256"] for k, e in candidates.items()}
    inputs.update(torch=src.torch_sha, data=src.data.fingerprint())
    config = {"bench": _dump(cfg), "host": host_info(), "nonce": time.time_ns() if rebench else None}
    return cache.run(BENCHMARK, config, inputs, produce, label)


FIDELITY = StageSpec("fidelity", ("toolchain.bench.fidelity", "toolchain.bench.session", *_ENGINES), RuntimeOptions)
# Held-out samples compared per candidate: enough for a stable SQNR, bounded for large models.
FIDELITY_SAMPLES = 256


def eval_feeds(session, x, samples: int = FIDELITY_SAMPLES) -> list[dict]:
    """Held-out inputs in batches the model accepts (a fixed batch is filled by repeating the
    last sample: both models see the same feeds, so the comparison stays paired)."""
    import numpy as np

    from toolchain.bench.session import accepted_batch
    from toolchain.data.feeds import as_feeds

    feeds = as_feeds(x, session.get_inputs()[0].name)
    if feeds.batched and len(feeds) > samples:
        feeds = feeds.take(np.arange(samples))
    fixed = accepted_batch(session, feeds)
    return [feed for feed, _ in feeds.batches(fixed or 32, pad=fixed is not None)]


def fidelity(cache: StageCache, runtime, src, reference: Entry, candidates: dict[str, Entry], label: str,
             candidate_runtime: dict | None = None) -> Entry:
    """Each candidate's outputs against the fp32 reference's on held-out data (bench/fidelity.py);
    `candidate_runtime` (label -> RuntimeOptions) runs a candidate with other options than `runtime`."""
    candidate_runtime = candidate_runtime or {}

    def produce(out: Path) -> dict:
        from toolchain.bench.fidelity import collect_outputs, compare_outputs
        from toolchain.runtime import load_session

        ref_session = load_session(artifact_path(reference), runtime)
        feeds = eval_feeds(ref_session, src.data.x_test)
        expected = collect_outputs(ref_session, feeds)
        return {"results": {name: compare_outputs(expected, collect_outputs(
            load_session(artifact_path(e), candidate_runtime.get(name, runtime)), feeds)) for name, e in candidates.items()}}

    inputs = {"reference": reference.record["sha256"], "data": src.data.fingerprint(),
              **{name: e.record["sha256"] for name, e in candidates.items()}}
    config = {"runtime": _dump(runtime), "samples": FIDELITY_SAMPLES}
    if candidate_runtime:  # only when set: every other run keeps its cache key
        config["candidate_runtime"] = {k: _dump(v) for k, v in candidate_runtime.items()}
    return cache.run(FIDELITY, config, inputs, produce, label)


PACKAGE = StageSpec("package", ("toolchain.package", "toolchain.package.inputs"), TargetProfile)


def package(cache: StageCache, src, profile: TargetProfile, artifact: Entry, metrics: dict, verdicts: dict,
            extra_files: dict[str, Path], label: str) -> Entry:
    def produce(out: Path) -> dict:
        from toolchain.package import build_package
        from toolchain.package.inputs import package_spec

        spec = package_spec(src, profile, artifact, metrics, verdicts, extra_files)
        dest = out / f"{src.name}-{profile.name}.zip"
        build_package(spec, dest)
        return {"file": dest.name, "sha256": sha256_file(dest)}

    config = {"recipe": src.recipe_hash, "profile": _dump(profile), "package": _dump(src.package),
              "metrics": metrics, "verdicts": verdicts}
    if getattr(src, "privacy", None) is not None:
        config["privacy"] = src.privacy
    inputs = {"artifact": artifact.record["sha256"], "data": src.data.fingerprint(),
              **{name: sha256_file(path) for name, path in extra_files.items()}}
    return cache.run(PACKAGE, config, inputs, produce, label)


# Every cached stage `edgeopt run` can run, for the conformance tests and `edgeopt` docs.
STAGES = (DATA, TRAIN, PRUNE, EXPORT, QUANTIZE, CONVERT, INT8_WEIGHTS, BENCHMARK, FIDELITY, PACKAGE)
