"""`edgeopt bench FILE --runtimes onnxruntime,openvino`: the same file on each runtime, timed side by
side; an engine that cannot compile it is reported with the reason (cpu-server's "extended" int8 file
bakes in ORT-only operators), and OpenVINO is imported only when named."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import _fast_profile, require_extra

from toolchain.resources import bundled_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small RGB conv net (fp32), and cpu-server's int8 artifact of it, plus a fast cpu-server profile."""
    sys.path.insert(0, str(ROOT / "tests" / "stages"))
    from test_quantize_stem import _conv_net, _inputs

    from toolchain.config.recipe import QuantizeOverrides
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import convert_config, quantize_config
    from toolchain.stages.convert import convert
    from toolchain.stages.quantize import quantize

    d = tmp_path_factory.mktemp("across")
    fp32 = _conv_net(3, d / "fp32.onnx", size=32)
    profile = load_target("cpu-server")
    quantize(fp32, _inputs(3, n=16, size=32), quantize_config(profile, QuantizeOverrides(), 0), d / "q.onnx", {})
    (d / "cs").mkdir()
    int8 = d / "cs" / convert(d / "q.onnx", convert_config(profile), d / "cs", {})["artifact"]
    (d / "targets").mkdir()
    (d / "targets" / "cpu-server.toml").write_text(_fast_profile(bundled_dir("targets") / "cpu-server.toml"))
    return {"fp32": fp32, "int8": int8, "targets": d / "targets"}


def _bench(*args) -> tuple[int, str]:
    from toolchain.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["bench", *map(str, args)])
    return code, buf.getvalue()


def test_the_same_file_on_both_runtimes_measured_or_why_not(files):
    require_extra("openvino", "openvino")
    code, out = _bench(files["fp32"], "--target", "cpu-server", "--targets-dir", files["targets"],
                       "--runtimes", "openvino,onnxruntime", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["reference"] == "onnxruntime"  # the profile's own engine, whatever the order given
    ort, ov = doc["runtimes"]["onnxruntime"], doc["runtimes"]["openvino"]
    assert ort["compiles"] and ov["compiles"] and ort["speedup_vs_reference"] == 1.0
    assert ov["speedup_vs_reference"] == ort["p50_ms"] / ov["p50_ms"] and ov["p50_ms"] > 0
    assert ov["settings"]["INFERENCE_PRECISION_HINT"] == "f32" and ov["settings"]["INFERENCE_NUM_THREADS"] == 2
    assert ov["min_sqnr_db_vs_reference"] > 60  # fp32 on both: the same numbers up to rounding
    assert ort["runs"] == ov["runs"] == 20
    # cpu-server's int8 file ("extended": QGemm and friends baked in) runs on ORT only, and the report says why
    code, out = _bench(files["int8"], "--target", "cpu-server", "--targets-dir", files["targets"],
                       "--runtimes", "onnxruntime,openvino", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["runtimes"]["onnxruntime"]["compiles"]
    ov = doc["runtimes"]["openvino"]
    assert ov == {"compiles": False, "reason": ov["reason"]} and "com.microsoft.QGemm" in ov["reason"]
    code, out = _bench(files["int8"], "--target", "cpu-server", "--targets-dir", files["targets"],
                       "--runtimes", "onnxruntime,openvino")
    assert code == 0 and "openvino: does not compile it: OpenVINO cannot compile model.onnx (No conversion rule" in out


def test_bad_runtimes_exit_2(files, capsys):
    code, _ = _bench(files["fp32"], "--target", "cpu-server", "--runtimes", "ort")
    assert code == 2 and "unknown runtime 'ort' in --runtimes; known: onnxruntime, openvino" in capsys.readouterr().err
    code, _ = _bench(files["fp32"], "--target", "cpu-server", "--runtimes", "onnxruntime", "--remote", "ssh://h")
    assert code == 2


def test_onnxruntime_only_imports_no_openvino(files):
    code = ("import sys; from toolchain.cli import main; "
            f"rc = main(['bench', {str(files['fp32'])!r}, '--target', 'cpu-server', '--targets-dir', "
            f"{str(files['targets'])!r}, '--runtimes', 'onnxruntime', '--json']); "
            "sys.exit(10 + rc if 'openvino' in sys.modules else rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    assert list(json.loads(done.stdout)["runtimes"]) == ["onnxruntime"] and np.isfinite(
        json.loads(done.stdout)["runtimes"]["onnxruntime"]["p50_ms"])
