"""Peak memory split into ORT's own floor and the model's share; the fp32 reference measured
under ORT's default session options; both ratios in the metrics and the report table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.bench import memory
from toolchain.config.target import BenchmarkSpec, RuntimeOptions, load_target
from toolchain.pipeline.build_target import TargetResult, bench_config
from toolchain.pipeline.metrics import summarize_metrics
from toolchain.pipeline.report import render_target, target_document
from toolchain.stages.benchmark import benchmark

ARENA_OFF = RuntimeOptions(enable_cpu_mem_arena=False, enable_mem_pattern=False)


def _matmul_model(path: Path, floats: int, width: int = 256) -> Path:
    w = numpy_helper.from_array(np.ones((floats // width, width), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", floats // width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", width])], [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture
def fake_probe(monkeypatch):
    """VmHWM in MB by probe kind: 47.0 import only, 63.3 the floor model, 70.6 anything else."""
    memory.runtime_floor_mb.cache_clear()
    calls: list[list[str]] = []

    def probe(args):
        calls.append(args)
        if args[:2] == ["--mode", "import"]:
            return 47.0
        return 63.3 if Path(args[args.index("--model") + 1]).name == "floor.onnx" else 70.6

    monkeypatch.setattr(memory, "_probe", probe)
    yield calls
    memory.runtime_floor_mb.cache_clear()


def test_model_memory_is_peak_minus_floor_and_the_floor_is_cached(fake_probe, tmp_path):
    mem = memory.memory_breakdown(tmp_path / "m.onnx", ARENA_OFF, repeats=3)
    assert mem["peak_memory_mb"] == pytest.approx(23.6)
    assert mem["runtime_floor_mb"] == pytest.approx(16.3)
    assert mem["model_memory_mb"] == pytest.approx(7.3)
    assert len(fake_probe) == 12  # 3 import + 3 run, for the model and for the floor
    memory.memory_breakdown(tmp_path / "m.onnx", ARENA_OFF, repeats=3)
    assert len(fake_probe) == 18  # same options: the floor came from the cache
    memory.memory_breakdown(tmp_path / "m.onnx", RuntimeOptions(), repeats=3)
    assert len(fake_probe) == 30  # other options: a floor of their own
    floor_run = next(a for a in fake_probe if "floor.onnx" in " ".join(a))
    assert floor_run[floor_run.index("--arena") + 1] == "0"  # the floor uses the options it is for


def test_real_floor_is_positive_and_below_a_model_with_weights(tmp_path):
    memory.runtime_floor_mb.cache_clear()
    model = _matmul_model(tmp_path / "w.onnx", 5_000_000)  # 20 MB of fp32 weights
    mem = memory.memory_breakdown(model, RuntimeOptions(), repeats=1)
    assert 5 < mem["runtime_floor_mb"] < 40  # 16.3 MB measured with ORT 1.32 on x86-64
    assert mem["model_memory_mb"] == pytest.approx(mem["peak_memory_mb"] - mem["runtime_floor_mb"])
    assert mem["model_memory_mb"] >= 17


def test_fp32_memory_uses_ort_defaults_when_the_profile_turns_the_arena_off(fake_probe, tmp_path):
    profile = load_target("arm-mobile").model_copy(update={
        "runtime": ARENA_OFF, "benchmark": BenchmarkSpec(warmup_runs=0, runs=5, rounds=1, max_seconds=1.0)})
    cfg = bench_config(profile)
    # the reference's options are part of the benchmark step's cache key (steps.benchmark dumps cfg)
    assert cfg.model_dump(mode="json")["memory_runtime"]["fp32"]["enable_cpu_mem_arena"] is True
    paths = {label: _matmul_model(tmp_path / f"{label}.onnx", 256 * 4) for label in ("fp32", "int8")}
    results = benchmark(paths, np.ones((2, 4), np.float32), None, cfg)

    arena_by_model = [(Path(a[a.index("--model") + 1]).stem, a[a.index("--arena") + 1]) for a in fake_probe if "--model" in a]
    # each candidate, then the floor for its options (int8's differ, so it gets a floor of its own)
    assert list(dict.fromkeys(arena_by_model)) == [("fp32", "1"), ("floor", "1"), ("int8", "0"), ("floor", "0")]
    assert results["fp32"]["memory_runtime"] == RuntimeOptions().model_dump(mode="json")
    assert results["int8"]["memory_runtime"]["enable_cpu_mem_arena"] is False
    assert results["int8"]["memory_runtime"]["enable_mem_pattern"] is False


def _bench_entry(peak: float, floor: float) -> dict:
    lat = {"p50": 2.0, "p90": 2.5, "p99": 3.0, "std": 0.1, "mean": 2.1}
    return {"bytes": 1000, "latency_ms": {"1": lat}, "peak_memory_mb": peak, "runtime_floor_mb": floor,
            "model_memory_mb": max(peak - floor, 0.0)}


def test_metrics_and_report_show_both_memory_ratios():
    profile = load_target("arm-mobile")
    # the lead's MobileNetV2-0.5 224 px figures: int8 23.6 MB, fp32 31.6 MB, floor 16.4 MB
    metrics = summarize_metrics({"fp32": _bench_entry(31.6, 16.4), "int8": _bench_entry(23.6, 16.4)}, profile).document()
    assert metrics["memory_ratio"] == pytest.approx(0.7468, abs=1e-4)
    assert metrics["model_memory_mb"] == pytest.approx(7.2) and metrics["fp32_model_memory_mb"] == pytest.approx(15.2)
    assert metrics["model_memory_ratio"] == pytest.approx(0.4737, abs=1e-4)

    t = TargetResult("arm-mobile", Path("a.ort"), Path("a.fp32.ort"), Path("a.zip"), metrics, {})
    lines = render_target("arm-mobile", t).splitlines()
    peak = next(line for line in lines if "peak MB" in line).split()
    model = next(line for line in lines if "minus ORT floor" in line).split()
    assert peak[-3:] == ["23.6", "31.6", "0.75x"]
    assert model[-7:] == ["7.2", "(floor", "16.4)", "15.2", "(floor", "16.4)", "0.47x"]
    assert target_document(t)["model_memory_ratio"] == pytest.approx(0.4737, abs=1e-4)


def test_ratio_is_not_invented_when_fp32_stays_under_the_floor():
    metrics = summarize_metrics({"fp32": _bench_entry(16.0, 16.4), "int8": _bench_entry(15.0, 16.4)},
                                load_target("arm-mobile")).document()
    assert metrics["fp32_model_memory_mb"] == 0.0 and metrics["model_memory_ratio"] is None
    t = TargetResult("arm-mobile", Path("a.ort"), Path("a.fp32.ort"), Path("a.zip"), metrics, {})
    assert next(line for line in render_target("arm-mobile", t).splitlines() if "minus ORT floor" in line).endswith("n/a")


@pytest.mark.parametrize(("by_design", "fp32_compute", "expected"), [
    (["stem_conv"], 1, "1 kept fp32 on purpose"),
    ([], 1, "int8 not fully fused"),
    (["stem_conv"], 3, "int8 not fully fused"),  # more fp32 compute than was asked for
])
def test_report_tells_deliberate_fp32_nodes_from_unfused_ones(by_design, fp32_compute, expected):
    metrics = summarize_metrics({"fp32": _bench_entry(31.6, 16.4), "int8": _bench_entry(23.6, 16.4)},
                                load_target("cpu-server")).document()
    metrics["optimized_ops"] = {"int8_kernels": 3, "fp32_compute": fp32_compute, "quantize_dequantize": 2}
    metrics["fp32_nodes_by_design"] = by_design
    t = TargetResult("cpu-server", Path("a.onnx"), Path("a.fp32.onnx"), Path("a.zip"), metrics, {})
    line = next(x for x in render_target("cpu-server", t).splitlines() if "ORT graph here" in x)
    assert expected in line
    # when the fastest rule ships the pruned fp32 model, its fp32 ops are the point, not a fusion failure
    metrics["shipped"] = "pruned_fp32"
    line = next(x for x in render_target("cpu-server", t).splitlines() if "ORT graph here" in x)
    assert "not fully fused" not in line and "has no int8" in line


@pytest.mark.parametrize(("quantize_format", "name", "first"), [
    ("qdq", "shipped: the quantized model", "int8 2.0000 ms"),
    ("none", 'shipped: the model unquantized, fp32 ([quantize] format = "none")', "unquantized 2.0000 ms"),
])
def test_shipped_line_names_the_form_that_ships(quantize_format, name, first):
    """With [quantize] format = "none" the "int8" candidate is the fp32 graph: never call it int8."""
    from toolchain.pipeline.ship import choose_artifact

    profile = load_target("cpu-server")  # ship = "fastest": int8 and int8-weights are weighed
    results = {"fp32": _bench_entry(31.6, 16.4), "int8": _bench_entry(23.6, 16.4), "int8_weights": _bench_entry(23.6, 16.4)}
    shipped, selection = choose_artifact(results, profile, profile.budgets)
    metrics = summarize_metrics(results, profile, shipped)
    metrics.shipped, metrics.selection, metrics.quantize_format = shipped, selection, quantize_format
    metrics.optimized_ops = {"int8_kernels": 0, "fp32_compute": 4, "quantize_dequantize": 0}
    t = TargetResult("cpu-server", Path("a.onnx"), Path("a.fp32.onnx"), Path("a.zip"), metrics.document(), {})
    lines = render_target("cpu-server", t).splitlines()
    line = next(x for x in lines if "shipped:" in x)
    assert shipped == "int8" and line.startswith(f"  {name} [") and f"p50, bytes: {first}" in line
    graph = next(x for x in lines if "ORT graph here" in x)
    assert ("has no int8" in graph) == (quantize_format == "none")  # not "int8 not fully fused"
