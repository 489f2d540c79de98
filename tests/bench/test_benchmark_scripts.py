"""The arithmetic of the benchmark scripts (benchmarks/*.py): ceilings, conv classes, ratio cells.

The scripts themselves take minutes and machine time; what they compute from their measurements
must still be right, so it is checked here on fixed numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import batch_scaling
import compare_baselines
import int8_ablation
import int8_ceiling
import prune_search_scaling
import runtimes
import ship_stability
import transformer

FP32 = [("Conv", 10.0), ("Conv", 20.0), ("Conv", 70.0), ("Gemm", 5.0), ("ReorderOutput", 5.0)]
INT8 = [("Conv", 10.0), ("QLinearConv", 25.0), ("QLinearConv", 25.0), ("QGemm", 5.0),
        ("QuantizeLinear", 10.0), ("QLinearAdd", 5.0)]
CLASSES = ["stem", "depthwise", "pointwise"]


def test_ceilings_from_kernel_times():
    c = int8_ceiling.ceilings(FP32, INT8, CLASSES, fp32_wall_us=110.0, int8_wall_us=80.0)
    assert c["measured_speedup"] == pytest.approx(110 / 80)
    assert c["profiler_inflation"] == {"fp32": pytest.approx(1.0), "int8": pytest.approx(1.0)}
    assert c["ceiling_kernel_sum"] == pytest.approx(110 / 80)
    assert c["ceiling_convs_only"] == pytest.approx(110 / (10 + 25 + 25 + 5))
    assert c["ceiling_best_per_conv"] == pytest.approx(110 / (10 + 20 + 25 + 5))  # int8 wins only the pointwise
    assert c["by_class"]["depthwise"]["speedup"] == pytest.approx(0.8)
    assert c["by_class"]["pointwise"]["speedup"] == pytest.approx(2.8)
    assert c["by_class"]["everything else"] == {"count": 2, "fp32_us": 5.0, "int8_us": 15.0, "speedup": pytest.approx(1 / 3)}
    assert c["ceilings_valid"]


def test_profiler_excess_raises_the_ceilings_and_past_the_limit_voids_them():
    c = int8_ceiling.ceilings(FP32, INT8, CLASSES, fp32_wall_us=110.0, int8_wall_us=40.0)  # int8 kernels 2x the wall
    assert c["profiler_inflation"]["int8"] == pytest.approx(2.0)
    assert c["ceiling_convs_only"] == pytest.approx(110 / ((10 + 25 + 25) * 0.5 + 5 * 0.5))
    assert c["ceiling_best_per_conv"] == pytest.approx(110 / (5 + 12.5 + 12.5 + 2.5))  # halved int8 kernels win all
    assert not c["ceilings_valid"]


def test_conv_counts_that_do_not_match_are_an_error():
    with pytest.raises(RuntimeError, match="conv counts differ"):
        int8_ceiling.ceilings(FP32, INT8[:2], CLASSES, 110.0, 80.0)


def test_conv_classes_from_weights_and_groups(tmp_path):
    def w(name, *dims):
        return numpy_helper.from_array(np.zeros(dims, np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], pads=[1] * 4, strides=[2, 2]),
             helper.make_node("Conv", ["a", "w1"], ["b"], pads=[1] * 4, group=8),
             helper.make_node("Conv", ["b", "w2"], ["c"]),
             helper.make_node("Conv", ["c", "w3"], ["y"], pads=[1] * 4)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [w("w0", 8, 3, 3, 3), w("w1", 8, 1, 3, 3), w("w2", 16, 8, 1, 1), w("w3", 16, 16, 3, 3)])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert int8_ceiling.conv_classes(path) == ["stem", "depthwise", "pointwise", "other"]


def test_speedup_cell_shows_the_range_over_timing_blocks():
    assert compare_baselines._speedup({"speedup_vs_ort_fp32_1t": 1.234}, 1) == "1.23x"
    row = {"speedup_vs_ort_fp32_1t": 1.5, "speedup_vs_ort_fp32_1t_range": [1.37, 1.74]}
    assert compare_baselines._speedup(row, 1) == "1.50x (1.37-1.74)"
    assert compare_baselines._speedup({"speedup_vs_ort_fp32_2t": 2.0, "speedup_vs_ort_fp32_2t_range": [2.0, 2.0]}, 2) == "2.00x"


def test_publish_writes_json_and_markdown_and_echoes(tmp_path, capsys):
    import json

    from toolchain.bench.results import publish

    publish(tmp_path, "demo", {"speedup": 1.5}, "# demo\n")
    assert json.loads((tmp_path / "demo.json").read_text()) == {"speedup": 1.5}
    assert (tmp_path / "demo.md").read_text() == "# demo\n"
    assert "# demo" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json", "demo.md"]  # no temp files left


def _block_model(path: Path) -> Path:
    """stem conv -> depthwise (stride 1) -> pointwise -> Add(residual) -> depthwise (stride 2) -> pointwise."""
    rng = np.random.default_rng(0)
    w = {"stem": (8, 3, 3, 3), "dw1": (8, 1, 3, 3), "pw1": (8, 8, 1, 1), "dw2": (8, 1, 3, 3), "pw2": (4, 8, 1, 1)}
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n) for n, s in w.items()]
    conv = helper.make_node
    nodes = [conv("Conv", ["x", "stem"], ["a"], pads=[1, 1, 1, 1]),
             conv("Conv", ["a", "dw1"], ["b"], group=8, pads=[1, 1, 1, 1]),
             conv("Conv", ["b", "pw1"], ["c"]),
             conv("Add", ["c", "a"], ["d"]),
             conv("Conv", ["d", "dw2"], ["e"], group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
             conv("Conv", ["e", "pw2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_ablation_frees_depthwise_convs_and_adds_and_keeps_shapes(tmp_path):
    import onnxruntime as ort

    src = _block_model(tmp_path / "m.onnx")
    assert int8_ablation.free_nodes(src, tmp_path / "no_dw.onnx", int8_ablation.is_depthwise) == 2
    both = lambda n, w: int8_ablation.is_depthwise(n, w) or int8_ablation.is_residual_add(n)
    assert int8_ablation.free_nodes(src, tmp_path / "no_dw_add.onnx", both) == 3
    for name, convs in (("no_dw", 3), ("no_dw_add", 3)):
        model = onnx.load(str(tmp_path / f"{name}.onnx"))
        ops = [n.op_type for n in model.graph.node]
        assert ops.count("Conv") == convs and ops.count("MaxPool") == 1  # the strided one became a 1x1 pool
        assert {t.name for t in model.graph.initializer}.isdisjoint({"dw1", "dw2"})  # their weights are gone
        out = ort.InferenceSession(str(tmp_path / f"{name}.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"x": np.ones((1, 3, 16, 16), np.float32)})[0]
        assert out.shape == (1, 4, 8, 8)  # same shapes as before: only the time of the rest is measured
    assert "Add" not in [n.op_type for n in onnx.load(str(tmp_path / "no_dw_add.onnx")).graph.node]


def test_ablation_ceilings_from_wall_times():
    t = {"fp32": 400, "int8": 250, "opt_fp32": 400, "opt_int8": 250, "opt_fp32_no_dw": 300,
         "opt_int8_no_dw": 200, "opt_int8_no_dw_add": 180}
    timings = {k: {"p50_us": v} for k, v in t.items()}
    m = int8_ablation.ceilings(timings, {})
    assert m["measured_speedup"] == pytest.approx(1.6)
    assert m["ceiling_free_depthwise"] == pytest.approx(2.0)
    assert m["ceiling_free_depthwise_and_adds"] == pytest.approx(400 / 180)
    assert m["fp32_depthwise_us"] == 100 and m["int8_depthwise_us"] == 50
    assert m["ceiling_best_depthwise"] == pytest.approx(400 / 230)  # int8's depthwise is the cheaper; adds free
    assert m["depthwise_budget_us"] == pytest.approx(400 / 2.5 - 200)  # negative: even free ones miss 2.5x
    # the stand-in pools come off int8's ablated graphs (higher ceilings), never off fp32's
    pools = {"opt_fp32_no_dw": 30, "opt_int8_no_dw": 20, "opt_int8_no_dw_add": 20}
    m = int8_ablation.ceilings(timings, pools)
    assert m["ceiling_free_depthwise"] == pytest.approx(400 / 180)
    assert m["ceiling_free_depthwise_and_adds"] == pytest.approx(400 / 160)
    assert m["fp32_depthwise_us"] == 100 and m["int8_depthwise_us"] == 70
    assert m["ceiling_best_depthwise"] == pytest.approx(400 / (160 + 70))


def test_ship_stability_counts_choices_and_ratios():
    def run(int8_p50, w8_p50, shipped, lowest):
        return {"shipped": shipped, "lowest_p50": lowest, "candidates": {
            "int8": {"selection_p50_ms": int8_p50, "selection_threads": 1, "bytes": 155_738, "failed_budgets": []},
            "int8_weights": {"selection_p50_ms": w8_p50, "selection_threads": 1, "bytes": 154_933, "failed_budgets": []}}}

    runs = [run(0.020, 0.025, "int8", "int8"), run(0.022, 0.021, "int8", "int8_weights"), run(0.020, 0.030, "int8", "int8")]
    s = ship_stability.summarize(runs)
    assert s["shipped"] == {"counts": {"int8": 3}, "differs_from_majority": 0}
    assert s["lowest_p50"] == {"counts": {"int8": 2, "int8_weights": 1}, "differs_from_majority": 1}
    assert s["p50_vs_int8"]["int8_weights"] == {"median": pytest.approx(1.25), "min": pytest.approx(0.021 / 0.022),
                                                "max": pytest.approx(1.5)}
    assert s["bytes"] == {"int8": 155_738, "int8_weights": 154_933}
    doc = {"host": {"cpu": "x", "cores": 2, "isa": []}, "versions": {}, "date": "d", "recipe": "r", "repeats": 3,
           "spec": {"short": "runs 20"}, "settings": {"short": s}}
    assert "| short (runs 20) | 3 | int8 3 | 0 | int8 2, int8_weights 1 | 1 | int8_weights 1.25 (0.95-1.50) |" in ship_stability.render(doc)


def test_runtime_ratios_are_same_round_with_their_spread():
    r = runtimes.same_round_ratios([10.0, 20.0, 12.0], [5.0, 5.0, 6.0])  # drift hits both sides per round
    assert r == {"p50_ms": 5.0, "ratio_median": 2.0, "ratio_min": 2.0, "ratio_max": 4.0}
    with pytest.raises(ValueError):
        runtimes.same_round_ratios([1.0], [1.0, 2.0])


def test_transformer_ratios_per_round_and_the_goal():
    ref, mine, qdq = "ORT fp32 unfused", "ORT int8 dynamic fused (edgeopt, cpu-server)", "ORT int8 qdq fused"
    p50s = {ref: [1.0, 1.2, 0.9], mine: [0.5, 0.4, 0.6], qdq: [0.8, 0.8, 0.8]}
    cells = transformer.ratio_cells(p50s, ref)
    assert cells[ref] == {"p50_ms": 1.0, "ratio": 1.0, "ratio_min": 1.0, "ratio_max": 1.0}
    dyn = cells[mine]  # ratios per round: 2.0, 3.0, 1.5
    assert dyn["p50_ms"] == 0.5 and dyn["ratio"] == 2.0 and dyn["ratio_min"] == 1.5 and dyn["ratio_max"] == pytest.approx(3.0)
    for form, drop, sqnr in ((ref, 0.0, 200.0), (mine, 1.5, 24.0), (qdq, 0.5, 30.0)):
        cells[form].update(accuracy_drop_pt=drop, sqnr_db=sqnr)
    # zoo: judged on accuracy. The faster form drops 1.5 points, over the 1-point limit, so the QDQ form is the best eligible
    assert transformer.goal_met({"forms": cells}, "zoo") == {
        "best": qdq, "ratio": 1.25, "met": False, "edgeopt": 2.0, "edgeopt_met": False}
    # mini (an untrained speed model): judged on SQNR, where the dynamic form's 24 dB is under 25
    assert transformer.goal_met({"forms": cells}, "mini")["best"] == qdq
    cells[mine].update(accuracy_drop_pt=1.0, sqnr_db=41.0)
    for config in ("zoo", "mini"):
        assert transformer.goal_met({"forms": cells}, config) == {
            "best": mine, "ratio": 2.0, "met": True, "edgeopt": 2.0, "edgeopt_met": True}


def test_prune_scaling_ratios_pair_walls_of_the_same_round():
    row = {"best_sha256": "a", "decided": 8, "built": 9, "best": "amount_0.5"}
    rows = [{**row, "round": 0, "mode": "workers-1", "wall_s": 20.0}, {**row, "round": 0, "mode": "local-2", "wall_s": 15.0},
            {**row, "round": 0, "mode": "default", "wall_s": 10.0, "best_sha256": "b"},
            {**row, "round": 1, "mode": "local-2", "wall_s": 9.0}, {**row, "round": 1, "mode": "workers-1", "wall_s": 10.0}]
    s = prune_search_scaling.summarize(rows)
    assert s["ratios"] == [0.75, 0.9] and s["ratios_vs_default"] == [1.5] and s["same_artifact"]
    assert not prune_search_scaling.summarize([*rows, {**rows[0], "best_sha256": "c"}])["same_artifact"]
    assert "0.825 [0.750, 0.900] (goal <= 0.6)" in prune_search_scaling.render(
        {**s, "search": "x", "host": {"cpu": "CPU", "cores": 2, "isa": ["avx2"]}, "load_before": 0.1, "command": "c"})


def test_batch_scaling_pairs_parts_of_the_same_round():
    def row(mode, r, part, wall):
        return {"mode": mode, "round": r, "parallel_part_s": part, "wall_s": wall, "benchmark_part_s": wall - part,
                "slot_utilisation": 0.9, "machine_cpu_busy": 0.8, "retried": 0}

    rows = [row("sequential", 0, 100.0, 200.0), row("local", 0, 60.0, 150.0),
            row("sequential", 1, 120.0, 220.0), row("local", 1, 90.0, 190.0)]
    overhead = [{"executor": "ray", "tasks": 10, "median_s": 0.006, "max_s": 0.02, "worker_start_s": 0.8}]
    s = batch_scaling.summarize(rows, overhead)
    assert s["parallel_vs_sequential"]["local"] == pytest.approx([0.6, 0.75])
    assert s["wall_vs_sequential"]["local"] == pytest.approx([0.75, 190 / 220])
    text = batch_scaling.render({"batch": "b", "host": {"cpu": "X", "cores": 2, "isa": []}, "command": "c",
                                 "summary": s})
    assert "- local: 0.600, 0.750" in text and "worker's start (its first task, once per worker): 0.800 s" in text
