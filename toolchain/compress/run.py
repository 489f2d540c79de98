"""`edgeopt compress`: a user's model + data -> the per-target stages of `edgeopt run`.

Order matters for bad input: targets, model, data, labels and evaluator are all resolved and
checked in a temp directory *before* the output directory is created, so a typo or a broken
file costs no compression work and leaves no files. A bad-input error raised later still
removes an output directory this call created.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.compress import evaluators
from toolchain.compress.feeds_input import parse_input_ranges, random_feeds, to_feeds
from toolchain.compress.model_input import (
    MIN_OPSET,
    NormalizedModel,
    normalize_onnx,
    ort_reason,
    parse_input_shapes,
)
from toolchain.compress.outputs import compared_outputs, run_outputs
from toolchain.compress.shapes import index_ranges
from toolchain.compress.targets import import_entry, target_source
from toolchain.config.recipe import QuantizeOverrides
from toolchain.config.stages import PackageConfig
from toolchain.config.target import load_target
from toolchain.data import user as data_input
from toolchain.errors import BadInput, ModelLoadError
from toolchain.fsio import sha256_json, write_json_atomic
from toolchain.pipeline.build_target import ModelSource, TargetResult, build_target
from toolchain.pipeline.cache import StageCache, library_versions
from toolchain.pipeline.precision import runtime_of

_WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".safetensors"}


@dataclass(frozen=True)
class CompressOptions:
    model: str  # path to .onnx / .pt2, or module:factory
    targets: tuple[str, ...]
    data: str | None = None  # file, module:function, or "random"
    weights: Path | None = None
    input_shapes: tuple[str, ...] = ()
    input_ranges: tuple[str, ...] = ()  # NAME=LO,HI for --data random
    outputs: tuple[str, ...] = ()  # outputs to evaluate (default: all)
    label_column: str | None = None
    evaluator: str | None = None
    eval_fraction: float = 0.2
    calibration_samples: int = 256
    name: str | None = None
    out_dir: Path | None = None  # default runs/<name>
    targets_dir: Path | None = None
    trust_pt2: bool = False
    rebench: bool = False
    sign_key: Path | None = None
    package: PackageConfig = field(default_factory=PackageConfig)  # --golden: synthetic (default) or samples


@dataclass(frozen=True)
class CompressResult:
    name: str
    hash: str
    out_dir: Path
    targets: dict[str, TargetResult]
    evaluation: dict[str, dict[str, Any]]
    stages: list[tuple[str, str]] = field(default_factory=list)
    baseline: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    golden: str = "synthetic"

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.targets.values())


def _stderr_warning(message: str) -> None:
    print(f"edgeopt: warning: {message}", file=sys.stderr)


def compress(opts: CompressOptions, warn: Callable[[str], None] = _stderr_warning) -> CompressResult:
    if not opts.targets:
        raise BadInput("no target given", "pass --target NAME (repeatable); `edgeopt targets` lists them")
    profiles = {name: load_target(name, opts.targets_dir) for name in opts.targets}
    from toolchain.runtime import require_engines

    require_engines(profiles.values())
    if opts.data is None:
        raise BadInput(
            "no --data given",
            "pass --data FILE (.npz/.npy/.csv), module:function, or 'random' (no accuracy check)",
        )
    if not 0 < opts.eval_fraction < 1:
        raise BadInput(f"--eval-fraction {opts.eval_fraction} is not in (0, 1)", "use e.g. 0.2")
    warnings: list[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        warn(message)

    with tempfile.TemporaryDirectory(prefix="edgeopt-compress-") as tmp:
        model, data, torch_ref = _prepare_model(opts, Path(tmp), note)
        compared = compared_outputs(model.outputs, opts.outputs)
        fp32_out = _first_run(model, data, compared)
        ev = evaluators.resolve(opts.evaluator, data.task)
        evaluators.preflight(ev, fp32_out[compared[0].name], data.y_eval)
        if data.task == "classify":
            classes = fp32_out[compared[0].name].shape[1]
            data = dataclasses.replace(data, labels=tuple(str(i) for i in range(classes)))
        else:
            note(
                f"no integer labels ({data.task}): budget max_accuracy_drop is not applied; see 'evaluation'"
            )
        name = _name(opts)
        out_dir = Path(opts.out_dir) if opts.out_dir is not None else Path("runs") / name
        created = not out_dir.exists()
        try:
            return _build(opts, profiles, model, data, ev, torch_ref, name, out_dir, warnings, compared)
        except BadInput:
            if created:  # nothing of a refused run is worth keeping
                shutil.rmtree(out_dir, ignore_errors=True)
            raise


def _first_run(model: NormalizedModel, data, compared) -> dict:
    """The fp32 outputs on the evaluation split: also the check that the model runs on this data
    at all, before any compression work (an index out of range, a dim the graph rejects)."""
    try:
        return run_outputs(model.path, data.x_test, compared)[0]
    except Exception as err:  # ORT raises several unrelated types; all mean "not on this data"
        fix = ("set valid values with --input-range NAME=LO,HI (token ids: 0,VOCAB) or fix dims with --input-shape"
               if data.name == "random" else "check the data against the model's inputs")
        if model.facts.get("original_opset", MIN_OPSET) < MIN_OPSET:  # or the upgrade broke an op
            fix += f", or re-export the model at opset {MIN_OPSET}+ (it was upgraded from opset {model.facts['original_opset']})"
        raise BadInput(f"the model fails on {data.name} inputs ({ort_reason(err)})", fix) from None


def _prepare_model(opts: CompressOptions, tmp: Path, note: Callable[[str], None]):
    """-> (normalized model, data split into calibration/evaluation Feeds, torch export or None)."""
    from toolchain.compress import torch_input

    shapes = parse_input_shapes(opts.input_shapes)
    ranges = parse_input_ranges(opts.input_ranges)
    spec = opts.model
    if torch_input.is_factory_ref(spec):
        kind = "factory"
    else:
        path = Path(spec)
        if not path.exists():
            raise ModelLoadError(
                f"model not found: {spec}", "pass a .onnx or .pt2 file, or module:factory with --weights"
            )
        if path.suffix.lower() in _WEIGHT_SUFFIXES:
            raise BadInput(
                f"{path.name} looks like a weights file, not a model",
                "pass module:factory as MODEL and this file as --weights",
            )
        kind = "pt2" if torch_input.is_pt2(path) else "onnx"
        if kind == "pt2":
            torch_input.refuse_untrusted_pt2(path, opts.trust_pt2)
    if opts.weights is not None and kind != "factory":
        raise BadInput(
            "--weights applies to module:factory models only",
            "drop --weights, or pass MODEL as module:factory",
        )

    exported = None
    if kind == "onnx":
        model = normalize_onnx(
            Path(spec), tmp / "model.onnx", shapes, {"source": "onnx", "model_file": Path(spec).name}
        )
        raw = data_input.load_raw(opts.data, [s.name for s in model.inputs], opts.label_column)
    else:
        model, raw, exported, shapes = _torch_model(opts, kind, shapes, tmp)
    if raw is None:
        import onnx

        defaults = index_ranges(onnx.load(str(model.path), load_external_data=False))
        feeds, y = random_feeds(model.inputs, shapes, {**defaults, **ranges}), None
        note(
            f"--data random: calibrating on {len(feeds)} seeded random samples per input (floats N(0,1), "
            "ints [0,10), bools 50/50; set ranges with --input-range NAME=LO,HI); accuracy cannot be checked, "
            "and agreement with fp32 measured on random inputs can mislead (a detector's outputs are near zero "
            "on noise): pass real data with --data FILE.npz"
        )
    else:
        if ranges:
            raise BadInput("--input-range applies to --data random only", "drop it, or use --data random")
        feeds, y = to_feeds(raw, model.inputs, shapes)
    source = "random" if raw is None else raw.source
    return model, data_input.split(feeds, y, source, opts.eval_fraction), exported


def _torch_model(opts: CompressOptions, kind: str, shapes: dict, tmp: Path):
    """Torch sources take one input; the data (or --input-shape) says its shape."""
    from toolchain.compress import torch_input

    raw = data_input.load_raw(opts.data, None, opts.label_column)
    if len(shapes) > 1:
        raise BadInput("more than one --input-shape for a single-input model", "pass one")
    override = next(iter(shapes.values()), None)
    if override is not None and None in override[1:]:
        raise BadInput("a PyTorch model's --input-shape must give every dimension after the batch",
                       "pass e.g. --input-shape x=1,3,64,64")
    if raw is not None:
        sample_shape = tuple(override[1:]) if override else tuple(np.asarray(raw.x).shape[1:])
        raw = data_input.check(raw, sample_shape)  # NaNs and bad shapes fail here, not inside the exporter
        example = raw.x[:128]
    elif override:
        example = np.random.default_rng(0).standard_normal((2, *override[1:])).astype(np.float32)
    else:
        raise BadInput(
            "--data random with a PyTorch model needs the input shape", "pass --input-shape x=1,C,H,W"
        )
    if kind == "factory":
        exported = torch_input.from_factory(opts.model, opts.weights, example, tmp)
    else:
        exported = torch_input.from_pt2(Path(opts.model), example, tmp, opts.trust_pt2)
    # The exporter names the input after forward()'s argument; --input-shape applies to it whatever its name.
    renamed = _renamed(override, exported.onnx_path)
    model = normalize_onnx(exported.onnx_path, tmp / "model.onnx", renamed, exported.facts)
    return model, raw, exported, renamed


def _renamed(override: tuple[int | None, ...] | None, onnx_path: Path) -> dict:
    import onnx

    if override is None:
        return {}
    # The batch stays dynamic: only the dims after it are the user's.
    return {onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name: (None, *override[1:])}


def _build(
    opts, profiles, model: NormalizedModel, data, ev, torch_ref, name: str, out_dir: Path, warnings: list[str],
    compared,
) -> CompressResult:
    from toolchain.hostinfo import host_info

    cache = StageCache(out_dir / "cache")
    entry = import_entry(cache, model.path, model.facts, "import")
    run_hash = sha256_json(
        {
            "model": entry.record["sha256"],
            "data": data.fingerprint(),
            "evaluator": ev.custom_ref or ev.kind,
            "calibration_samples": opts.calibration_samples,
            "eval_fraction": opts.eval_fraction,
        }
    )
    skip_accuracy = data.task != "classify"
    source = ModelSource(
        name=name,
        recipe_hash=run_hash,
        fp32_onnx=entry,
        compressed_onnx=entry,
        data=data,
        quantize=QuantizeOverrides(calibration_samples=opts.calibration_samples),
        budgets=lambda _t, base: (
            base.model_copy(update={"max_accuracy_drop": None}) if skip_accuracy else base
        ),
        torch_model=torch_ref.load_model if torch_ref else None,
        torch_sha=torch_ref.sha if torch_ref else None,
        package=opts.package,
    )
    results, evaluation = {}, {}
    for tname, profile in profiles.items():
        src = target_source(cache, source, model, profile, Path(out_dir) / "cache")
        t = build_target(cache, src, profile, out_dir, opts.rebench, opts.sign_key)
        fp32_out, samples = run_outputs(t.fp32_artifact, src.data.x_test, compared, profile.runtime)
        # the shipped form's own runtime options: an OpenVINO bf16 candidate is the fp32 file at bf16
        got, _ = run_outputs(t.artifact, src.data.x_test, compared, runtime_of(profile, t.metrics.get("shipped", "int8")))
        evaluation[tname] = evaluators.evaluate_outputs(ev, fp32_out, got, data.y_eval, compared, samples)
        if skip_accuracy:
            evaluation[tname]["budgets_not_applied"] = ["max_accuracy_drop"]
        results[tname] = t
    baseline = {"model": model.facts, "data": _data_facts(data), "host": host_info()}
    result = CompressResult(
        name, run_hash, out_dir, results, evaluation, list(cache.events), baseline, warnings, opts.package.golden
    )
    from toolchain.pipeline.page import write_page

    doc = compress_document(result)
    write_json_atomic(out_dir / "report.json", doc)
    write_page(doc, out_dir / "report.html")
    return result


def _data_facts(data) -> dict[str, Any]:
    return {
        "source": data.name,
        "task": data.task,
        "calibration_samples": len(data.x_train),
        "evaluation_samples": len(data.x_test),
        "inputs": {
            n: {"dtype": str(a.dtype), "shape": list(a.shape), "batch_axis": data.x_train.axes[n]}
            for n, a in data.x_train.arrays.items()
        },
        "fingerprint": data.fingerprint(),
    }


def _name(opts: CompressOptions) -> str:
    raw = opts.name or (
        opts.model.rpartition(":")[2]
        if ":" in opts.model and not Path(opts.model).exists()
        else Path(opts.model).stem
    )
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-._")
    if not clean:
        raise BadInput(
            f"cannot derive a package name from {raw!r}", "pass --name NAME (letters, digits, '.', '_', '-')"
        )
    return clean[:64]


def compress_document(result: CompressResult) -> dict[str, Any]:
    """The `edgeopt run --json` shape (recipe -> {name, hash}), plus `evaluation` per target."""
    from toolchain.pipeline.report import data_use, target_document

    targets = {}
    for name, t in result.targets.items():
        targets[name] = {**target_document(t), "evaluation": result.evaluation[name]}
    return {
        "schema_version": 1,
        "recipe": {"name": result.name, "hash": result.hash},
        "out_dir": str(result.out_dir.resolve()),
        "passed": result.passed,
        "targets": targets,
        "baseline": result.baseline,
        **data_use("train", result.golden),
        "stages": [{"stage": label, "status": status} for label, status in result.stages],
        "versions": library_versions(),
        "warnings": list(result.warnings),
    }


def _fidelity(m: dict[str, Any]) -> str:
    if "exact_match" in m:
        return f"exact match {m['exact_match']:.4g}"
    if "shape_mismatch" in m:
        return f"shape {m['shape_mismatch']} != fp32 {m['shape']}"
    sqnr = "identical" if m.get("sqnr_db") is None else f"SQNR {m['sqnr_db']:.1f} dB"
    cos = "" if m.get("cosine") is None else f", cosine {m['cosine']:.5f}"
    return f"{sqnr}, max abs diff {m['max_abs_diff']:.3g}{cos}"


def render_compress(result: CompressResult) -> str:
    from toolchain.pipeline.report import render_target

    hits = sum(1 for _, s in result.stages if s == "hit")
    cached = f"{hits}/{len(result.stages)} stages from cache"
    head = f"edgeopt compress '{result.name}' -> {result.out_dir} ({cached})"
    blocks = []
    for name, t in result.targets.items():
        ev = result.evaluation[name]
        lines = [render_target(name, t), f"  evaluation ({ev['kind']}, {ev['samples']} samples):"]
        for key in ("top1_agreement", "sqnr_db", "mse", "fp32_mse", "mae", "fp32_mae"):
            if ev.get(key) is not None:
                lines.append(f"    {key}: {ev[key]:.6g}")
        if len(ev.get("outputs", {})) > 1:  # one line per output: a whole-model number can hide one
            for out_name, m in ev["outputs"].items():
                lines.append(f"    output {out_name}: " + _fidelity(m))
        if "custom" in ev:
            for k, v in ev["custom"]["artifact"].items():
                lines.append(f"    {k}: {v:.6g} (fp32 {ev['custom']['fp32'][k]:.6g})")
        blocks.append("\n".join(lines))
    verdict = "all budgets met" if result.passed else "BUDGET FAILED"
    return f"{head}\n\n" + "\n\n".join(blocks) + f"\n\n{verdict}"
