"""The benchmark on models edgeopt did not make (issue #13): a fixed batch dimension the profile's
batch sizes do not match is benchmarked at its own batch with the others skipped and said so,
and every phase stops at the profile's time cap and records that it did."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.bench.latency import interleaved, interleaved_capped
from toolchain.bench.session import batch_plan
from toolchain.bench.timing import Deadline, repeat, time_calls
from toolchain.config.target import BenchmarkSpec, RuntimeOptions
from toolchain.stages.benchmark import BenchConfig, benchmark, headline_batch

ONE_THREAD = RuntimeOptions(intra_op_threads=1)


def _matmul_chain(path, batch: int | str, width: int = 16, depth: int = 1):
    """x [batch, width] -> `depth` MatMuls -> Relu; `batch` an int fixes the batch dimension."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, width ** -0.5, (width, width)).astype(np.float32), f"w{i}")
             for i in range(depth)]
    names = ["x"] + [f"h{i}" for i in range(depth)]
    nodes = [helper.make_node("MatMul", [names[i], f"w{i}"], [names[i + 1]]) for i in range(depth)]
    nodes.append(helper.make_node("Relu", [names[-1]], ["y"]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _cfg(**spec) -> BenchConfig:
    base = {"batch_sizes": [1, 8], "warmup_runs": 2, "runs": 10, "rounds": 2, "max_seconds": 2.0}
    return BenchConfig(runtime=ONE_THREAD, spec=BenchmarkSpec(**{**base, **spec}), memory_repeats=1)


def test_batch_plan_skips_what_a_fixed_batch_cannot_take():
    batches, skipped = batch_plan({"fp32": 4, "int8": 4, "dyn": None}, [1, 8])
    assert batches == [1, 8, 4]  # the model's own batch is added when no profile size fits
    assert sorted(skipped) == ["fp32", "int8"]
    assert sorted(skipped["fp32"]) == ["1", "8"]
    assert "fixed at 4" in skipped["fp32"]["1"]
    assert batch_plan({"fp32": 1}, [1, 8]) == ([1, 8], {"fp32": {"8": "the model's batch dimension is fixed at 1"}})


@pytest.mark.parametrize(("fixed", "timed", "skipped"), [(1, ["1"], ["8"]), (4, ["4"], ["1", "8"])])
def test_fixed_batch_models_are_benchmarked_at_their_own_batch(tmp_path, fixed, timed, skipped):
    # The repro of issue #13 (cpu-server: batch sizes [1, 8], onnx's test_ReLU fixed at 2) crashed
    # with ZeroDivisionError on an empty candidate list.
    paths = {"fp32": _matmul_chain(tmp_path / "a.onnx", fixed), "int8": _matmul_chain(tmp_path / "b.onnx", fixed)}
    x = np.random.default_rng(0).normal(size=(6, 16)).astype(np.float32)
    results = benchmark(paths, x, None, _cfg())
    for label in paths:
        assert sorted(results[label]["latency_ms"]) == timed
        assert sorted(results[label]["skipped_batch_sizes"]) == skipped
        assert results[label]["latency_ms"][timed[0]]["runs"] == 10
        assert "capped" not in results[label]  # 2 s is plenty for a 16x16 MatMul
    assert headline_batch(results, [1, 8]) == timed[0]


def test_interleaved_with_nothing_to_time_is_empty_not_a_crash():
    assert interleaved({}, warmup=3, runs=10, rounds=5, max_seconds=1.0) == {}


def test_timing_primitive_counts_and_deadline():
    calls = []
    assert repeat(lambda: calls.append(1), at_most=7) == 7
    assert time_calls(lambda: None, 25).shape == (25,)
    expired = Deadline(0.0)
    assert time_calls(lambda: None, 25, expired).shape == (1,)  # stops after the call that saw the deadline
    assert repeat(lambda: None, at_most=20, deadline=expired, at_least=1) == 1


def test_interleaved_stops_warmups_and_rounds_at_the_cap():
    # 50 ms calls, 40 warm-ups and 300 runs each: uncapped warm-ups alone would take 4 s.
    def slow():
        time.sleep(0.05)

    start = time.perf_counter()
    timed = interleaved_capped({"a": slow, "b": slow}, warmup=40, runs=300, rounds=5, max_seconds=0.3)
    wall = time.perf_counter() - start
    assert wall < 2 * (0.3 + 2 * 0.05) + 0.5  # each candidate: the cap plus at most two calls (margin: shared CI)
    assert sorted(timed.capped) == ["a", "b"]
    assert all(1 <= st.runs < 300 for st in timed.stats.values())


def test_benchmark_phases_respect_a_tiny_cap(tmp_path):
    # 10-40 ms per call (64 x 512, 30 MatMuls; the machine is shared). The uncapped benchmark spent
    # 18-34 s here with 500 warm-ups per phase (measured), so > 35 s with 1000; the capped one 5-6 s.
    paths = {"fp32": _matmul_chain(tmp_path / "a.onnx", 64, width=512, depth=30),
             "int8": _matmul_chain(tmp_path / "b.onnx", 64, width=512, depth=30)}
    x = np.random.default_rng(0).normal(size=(64, 512)).astype(np.float32)
    cfg = _cfg(batch_sizes=[64], warmup_runs=1000, runs=300, rounds=5, max_seconds=0.25, thread_sweep=[1])
    start = time.perf_counter()
    results = benchmark(paths, x, None, cfg)
    wall = time.perf_counter() - start
    # 2 candidates x (timed runs + sweep + memory probe): each phase ~ the cap plus a few calls, plus
    # the fixed cost of starting the memory probes' processes; generous for a shared 2-core machine.
    assert wall < 15.0
    for label in paths:
        capped = results[label]["capped"]
        assert any(c.startswith("latency batch 64: cap 0.25 s") for c in capped)
        assert any(c.startswith("threads 1:") for c in capped)
        assert 1 <= results[label]["latency_ms"]["64"]["runs"] < 300
        assert results[label]["memory_probes"] == 1


def test_bench_command_says_which_batch_sizes_it_skipped(tmp_path):
    from toolchain.bench.standalone import bench_file
    from toolchain.config.target import load_target

    doc = bench_file(_matmul_chain(tmp_path / "m.onnx", 4), load_target("cpu-server"))
    assert doc["batch"] == 4
    assert list(doc["latency_by_batch"]) == ["4"]
    assert sorted(doc["skipped_batch_sizes"]) == ["1", "8"]


def test_a_zero_batch_dimension_is_dynamic_not_fixed(tmp_path):
    # Some exporters write dim_value 0 for an unknown axis; ORT reports the int 0 (-1 it reports as None).
    path = _matmul_chain(tmp_path / "m.onnx", "N")
    model = onnx.load(str(path))
    for vi in (*model.graph.input, *model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 0
    onnx.save(model, str(path))
    from toolchain.bench.session import fixed_batch, input_spec
    from toolchain.runtime import load_session

    sess = load_session(path, ONE_THREAD)
    assert sess.get_inputs()[0].shape[0] == 0
    assert fixed_batch(sess) is None
    assert input_spec(sess)[0][1] == [None, 16]
