"""Parity of .ort artifacts on the official aarch64 onnxruntime under qemu-user.

The slow tests build (once, cached under EDGEOPT_CACHE_DIR or ~/.cache/edgeopt/arm) an arm64
Debian root with python + the aarch64 onnxruntime wheel, then run real models in it. They need
qemu-user-static and debootstrap (apt), and root for the first build; without them they skip
with the one-line install hint, except under CI=true, where `.ci/run` installs them.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import arm_env_or_skip

from toolchain.arm.parity import check_arm_parity, run_on_arm

H = W = 32


def _tiny_cnn_onnx(path: Path) -> None:
    import torch

    torch.manual_seed(0)
    # 16/32 channels: multiples of the NCHWc block (8 on AVX2, 16 on AVX-512), so an amd64
    # conversion really rewrites the convs to NCHWc ops; that is the negative test below.
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    ).eval()
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(
            model,
            (torch.randn(1, 3, H, W),),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["x"],
            output_names=["logits"],
        )


def _calibration(n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((1, 3, H, W)).astype(np.float32) for _ in range(n)]


def _quantize(src: Path, dest: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter({"x": x} for x in _calibration())

        def get_next(self):
            return next(self._it, None)

    quantize_static(
        str(src),
        str(dest),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )


def _to_ort(src: Path, out_dir: Path, platform: str) -> Path:
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        convert_onnx_models_to_ort(src, out_dir, [OptimizationStyle.Fixed], target_platform=platform)
    (ort_file,) = out_dir.glob("*.ort")
    return ort_file


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("arm-models")
    fp32 = d / "cnn.onnx"
    _tiny_cnn_onnx(fp32)
    int8 = d / "cnn_int8.onnx"
    _quantize(fp32, int8)
    return {
        "fp32_arm": _to_ort(fp32, d / "fp32_arm", "arm"),
        "int8_arm": _to_ort(int8, d / "int8_arm", "arm"),
        "fp32_amd64": _to_ort(fp32, d / "fp32_amd64", "amd64"),
    }


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"x": rng.standard_normal((1, 3, H, W)).astype(np.float32)}


@pytest.fixture(scope="module")
def arm_env():
    return arm_env_or_skip()


@pytest.mark.slow
def test_cached_env_is_reused_fast(arm_env):
    import time

    from toolchain.arm.emulator import ensure_arm_env

    start = time.perf_counter()
    again = ensure_arm_env()
    assert again.dir == arm_env.dir
    assert again.build_seconds is None  # a cache hit, not a rebuild
    assert time.perf_counter() - start < 5.0


@pytest.mark.slow
def test_fp32_arm_ort_matches_x86(artifacts, golden, arm_env):
    report = check_arm_parity(artifacts["fp32_arm"], golden, env=arm_env)
    assert not report.quantized
    assert report.error is None
    (out,) = report.outputs
    assert out.rule == "fp32" and out.shape == (1, 10)
    assert out.max_abs_diff <= out.tolerance, report.to_dict()
    assert report.passed


@pytest.mark.slow
def test_int8_qdq_arm_ort_within_one_lsb(artifacts, golden, arm_env):
    report = check_arm_parity(artifacts["int8_arm"], golden, env=arm_env)
    assert report.quantized
    (out,) = report.outputs
    assert out.rule == "quant-lsb" and out.step is not None and out.step > 0
    assert out.max_abs_diff <= out.step * 1.0 + 1e-6, report.to_dict()
    assert report.passed
    assert report.to_dict()["emulation"]["note"].startswith("qemu-user emulation wall time")


@pytest.mark.slow
def test_arm_run_differs_from_host_reference_when_reference_is_wrong(artifacts, golden, arm_env):
    # The comparison is real: a reference shifted by 10 LSB must fail.
    from toolchain.arm.parity import run_on_host
    from toolchain.arm.qsteps import output_steps

    ref = run_on_host(artifacts["int8_arm"], golden)
    (step,) = output_steps(artifacts["int8_arm"])
    report = check_arm_parity(artifacts["int8_arm"], golden, [ref[0] + 10 * step], env=arm_env)
    assert not report.passed
    assert report.outputs[0].max_abs_diff == pytest.approx(10 * step, rel=0.2)


@pytest.mark.slow
def test_amd64_ort_with_nchwc_fails_on_arm(artifacts, golden, arm_env):
    report = check_arm_parity(artifacts["fp32_amd64"], golden, env=arm_env)
    assert not report.passed
    # Seen with onnxruntime 1.32: "com.microsoft.nchwc:Conv(1) is not a registered function/op"
    assert report.error is not None and "com.microsoft.nchwc" in report.error, report.error
    assert report.to_dict()["passed"] is False


@pytest.mark.slow
def test_run_on_arm_returns_outputs_in_session_order(artifacts, golden, arm_env):
    outs = run_on_arm(arm_env, artifacts["fp32_arm"], golden)
    assert [o.shape for o in outs] == [(1, 10)]
    assert outs[0].dtype == np.float32


# ---------------------------------------------------------------- fast: no qemu needed


def test_fp32_tolerance_scales_with_output_range():
    from toolchain.arm.parity import FP32_ATOL, FP32_RTOL, tolerance_for

    tol, rule = tolerance_for(np.array([-2.0, 1.0], np.float32), quantized=False, step=None)
    assert rule == "fp32"
    assert tol == pytest.approx(FP32_ATOL + FP32_RTOL * 2.0)
    assert tol == pytest.approx(2.1e-4)


def test_quantized_tolerance_is_one_lsb():
    from toolchain.arm.parity import tolerance_for

    tol, rule = tolerance_for(np.array([0.5, -1.0], np.float32), quantized=True, step=0.01)
    assert rule == "quant-lsb"
    assert 0.01 <= tol < 0.01 + 1e-6  # one step plus float32 rounding slack only


def test_quantized_float_output_without_step_uses_loose_fallback():
    from toolchain.arm.parity import tolerance_for

    tol, rule = tolerance_for(np.array([4.0], np.float32), quantized=True, step=None)
    assert rule == "quant-float-fallback"
    assert tol == pytest.approx(100 * (1e-5 + 1e-4 * 4.0))


def test_one_lsb_passes_two_lsb_fail():
    from toolchain.arm.parity import compare_outputs

    step = 0.05
    ref = np.arange(-5, 5, dtype=np.float32) * step
    (one,) = compare_outputs([ref], [ref + np.float32(step)], quantized=True, steps=[step])
    (two,) = compare_outputs([ref], [ref + np.float32(2 * step)], quantized=True, steps=[step])
    assert one.passed and one.max_abs_diff == pytest.approx(step, rel=1e-5)
    assert not two.passed and two.max_abs_diff == pytest.approx(2 * step, rel=1e-5)


def test_int8_outputs_compare_without_wraparound():
    from toolchain.arm.parity import compare_outputs

    (out,) = compare_outputs(
        [np.array([127], np.int8)], [np.array([-128], np.int8)], quantized=True, steps=[1.0]
    )
    assert out.max_abs_diff == 255.0 and not out.passed
    (near,) = compare_outputs(
        [np.array([5, 6], np.int8)], [np.array([6, 6], np.int8)], quantized=True, steps=[1.0]
    )
    assert near.max_abs_diff == 1.0 and near.passed


def test_shape_dtype_and_nan_mismatches_fail():
    from toolchain.arm.parity import compare_outputs

    a = np.zeros((1, 10), np.float32)
    (shape,) = compare_outputs([a], [np.zeros((10,), np.float32)], quantized=False)
    (dtype,) = compare_outputs([a], [a.astype(np.float64)], quantized=False)
    nan = a.copy()
    nan[0, 3] = np.nan
    (one_nan,) = compare_outputs([a], [nan], quantized=False)
    (both_nan,) = compare_outputs([nan], [nan.copy()], quantized=False)
    assert (shape.rule, shape.passed) == ("shape", False)
    assert (dtype.rule, dtype.passed) == ("dtype", False)
    assert one_nan.max_abs_diff == float("inf") and not one_nan.passed
    assert both_nan.max_abs_diff == 0.0 and both_nan.passed


def test_report_json_labels_emulated_time_and_never_passes_empty():
    import json

    from toolchain.arm.parity import ArmParityReport, OutputParity

    ok = ArmParityReport(
        "m.ort",
        False,
        "1.32.0",
        "cortex-a76",
        (OutputParity(0, (1, 10), 1e-8, 1e-5, "fp32", None, True),),
        emulation_wall_time_s=5.0,
    )
    data = json.loads(json.dumps(ok.to_dict()))
    assert data["passed"] is True
    assert data["outputs"][0]["shape"] == [1, 10]
    assert "latency" not in json.dumps(data).replace("NOT device latency", "")
    assert data["emulation"]["wall_time_s"] == 5.0
    assert not ArmParityReport("m.ort", False, "1.32.0", "cortex-a76").passed
    assert not ArmParityReport("m.ort", False, "1.32.0", "cortex-a76", ok.outputs, error="load failed").passed


def _which_only(*present):
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_missing_qemu_is_a_one_line_bad_input(monkeypatch, tmp_path):
    from toolchain.arm import emulator
    from toolchain.errors import EXIT_BAD_INPUT, BadInput

    monkeypatch.setattr(emulator.shutil, "which", _which_only("debootstrap", "dpkg-deb"))
    with pytest.raises(emulator.ArmToolMissing) as info:
        emulator.ensure_arm_env(tmp_path)
    assert isinstance(info.value, BadInput) and info.value.exit_code == EXIT_BAD_INPUT
    assert "\n" not in str(info.value)
    assert "apt-get install -y qemu-user-static debootstrap" in str(info.value)


def test_missing_debootstrap_or_root_is_a_bad_input(monkeypatch, tmp_path):
    from toolchain.arm import emulator

    monkeypatch.setattr(emulator.shutil, "which", _which_only("qemu-aarch64-static", "dpkg-deb"))
    with pytest.raises(emulator.ArmToolMissing, match="debootstrap not found.*apt-get install"):
        emulator.ensure_arm_env(tmp_path)
    monkeypatch.setattr(
        emulator.shutil, "which", _which_only("qemu-aarch64-static", "dpkg-deb", "debootstrap")
    )
    monkeypatch.setattr(emulator.os, "geteuid", lambda: 1000)
    with pytest.raises(emulator.ArmToolMissing, match="needs root rights"):
        emulator.ensure_arm_env(tmp_path)


def test_spec_key_is_pinned():
    from toolchain.arm.emulator import ArmEnvSpec

    # Changing the spec's fields or defaults changes every cache key; do it on purpose only.
    assert ArmEnvSpec(onnxruntime="1.32.0", numpy="2.4.6").key() == "1c030ef73a1a5fa3"
    assert ArmEnvSpec(onnxruntime="1.32.0", numpy="2.4.6", cpu="cortex-a53").key() != "1c030ef73a1a5fa3"


def _fake_build(calls):
    def build(tmp, spec, qemu):
        calls.append(tmp)
        (tmp / "root/usr/bin").mkdir(parents=True)
        (tmp / "root/usr/bin/python3.11").write_text("")
        return "usr/bin/python3.11"

    return build


def test_cache_hit_skips_the_build_and_killed_builds_are_not_trusted(monkeypatch, tmp_path):
    from toolchain.arm import emulator

    spec = emulator.ArmEnvSpec(onnxruntime="1.32.0", numpy="2.4.6")
    calls: list[Path] = []
    monkeypatch.setattr(emulator.shutil, "which", _which_only("qemu-aarch64-static"))
    monkeypatch.setattr(emulator, "_check_build_tools", lambda: None)
    monkeypatch.setattr(emulator, "_build", _fake_build(calls))
    # A half environment (no env.json) and a killed builder's temp dir are both left behind.
    half = tmp_path / f"env-{spec.key()}"
    (half / "root").mkdir(parents=True)
    stale = tmp_path / f".env-{spec.key()}.abc.tmp"
    stale.mkdir()

    first = emulator.ensure_arm_env(tmp_path, spec=spec)
    assert len(calls) == 1 and first.build_seconds is not None  # the half env was rebuilt
    assert not stale.exists()
    assert (first.dir / "env.json").is_file() and first.dir == half

    second = emulator.ensure_arm_env(tmp_path, spec=spec)
    assert len(calls) == 1 and second.build_seconds is None  # hit: no second build
    assert second.command("-c", "pass")[:5] == [
        "/usr/bin/qemu-aarch64-static",
        "-L",
        str(half / "root"),
        "-cpu",
        "cortex-a76",
    ]


def test_failed_build_leaves_nothing_trusted(monkeypatch, tmp_path):
    from toolchain.arm import emulator

    spec = emulator.ArmEnvSpec(onnxruntime="1.32.0", numpy="2.4.6")
    monkeypatch.setattr(emulator.shutil, "which", _which_only("qemu-aarch64-static"))
    monkeypatch.setattr(emulator, "_check_build_tools", lambda: None)

    def broken(tmp, spec, qemu):
        (tmp / "root").mkdir()
        raise emulator.ArmEnvError("debootstrap failed", "retry")

    monkeypatch.setattr(emulator, "_build", broken)
    with pytest.raises(emulator.ArmEnvError):
        emulator.ensure_arm_env(tmp_path, spec=spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".build.lock"]


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    from toolchain.arm.emulator import default_cache_dir

    monkeypatch.setenv("EDGEOPT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "arm"
    monkeypatch.delenv("EDGEOPT_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "edgeopt" / "arm"


def _qdq_onnx(path: Path, tail: str | None) -> None:
    import onnx
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor("s", TensorProto.FLOAT, [], [0.25]),
        helper.make_tensor("z", TensorProto.INT8, [], [0]),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq" if tail else "y"]),
    ]
    out_type = TensorProto.FLOAT
    if tail == "relu":
        nodes.append(helper.make_node("Relu", ["dq"], ["y"]))
    elif tail == "int":
        nodes[-1] = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
        nodes = nodes[-1:]
        out_type = TensorProto.INT8
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", out_type, [1, 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))


def test_output_steps_from_onnx(tmp_path):
    from toolchain.arm.qsteps import is_quantized, output_steps

    for tail, want in ((None, [0.25]), ("relu", [None]), ("int", [1.0])):
        path = tmp_path / f"{tail}.onnx"
        _qdq_onnx(path, tail)
        assert output_steps(path) == want, tail
        assert is_quantized(path)


def _host_env(tmp_path):
    """A QDQ model and an ArmEnv whose guest python the tests replace with the host's."""
    from toolchain.arm import emulator

    model = tmp_path / "m.onnx"
    _qdq_onnx(model, None)
    env = emulator.ArmEnv(emulator.ArmEnvSpec(onnxruntime="1.32.0", numpy="2.4.6"), tmp_path, Path("/q"),
                          "usr/bin/python3.11", None)
    return model, env


def test_run_on_arm_maps_runner_failures(monkeypatch, tmp_path):
    # The guest command is replaced by host python; what is tested is the exit-code contract.
    from toolchain.arm import emulator, parity

    model, env = _host_env(tmp_path)
    x = {"x": np.ones((1, 4), np.float32)}

    def script(code):
        monkeypatch.setattr(emulator.ArmEnv, "command", lambda self, *a: [sys.executable, "-c", code])

    fail = "sys.stderr.write('EDGEOPT_RUNNER load: nchwc:Conv is not a registered op\\n'); sys.exit(10)"
    script("import sys; " + fail)
    report = parity.check_arm_parity(model, x, [np.ones((1, 4), np.float32)], env=env)
    assert not report.passed and report.error.endswith("load: nchwc:Conv is not a registered op")
    script("import os; os.kill(os.getpid(), 11)")
    with pytest.raises(emulator.ArmEnvError, match="rebuild the environment"):
        parity.run_on_arm(env, model, x)


def test_runner_script_on_host_python(monkeypatch, tmp_path):
    # _runner.py needs only numpy + onnxruntime, so the host can run it too: same contract.
    from toolchain.arm import emulator, parity

    model, env = _host_env(tmp_path)
    monkeypatch.setattr(emulator.ArmEnv, "command", lambda self, *a: [sys.executable, *a])
    monkeypatch.setattr(emulator.ArmEnv, "environ", lambda self: None)
    x = {"x": np.array([[0.1, 0.3, -1.0, 40.0]], np.float32)}
    (out,) = parity.run_on_arm(env, model, x)
    np.testing.assert_array_equal(out, np.array([[0.0, 0.25, -1.0, 31.75]], np.float32))
    report = parity.check_arm_parity(model, x, env=env)
    assert report.passed and report.quantized and report.outputs[0].step == 0.25
    assert report.outputs[0].max_abs_diff == 0.0


def test_bad_paths_are_bad_input(tmp_path):
    from toolchain.arm.parity import run_on_host
    from toolchain.errors import BadInput

    with pytest.raises(BadInput, match="not found"):
        run_on_host(tmp_path / "missing.ort", {"x": np.zeros(1)})
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(BadInput, match="not an .ort or .onnx"):
        run_on_host(tmp_path / "m.txt", {"x": np.zeros(1)})
