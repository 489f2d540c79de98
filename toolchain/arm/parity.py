"""Run an artifact on aarch64 onnxruntime (emulated) and compare with the x86 run.

The comparison rule (one tolerance number per output, `max|arm - x86| <= tolerance`):

* fp32 model: tolerance = FP32_ATOL + FP32_RTOL * max|x86|. ARM NEON and x86 AVX kernels sum
  in a different order and fuse multiply-adds differently, so bit-exactness is not expected;
  a real bug (wrong layout, missing op) is off by far more than 1e-4 of the output's range.
* quantized model: tolerance = QUANT_LSB * step, where step is the output's quantization step
  (1 for an integer output, the DequantizeLinear scale for a dequantized float output), plus
  a float32 rounding allowance. Integer arithmetic should be bit-exact, but ARM and x86 MLAS
  requantize with different (fixed-point vs float) rounding, so one LSB of slack is allowed.
* quantized model, float output with no single step (float ops after the last
  DequantizeLinear, per-channel output scale): the fp32 rule scaled up by QUANT_FALLBACK_FACTOR,
  because one-LSB differences inside the graph propagate through those float ops.

Emulated time is not latency: the report carries it only as `emulation.wall_time_s` with a note.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from toolchain.arm.emulator import ArmEnv, ArmEnvError, ensure_arm_env
from toolchain.arm.qsteps import is_quantized, output_steps
from toolchain.errors import BadInput, ModelLoadError, VerificationError, missing_file

FP32_ATOL = 1e-5  # absolute floor: outputs near zero still get a few float32 ulps of 1.0
FP32_RTOL = 1e-4  # of the output's largest magnitude; measured fp32 diffs are ~1e-7 of it
QUANT_LSB = 1.0  # allowed difference in quantization steps
QUANT_FALLBACK_FACTOR = 100.0  # fp32 rule x100 (1% of the range) for float tails of int8 graphs
EMULATION_NOTE = "qemu-user emulation wall time on an x86 host; NOT device latency, never compare it"
_RUNNER = Path(__file__).with_name("_runner.py")
_RUNNER_LOAD, _RUNNER_RUN = 10, 11  # exit codes defined in _runner.py


class ArmRunError(VerificationError):
    """The artifact did not load or run on aarch64 onnxruntime (e.g. an x86-only op)."""


@dataclass(frozen=True)
class OutputParity:
    index: int
    shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    rule: str  # "fp32", "quant-lsb" or "quant-float-fallback"; "shape"/"dtype" on a mismatch
    step: float | None = None  # quantization step used by "quant-lsb"
    passed: bool = False


@dataclass(frozen=True)
class ArmParityReport:
    model: str
    quantized: bool
    onnxruntime: str
    cpu: str
    outputs: tuple[OutputParity, ...] = ()
    error: str | None = None  # set when the model did not load/run on aarch64
    emulation_wall_time_s: float = field(default=float("nan"), compare=False)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.outputs) and all(o.passed for o in self.outputs)

    def render(self) -> str:
        """The report for a person: one line per output, then the verdict."""
        d = self.to_dict()
        lines = [f"{d['model']} on aarch64 onnxruntime {d['aarch64']['onnxruntime']} ({d['aarch64']['cpu']}, emulated)"]
        if d["error"]:
            lines.append(f"  FAIL did not run: {d['error']}")
        for o in d["outputs"]:
            lines.append(f"  {'PASS' if o['passed'] else 'FAIL'} output {o['index']}: max abs diff {o['max_abs_diff']:.3g}"
                         f" <= {o['tolerance']:.3g} ({o['rule']})")
        lines.append("parity holds" if d["passed"] else "PARITY FAILED")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "quantized": self.quantized,
            "aarch64": {"onnxruntime": self.onnxruntime, "cpu": self.cpu},
            "error": self.error,
            "outputs": [{**asdict(o), "shape": list(o.shape)} for o in self.outputs],
            "emulation": {"wall_time_s": round(self.emulation_wall_time_s, 2), "note": EMULATION_NOTE},
        }


def tolerance_for(reference: np.ndarray, *, quantized: bool, step: float | None) -> tuple[float, str]:
    """The allowed max abs difference for one output, and the name of the rule that set it."""
    ref = np.asarray(reference, dtype=np.float64)
    # NaN/inf say nothing about scale (and NaNs are compared position-wise, not by tolerance).
    magnitude = float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0))
    if quantized and step is not None:
        # The float32 allowance: a dequantized value q*scale is rounded once on each side.
        fp_slack = 4 * float(np.finfo(np.float32).eps) * magnitude
        return QUANT_LSB * step + fp_slack, "quant-lsb"
    tol = FP32_ATOL + FP32_RTOL * magnitude
    if quantized:
        return tol * QUANT_FALLBACK_FACTOR, "quant-float-fallback"
    return tol, "fp32"


def compare_outputs(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    *,
    quantized: bool,
    steps: Sequence[float | None] | None = None,
) -> tuple[OutputParity, ...]:
    if len(reference) != len(candidate):
        raise VerificationError(
            f"aarch64 run gave {len(candidate)} outputs, x86 gave {len(reference)}",
            "the artifact's outputs differ between platforms; re-convert it",
        )
    steps = list(steps) if steps is not None else [None] * len(reference)
    results = []
    for i, (ref, got) in enumerate(zip(reference, candidate)):
        ref, got = np.asarray(ref), np.asarray(got)
        step = steps[i] if i < len(steps) else None
        if ref.shape != got.shape:
            results.append(OutputParity(i, tuple(got.shape), float("inf"), 0.0, "shape"))
            continue
        if ref.dtype != got.dtype:
            results.append(OutputParity(i, tuple(got.shape), float("inf"), 0.0, "dtype"))
            continue
        tol, rule = tolerance_for(ref, quantized=quantized, step=step)
        diff = _max_abs_diff(ref, got)
        results.append(
            OutputParity(
                i, tuple(ref.shape), diff, tol, rule, step if rule == "quant-lsb" else None, diff <= tol
            )
        )
    return tuple(results)


def _max_abs_diff(ref: np.ndarray, got: np.ndarray) -> float:
    if ref.size == 0:
        return 0.0
    a, b = ref.astype(np.float64), got.astype(np.float64)  # int8 - int8 would wrap around
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if np.any(nan_a != nan_b):
        return float("inf")  # NaN on one platform only is a failure, whatever the tolerance
    diff = np.abs(np.where(nan_a, 0.0, a) - np.where(nan_b, 0.0, b))
    return float(diff.max())


def _check_model(model_path: Path) -> Path:
    model_path = Path(model_path)
    if not model_path.is_file():
        raise missing_file(model_path, "model file", "check the path", ModelLoadError)
    if model_path.suffix not in (".ort", ".onnx"):
        raise BadInput(f"{model_path.name}: not an .ort or .onnx file", "give the artifact edgeopt produced")
    return model_path.resolve()


def _check_inputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not inputs:
        raise BadInput("no inputs given", "pass one array per model input, e.g. the package's golden inputs")
    out = {}
    for name, value in inputs.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise BadInput(f"input '{name}' is not a numeric array", "pass numpy arrays")
        out[str(name)] = np.ascontiguousarray(arr)
    return out


def run_on_host(model_path: Path, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The x86 reference, with the same session settings as the guest runner."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(
        str(_check_model(model_path)), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    return [np.asarray(o) for o in sess.run(None, _check_inputs(inputs))]


def run_on_arm(
    env: ArmEnv, model_path: Path, inputs: Mapping[str, np.ndarray], *, timeout: float = 3600
) -> list[np.ndarray]:
    """Outputs of one inference on the emulated aarch64 onnxruntime, in session output order."""
    model_path = _check_model(model_path)
    feeds = _check_inputs(inputs)
    with tempfile.TemporaryDirectory(prefix="edgeopt-arm-") as tmp:
        in_path, out_path = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(in_path, **feeds)
        argv = env.command(str(_RUNNER), str(model_path), str(in_path), str(out_path))
        try:
            proc = subprocess.run(
                argv, check=False, capture_output=True, text=True, env=env.environ(), timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise ArmEnvError(
                f"the emulated run did not finish in {timeout:.0f} s",
                "use fewer/smaller golden inputs, or raise the timeout",
            ) from None
        if proc.returncode in (_RUNNER_LOAD, _RUNNER_RUN):
            line = next(
                (ln for ln in proc.stderr.splitlines() if ln.startswith("EDGEOPT_RUNNER")),
                proc.stderr.strip()[-300:],
            )
            raise ArmRunError(
                f"{model_path.name} on aarch64 onnxruntime {env.spec.onnxruntime}: "
                f"{line.removeprefix('EDGEOPT_RUNNER ')}",
                "convert the .ort with target_platform='arm' and check its ops",
            )
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
            raise ArmEnvError(
                f"the emulated python failed (exit {proc.returncode}): {tail}",
                "rebuild the environment: ensure_arm_env(rebuild=True)",
            )
        with np.load(out_path, allow_pickle=False) as data:
            return [data[f"out_{i}"] for i in range(len(data.files))]


def check_arm_parity(
    model_path: Path,
    inputs: Mapping[str, np.ndarray],
    reference_outputs: Sequence[np.ndarray] | None = None,
    *,
    quantized: bool | None = None,
    env: ArmEnv | None = None,
    cache_dir: Path | None = None,
) -> ArmParityReport:
    """Run `model_path` on emulated aarch64 and compare with `reference_outputs` (default: x86 run).

    `quantized=None` detects it from the graph (any (De)QuantizeLinear or QLinear* op).
    A model that fails to load or run on aarch64 gives a failed report with `error` set; a
    broken emulator or missing tool raises (ArmEnvError / ArmToolMissing).
    """
    model_path = _check_model(model_path)
    feeds = _check_inputs(inputs)
    if quantized is None:
        quantized = is_quantized(model_path)
    if env is None:
        env = ensure_arm_env(cache_dir)
    if reference_outputs is None:
        reference_outputs = run_on_host(model_path, feeds)
    base = {
        "model": model_path.name,
        "quantized": quantized,
        "onnxruntime": env.spec.onnxruntime,
        "cpu": env.spec.cpu,
    }
    start = time.perf_counter()
    try:
        arm_outputs = run_on_arm(env, model_path, feeds)
    except ArmRunError as err:
        return ArmParityReport(**base, error=err.problem, emulation_wall_time_s=time.perf_counter() - start)
    wall = time.perf_counter() - start
    steps = output_steps(model_path) if quantized else None
    outputs = compare_outputs(reference_outputs, arm_outputs, quantized=quantized, steps=steps)
    return ArmParityReport(**base, outputs=outputs, emulation_wall_time_s=wall)
