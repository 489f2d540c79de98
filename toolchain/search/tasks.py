"""The quantization search's units of work, as executor tasks (toolchain.executor).

Each is a module-level function of paths, arrays and configs that returns a small JSON-able
summary. A variant's model is handed over through the stage cache, never through the driver's
memory: it is published atomically (fsio.publish_dir) under `<cache>/search-variants/<key>/`,
keyed by the sha256 of everything that determines its bytes, so two workers building the same
variant are safe and a rerun is a hit. Leave-one-out probes keep nothing: they return a number.

The search calls the same functions in this process when it has no executor, so a sequential
and a parallel search compute every number the same way (a pool task's ORT sessions run on its
share of the cores, toolchain.executor.threads; ORT's outputs do not depend on the count).
Latency is never measured here: the driver times every candidate after the parallel part.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.config.target import QuantizeScheme
from toolchain.fsio import publish_dir, sha256_file, sha256_json, write_json_atomic

VARIANTS = "search-variants"  # folder of the stage cache holding the search's variants
MODEL = "model.onnx"
RANGES = "calibration.json"  # ORT's calibration cache (onnxruntime.quantization.calibrate.save_tensors_data)
CODE = ("toolchain.search.tasks", "toolchain.stages.quantize", "toolchain.stages.int8_weights")


def quantize_static_to(pre: Path, dest: Path, calib_x: np.ndarray, exclude: list[str], scheme: QuantizeScheme,
                       ranges: Path | None = None) -> Path:
    """Static quantization with the target's scheme (the same mapping and exclusions the pipeline's
    stage uses). `ranges`: ORT's calibration cache file, read when it exists (no calibration run),
    else computed and written there."""
    import onnx
    from onnxruntime.quantization import quantize_static

    from toolchain.data.feeds import as_feeds
    from toolchain.stages.quantize import _reader, excluded_nodes, static_kwargs

    model = onnx.load(str(pre), load_external_data=False)
    nodes, _ = excluded_nodes(model, scheme, exclude)
    cached = ranges is not None and ranges.is_file()
    reader = None if cached else _reader(as_feeds(calib_x, model.graph.input[0].name), 32)
    reuse = {"calibration_cache_path": str(ranges)} if ranges is not None else {}
    # ORT's calibration writes (then deletes) `<input>-inferred.onnx` beside its input: tasks
    # sharing one cached input would race on that file, and the cache entry must stay immutable.
    with tempfile.TemporaryDirectory(prefix="edgeopt-quant-") as tmp, contextlib.redirect_stdout(sys.stderr):
        private = Path(shutil.copyfile(pre, Path(tmp) / "pre.onnx"))
        quantize_static(str(private), str(dest), reader, nodes_to_exclude=nodes, **static_kwargs(scheme), **reuse)
    return dest


def calibration_ranges(pre: Path, calib_x: np.ndarray, scheme: QuantizeScheme, cache_dir: Path) -> Path | None:
    """ORT's calibration ranges of `pre` on `calib_x`, computed once and published: every variant
    quantizes from them instead of calibrating again (calibration was 27 of a 35 s search, 11 times
    the same ranges: exclusions and the stem setting choose which tensors get quantized, not their
    ranges). Keyed by the calibration method, the only scheme key that reaches ORT's calibrator;
    ORT refuses a cache made with another method. None where this ORT has no calibration cache
    (older than 1.32): every variant then calibrates for itself, with the same result."""
    import inspect

    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return None
    key = sha256_json({"kind": "ranges", "pre": sha256_file(pre), "calib": _array_sha(calib_x),
                       "method": scheme.calibration_method, **_code()})
    entry = Path(cache_dir) / VARIANTS / f"ranges-{key[:24]}"
    if not (entry / RANGES).is_file():
        with publish_dir(entry, lambda e: (e / RANGES).is_file()) as tmp, \
                tempfile.TemporaryDirectory(prefix="edgeopt-calib-") as scratch:
            quantize_static_to(pre, Path(scratch) / "unused.onnx", calib_x, [], scheme, tmp / RANGES)
    return entry / RANGES


def _complete(entry: Path) -> bool:
    return (entry / MODEL).is_file()


def _published(entry: Path, build: Callable[[Path], Any]) -> Path:
    """`entry/model.onnx`, built by `build(dest)` into a temp sibling unless already published."""
    if not _complete(entry):
        with publish_dir(entry, _complete) as tmp:
            build(tmp / MODEL)
    return entry / MODEL


def preprocessed(fp32: Path, cache_dir: Path) -> Path:
    """ORT's quantization pre-processing of `fp32`, published once per content."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def build(dest: Path) -> None:
        with contextlib.redirect_stdout(sys.stderr):
            quant_pre_process(str(fp32), str(dest))

    key = sha256_json({"kind": "pre", "fp32": sha256_file(fp32), **_code()})
    return _published(Path(cache_dir) / VARIANTS / f"pre-{key[:24]}", build)


def _code() -> dict:
    """Library versions and this code's fingerprint go into every key, as for the stage cache: an
    upgraded ORT or a changed quantizer never reuses an older variant."""
    from toolchain.pipeline.cache import library_versions
    from toolchain.pipeline.codehash import code_fingerprint

    return {"versions": library_versions(), "code": code_fingerprint(CODE)}


def variant_entry(cache_dir: Path, pre: Path, calib_x: np.ndarray, exclude: list[str], scheme: QuantizeScheme) -> Path:
    """Where a variant lives: a key over the pre-processed model, calibration rows, exclusions and scheme."""
    key = sha256_json({"kind": "qdq", "pre": sha256_file(pre), "calib": _array_sha(calib_x), "exclude": list(exclude),
                       "scheme": scheme.model_dump(mode="json"), **_code()})
    return Path(cache_dir) / VARIANTS / key[:32]


def _array_sha(x: np.ndarray) -> str:
    import hashlib

    a = np.ascontiguousarray(x)
    return hashlib.sha256(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()


def _scores(path: Path, eval_x: np.ndarray, eval_y: np.ndarray, ref_probe: np.ndarray) -> dict[str, Any]:
    """Accuracy on the whole evaluation split, logit MSE against fp32 on its first len(ref_probe) rows."""
    from toolchain.search.measure import onnx_logits

    logits = onnx_logits(path, eval_x)
    n = len(ref_probe)
    return {"accuracy": float((logits.argmax(1) == eval_y).mean()),
            "logit_mse": float(np.mean((logits[:n] - ref_probe) ** 2)),
            "model": str(path), "bytes": path.stat().st_size}


def evaluate_qdq(cache_dir: Path, pre: Path, calib_x, exclude: list[str], scheme: QuantizeScheme,
                 eval_x, eval_y, ref_probe, ranges: Path | None = None) -> dict[str, Any]:
    """Build (or find) one QDQ variant in the cache and score it."""
    entry = variant_entry(cache_dir, pre, calib_x, exclude, scheme)
    path = _published(entry, lambda dest: quantize_static_to(pre, dest, calib_x, exclude, scheme, ranges))
    return _scores(path, eval_x, eval_y, ref_probe)


def evaluate_int8_weights(cache_dir: Path, fp32: Path, eval_x, eval_y, ref_probe) -> dict[str, Any]:
    """fp32 compute, weights stored as per-channel int8 (ORT folds them back at load)."""
    from toolchain.stages.int8_weights import Int8WeightsConfig, int8_weights

    cfg = Int8WeightsConfig()
    entry = Path(cache_dir) / VARIANTS / sha256_json({"kind": "int8-weights", "fp32": sha256_file(fp32),
                                                      "config": cfg.model_dump(mode="json"), **_code()})[:32]
    def build(dest: Path) -> None:
        facts = int8_weights(fp32, cfg, dest)
        write_json_atomic(dest.with_name("facts.json"), {"weights_int8": facts["weights_int8"]})

    path = _published(entry, build)
    facts = json.loads((entry / "facts.json").read_text())
    return {**_scores(path, eval_x, eval_y, ref_probe), "weights_int8": facts["weights_int8"]}


def probe_error(pre: Path, calib_x, exclude: list[str], scheme: QuantizeScheme, probe_x, ref_probe,
                ranges: Path | None = None) -> float:
    """Logit MSE of everything-int8-but-`exclude`; the model is thrown away."""
    from toolchain.search.measure import onnx_logits

    with tempfile.TemporaryDirectory(prefix="edgeopt-probe-") as tmp:
        path = quantize_static_to(pre, Path(tmp) / "probe.onnx", calib_x, exclude, scheme, ranges)
        return float(np.mean((onnx_logits(path, probe_x) - ref_probe) ** 2))


def warm() -> None:
    """Import what every task needs: a worker then starts its first real task at once."""
    import onnx  # noqa: F401
    import onnxruntime.quantization  # noqa: F401


class Runner:
    """Runs a round of independent calls: on the executor as tasks, else here one after another."""

    def __init__(self, executor=None, log: Callable[[str], None] = lambda _m: None):
        self.executor, self.log = executor, log

    def map(self, calls: dict[str, tuple[Callable[..., Any], tuple]]) -> dict[str, Any]:
        if self.executor is None or not calls:
            return {key: fn(*args) for key, (fn, args) in calls.items()}
        from toolchain.executor import Task, run_graph

        outcomes = run_graph(self.executor, [Task(k, fn, args) for k, (fn, args) in calls.items()], self.log)
        return {key: outcomes[key].value for key in calls}

    def warm_up(self, imports: Callable[[], None] = warm) -> None:
        """Start the workers and their `imports` now, while the driver prepares the first round;
        nobody waits for these tasks. Nothing to start without an executor or in one process."""
        if self.executor is None or getattr(self.executor, "workers", 2) == 1:
            return
        from toolchain.executor import Task

        warmed = getattr(self.executor, "warmed", set())
        if imports in warmed:  # run_search warms as soon as it starts, the search itself again
            return
        for i in range(self.width):
            self.executor.submit(Task(f"warm:{i}", imports))
        self.executor.warmed = warmed | {imports}

    @property
    def width(self) -> int:
        """How many tasks can run at once: the size of a speculative round."""
        if self.executor is None:
            return 1
        workers = getattr(self.executor, "workers", None)
        if workers is None:  # Ray: the cluster's CPUs
            workers = int(self.executor.ray.cluster_resources().get("CPU", 1))
        return max(int(workers), 1)
