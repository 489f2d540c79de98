"""Per-target stages: quantize -> convert -> benchmark -> gate -> package -> publish.

They start from a `ModelSource`: an fp32 ONNX reference and the ONNX model to compress, with
the data to calibrate and evaluate on. `edgeopt run` makes one from a recipe (train, prune,
export); `edgeopt compress` makes one from a user's own model file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolchain.bench.fidelity import REFERENCE_FIDELITY
from toolchain.config.budgets import Budgets, evaluate, with_default_fidelity
from toolchain.config.recipe import QuantizeOverrides
from toolchain.config.stages import CONVERTER_KEYS, ConvertConfig, PackageConfig
from toolchain.config.target import TargetProfile
from toolchain.data import Dataset
from toolchain.fsio import copy_atomic
from toolchain.pipeline.cache import Entry, StageCache
from toolchain.pipeline.metrics import INT8_WEIGHTS, PRUNED_FP32, summarize_metrics, summarize_mobile
from toolchain.pipeline.precision import BF16, bf16_applies, candidate_runtimes, compilable, runtime_of
from toolchain.pipeline.ship import choose_artifact, compression_pays, int8_weights_apply, versus_peer
from toolchain.pipeline.variants import FORM_SCHEMES, INT8, describe_scheme, peer_equivalent, scheme_variants
from toolchain.stages.benchmark import BenchConfig, ort_default_memory
from toolchain.stages.int8_weights import Int8WeightsConfig
from toolchain.stages.quantize import QuantizeConfig


@dataclass(frozen=True)
class ModelSource:
    name: str
    recipe_hash: str
    fp32_onnx: Entry  # the reference every ratio is measured against
    compressed_onnx: Entry  # what gets quantized: the pruned model, or fp32_onnx itself
    data: Dataset  # calibration (x_train) and evaluation (x_test, y_test) arrays, labels, preprocessing
    quantize: QuantizeOverrides
    budgets: Callable[[str, Budgets], Budgets]  # (target name, profile budgets) -> budgets in force
    seed: int = 0
    torch_model: Callable[[], Any] | None = None  # loads the eager reference, when there is one
    torch_sha: str | None = None
    # Structured pruning made compressed_onnx a smaller network: its fp32 form is benchmarked too,
    # because on narrow layers int8 kernels can lose to fp32 (see the report's note).
    structured: bool = False
    package: PackageConfig = field(default_factory=PackageConfig)  # [package]: golden synthetic (default) or samples
    # DP-SGD's spent budget (privacy/budget.py ledger record) when [train.privacy] trained the model
    privacy: dict[str, Any] | None = None


@dataclass(frozen=True)
class TargetResult:
    name: str
    artifact: Path
    fp32_artifact: Path
    package: Path
    metrics: dict[str, Any]
    verdicts: dict[str, Any]
    # benchmark label -> the measured file (cache entry) it was; `artifact` is the copy of the shipped one
    candidates: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(v["pass"] for v in self.verdicts.values())


def quantize_config(profile: TargetProfile, overrides: QuantizeOverrides, seed: int) -> QuantizeConfig:
    """The profile's [quantize] scheme with the recipe's overrides and calibration settings."""
    scheme = profile.quantize.model_copy(update=overrides.scheme_overrides())
    return QuantizeConfig(scheme=scheme, calibration_samples=overrides.calibration_samples,
                          nodes_to_exclude=overrides.nodes_to_exclude, seed=seed,
                          calibration_data=overrides.calibration_data)


def convert_config(profile: TargetProfile) -> ConvertConfig:
    """The [artifact] keys the converter takes; the others (ship, ship_tie) choose among candidates."""
    return ConvertConfig(platform=profile.platform, disabled_optimizers=list(profile.runtime.disabled_optimizers),
                         **profile.artifact.model_dump(include=set(CONVERTER_KEYS)))


@dataclass(frozen=True)
class Prepared:
    """A target's stages before the benchmark: the int8 forms per scheme, every candidate the
    engine can run (and why the others were skipped), their runtimes and fidelity against fp32."""

    quantized: Entry
    schemes: dict[str, Any]
    int8_forms: dict[str, Entry]
    candidates: dict[str, Entry]
    skipped: dict[str, str]
    runtimes: dict[str, Any]
    fidelity: Entry


def prepare_target(cache: StageCache, src: ModelSource, profile: TargetProfile) -> Prepared:
    """The deterministic per-target stages, everything before the benchmark: quantize (every
    scheme variant), convert every candidate, compare each with fp32. `edgeopt batch` runs this
    on any worker and leaves the timing to a node of its own."""
    from toolchain.package import metadata_props_for
    from toolchain.pipeline import steps

    name = profile.name
    qcfg = quantize_config(profile, src.quantize, src.seed)
    stamp = metadata_props_for(src.name, name, src.recipe_hash, list(src.data.labels), src.data.preprocessing)
    quantized = steps.quantize(cache, qcfg, src.data, src.compressed_onnx, stamp, label=f"quantize[{name}]")
    schemes = {INT8: qcfg.scheme, **scheme_variants(profile, qcfg.scheme, set(src.quantize.scheme_overrides()),
                                                    quantized.record)}
    int8_forms = {label: quantized if label == INT8 else
                  steps.quantize(cache, qcfg.model_copy(update={"scheme": scheme}), src.data, src.compressed_onnx,
                                 stamp, label=f"quantize[{name}/{label}]")
                  for label, scheme in schemes.items()}
    candidates, skipped = _engine_candidates(profile, _candidates(cache, src, profile, int8_forms, stamp))
    runtimes = candidate_runtimes(profile, candidates)
    compressed = {label: e for label, e in candidates.items() if label != "fp32"}
    fid = steps.fidelity(cache, profile.runtime, src, candidates["fp32"], compressed, label=f"fidelity[{name}]",
                         candidate_runtime=runtimes)
    return Prepared(quantized, schemes, int8_forms, candidates, skipped, runtimes, fid)


def build_target(cache: StageCache, src: ModelSource, profile: TargetProfile, out_dir: Path,
                 rebench: bool = False, sign_key: Path | None = None) -> TargetResult:
    from toolchain.pipeline import steps

    name = profile.name
    prep = prepare_target(cache, src, profile)
    quantized, schemes, int8_forms, candidates = prep.quantized, prep.schemes, prep.int8_forms, prep.candidates
    fp32_art = candidates["fp32"]
    bench = steps.benchmark(cache, bench_config(profile, prep.runtimes), src, candidates, rebench=rebench,
                            label=f"benchmark[{name}]")
    fid = prep.fidelity
    fidelity = {**fid.record["results"], "fp32": REFERENCE_FIDELITY}
    results = {label: {**r, **({"fidelity": fidelity[label]} if label in fidelity else {})}
               for label, r in bench.record["results"].items()}
    budgets = with_default_fidelity(src.budgets(name, profile.budgets), labelled=src.data.y_test is not None)
    shipped, selection = choose_artifact(results, profile, budgets)
    if prep.skipped:  # candidates the engine could not compile, and why (the report lists them)
        selection["skipped"] = prep.skipped
    peer = peer_equivalent(schemes, quantized.record) if profile.artifact.ship == "fastest" else None
    if peer:  # issue 14's floor: never slower than ORT's own uint8 QDQ of the same model
        selection["ort_uint8_qdq"] = versus_peer(selection, shipped, peer)
    for label, weighed in selection["candidates"].items():  # the report names each candidate's scheme
        weighed["scheme"] = (describe_scheme(schemes[label], int8_forms[label].record) if label in schemes
                             else FORM_SCHEMES.get(label, label))
    summary = summarize_metrics(results, profile, shipped)
    summary.shipped, summary.selection = shipped, selection
    summary.quantize_format = quantized.record.get("format")  # "none" leaves the "int8" candidate fp32
    if shipped in int8_forms:  # nodes left fp32 on purpose, so the report can tell them from unfused ones
        summary.fp32_nodes_by_design = list(int8_forms[shipped].record.get("fp32_nodes", []))
    if quantized.record.get("transformer_fusion"):
        summary.transformer_fusion = {label: e.record["transformer_fusion"] for label, e in int8_forms.items()}
    summary.measured_on, summary.target_platform = bench.record["host"]["machine"], profile.platform
    summary.host_caveat = host_caveat(profile, schemes, bench.record["host"])

    target_dir = Path(out_dir) / name
    fmt = profile.artifact.format
    extra: dict[str, Path] = {}
    if fmt == "ort":  # mobile: EP coverage + static estimates of the graph the .ort was made from
        analysed = {**int8_forms, "fp32": src.fp32_onnx}.get(shipped, src.compressed_onnx)
        extra["mobile_report.json"], summary.estimated = _mobile_report(steps.artifact_path(analysed), src.name,
                                                                        profile, target_dir)
    summary.compression_pays = compression_pays(summary.document())
    metrics = summary.document()
    verdicts = {k: v.to_dict() for k, v in evaluate(budgets, metrics).items()}
    artifact = copy_atomic(steps.artifact_path(candidates[shipped]), target_dir / f"{src.name}.{fmt}")
    fp32_copy = copy_atomic(steps.artifact_path(fp32_art), target_dir / f"{src.name}.fp32.{fmt}")
    # the manifest records what shipped: bf16's precision hint, the int8 scheme variant that won
    shipped_profile = profile.model_copy(update={"runtime": runtime_of(profile, shipped),
                                                 "quantize": schemes.get(shipped, profile.quantize)})
    package = steps.package(cache, src, shipped_profile, candidates[shipped], metrics, verdicts, extra,
                            label=f"package[{name}]")
    package_copy = copy_atomic(steps.artifact_path(package), target_dir / f"{src.name}-{name}.zip")
    if sign_key is not None:
        from toolchain.package import sign_package

        sign_package(package_copy, sign_key)
    measured = {label: steps.artifact_path(entry).resolve() for label, entry in candidates.items()}
    return TargetResult(name, artifact.resolve(), fp32_copy.resolve(), package_copy.resolve(), metrics, verdicts, measured)


def host_caveat(profile: TargetProfile, schemes: dict[str, Any], host: dict[str, Any]) -> str | None:
    """Why this host's int8 numbers may not be the target's: full-range U8S8 on an x86 CPU without
    VNNI saturates in ORT's kernels, so fidelity and speed measured here understate a VNNI server."""
    from toolchain.hostinfo import u8s8_saturates

    full_range = [label for label, s in schemes.items() if s.format != "none" and s.activation_type == "uint8"
                  and s.weight_type == "int8" and not s.reduce_range]
    if profile.runtime.engine != "onnxruntime" or not full_range or not u8s8_saturates(host):
        return None
    return (f"{host.get('cpu')} has no VNNI: ORT's U8S8 int8 kernels can saturate on it, so the fidelity and "
            f"latency of {', '.join(full_range)} measured here are not a VNNI server's; for CPUs like this one "
            "use a profile with reduce_range = true (x86-avx2-novnni)")


def _candidates(cache: StageCache, src: ModelSource, profile: TargetProfile, int8_forms: dict[str, Entry],
                stamp: dict) -> dict[str, Entry]:
    """Every form of the model this target measures: label -> converted artifact entry.
    `int8_forms`: the quantized model per scheme ("int8" and its scheme variants)."""
    from toolchain.pipeline import steps

    name, ccfg = profile.name, convert_config(profile)
    # The fp32 baseline is never shipped: no provenance stamp, so recipe edits that do not touch
    # the trained model (e.g. calibration) leave its conversion cached.
    candidates = {"fp32": steps.convert(cache, ccfg, src.fp32_onnx, {}, label=f"convert[{name}/fp32]")}
    for label, quantized in int8_forms.items():
        candidates[label] = steps.convert(cache, ccfg, quantized, stamp, label=f"convert[{name}/{label}]")
    if src.structured:  # stamped: it may be the artifact that ships (see [artifact] ship)
        candidates[PRUNED_FP32] = steps.convert(cache, ccfg, src.compressed_onnx, stamp, label=f"convert[{name}/pruned-fp32]")
    if int8_weights_apply(profile):  # where int8 kernels lose, fp32 compute need not cost fp32 bytes
        fp32_compute = candidates.get(PRUNED_FP32) or steps.convert(cache, ccfg, src.compressed_onnx, stamp,
                                                                    label=f"convert[{name}/fp32-compute]")
        candidates[INT8_WEIGHTS] = steps.int8_weights(cache, Int8WeightsConfig(), fp32_compute, label=f"int8-weights[{name}]")
    return candidates


def _engine_candidates(profile: TargetProfile, candidates: dict[str, Entry]) -> tuple[dict[str, Entry], dict[str, str]]:
    """The candidates with the engine's own forms added (bf16: pipeline/precision.py) and those it
    cannot compile removed; and label -> why, for each removed one."""
    from toolchain.errors import BadInput
    from toolchain.pipeline import steps

    if bf16_applies(profile):
        candidates = {**candidates, BF16: candidates["fp32"]}
    skipped = compilable({label: steps.artifact_path(e) for label, e in candidates.items()}, profile)
    if "int8" in skipped and profile.artifact.ship == "quantized":
        raise BadInput(f"target {profile.name}: {skipped['int8']}",
                       'set [artifact] ship = "fastest" so another candidate can ship, or offline_optimization_level = "basic"')
    return {label: e for label, e in candidates.items() if label not in skipped}, skipped


def _mobile_report(analysed: Path, model_name: str, profile: TargetProfile, target_dir: Path) -> tuple[Path, dict]:
    """EP coverage and static estimates, written beside the artifact; and their headline."""
    from toolchain.fsio import write_json_atomic
    from toolchain.mobile.report import mobile_report

    fmt = profile.artifact.format
    # No machine paths in a shipped file: name the artifact, not the cache entry analysed.
    report = mobile_report(analysed, profile, shown_as=f"{model_name}.{fmt} (analysed from its fixed-shape ONNX)")
    return write_json_atomic(target_dir / "mobile_report.json", report), summarize_mobile(report)


def bench_config(profile: TargetProfile, candidate_runtime: dict | None = None) -> BenchConfig:
    """The memory goal compares the artifact under the profile's session options with fp32 under
    ORT's defaults (what a user gets without tuning); latency uses the profile's for both (or a
    candidate's own, `candidate_runtime`: label -> RuntimeOptions)."""
    return BenchConfig(runtime=profile.runtime, spec=profile.benchmark, candidate_runtime=candidate_runtime or {},
                       memory_runtime={"fp32": ort_default_memory(profile.runtime)})
