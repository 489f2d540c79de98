"""Measurement primitives and the gate: percentiles, interleaving, peak memory, verdicts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.bench.latency import interleaved, summarize
from toolchain.bench.memory import peak_memory_mb
from toolchain.config.budgets import Budgets, evaluate
from toolchain.config.target import RuntimeOptions


def test_summarize_percentiles_on_known_samples():
    stats = summarize(list(range(1, 101)))
    assert (stats.p50, stats.min, stats.max, stats.runs) == (50.5, 1.0, 100.0, 100)
    assert stats.p90 == pytest.approx(90.1) and stats.p99 == pytest.approx(99.01)


def test_interleaved_runs_every_candidate_in_every_round():
    order = []
    stats = interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                        warmup=1, runs=10, rounds=5, max_seconds=5)
    assert stats["a"].runs == stats["b"].runs == 10
    timed = order[2:]  # after one warm-up each
    # rounds alternate which candidate goes first: a,a,b,b then b,b,a,a ...
    assert timed[:4] == ["a", "a", "b", "b"] and timed[4:8] == ["b", "b", "a", "a"]


def test_fastest_threads_per_batch_prefers_fewer_threads_on_ties():
    from toolchain.bench.threads import fastest_threads

    p50 = {"1": {"1": 0.10, "8": 0.90}, "2": {"1": 0.15, "8": 0.60}, "4": {"1": 0.10, "8": 0.70}}
    assert fastest_threads(p50) == {"1": 1, "8": 2}


def test_thread_sweep_times_every_count_with_one_live_session_at_a_time(tmp_path, monkeypatch):
    import weakref

    import toolchain.runtime as session_mod  # bench/threads.py loads through the runtime seam
    from toolchain.bench.threads import thread_sweep
    from toolchain.config.target import BenchmarkSpec

    w = numpy_helper.from_array(np.ones((64, 8), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    live, peak, threads_seen = [], [0], []
    real_load = session_mod.load_session

    def tracked(path, runtime):
        sess = real_load(path, runtime)
        threads_seen.append(runtime.intra_op_threads)
        live.append(weakref.ref(sess))
        peak[0] = max(peak[0], sum(r() is not None for r in live))
        return sess

    monkeypatch.setattr(session_mod, "load_session", tracked)
    spec = BenchmarkSpec(batch_sizes=[1, 4], warmup_runs=2, runs=12, rounds=3, max_seconds=5)
    x = {1: np.ones((1, 64), np.float32), 4: np.ones((4, 64), np.float32)}
    out = thread_sweep({"a": tmp_path / "m.onnx", "b": tmp_path / "m.onnx"}, x, RuntimeOptions(), [1, 2], spec)
    assert peak[0] == 1  # no pool spins while another session is timed
    assert sorted(threads_seen) == [1] * 6 + [2] * 6  # 2 artifacts x 3 rounds per count
    for label in ("a", "b"):
        assert set(out[label]) == {1, 2}
        assert all(set(out[label][n]) == {1, 4} and out[label][n][1].runs == 12 for n in (1, 2))


def test_thread_sweep_counts_are_validated():
    from pydantic import ValidationError

    from toolchain.config.target import BenchmarkSpec

    assert BenchmarkSpec(thread_sweep=[2, 1, 2]).thread_sweep == [1, 2]
    with pytest.raises(ValidationError, match="thread counts must be >= 1"):
        BenchmarkSpec(thread_sweep=[0, 1])


def _big_model(path, floats: int) -> None:
    w = numpy_helper.from_array(np.ones((floats // 256, 256), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("ReduceSum", ["h"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, floats // 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_peak_memory_sees_the_weights(tmp_path):
    _big_model(tmp_path / "big.onnx", 10_000_000)  # 40 MB of fp32 weights
    mem = peak_memory_mb(tmp_path / "big.onnx", RuntimeOptions(), repeats=1)
    assert mem["peak_memory_mb"] >= 35
    assert mem["process_peak_mb"] > mem["runtime_only_mb"] > 10


def test_gate_verdicts_and_unmeasured_budget_fails():
    budgets = Budgets(max_bytes=100, max_p90_ms=2.0, max_accuracy_drop=0.01)
    verdicts = evaluate(budgets, {"bytes": 90, "p90_ms": 2.5})
    assert verdicts["max_bytes"].passed and verdicts["max_bytes"].value == 90
    assert not verdicts["max_p90_ms"].passed and verdicts["max_p90_ms"].limit == 2.0
    assert not verdicts["max_accuracy_drop"].passed and verdicts["max_accuracy_drop"].value is None
    assert set(verdicts) == {"max_bytes", "max_p90_ms", "max_accuracy_drop"}
    assert verdicts["max_bytes"].to_dict() == {"limit": 100.0, "value": 90.0, "pass": True, "metric": "bytes"}
