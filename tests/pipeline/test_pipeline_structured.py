"""Structured pruning through the cached pipeline steps: the plan is saved beside the weights and
replayed when a later stage (export, benchmark) loads the pruned model from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain.config.recipe import Recipe
from toolchain.pipeline import steps
from toolchain.pipeline.cache import StageCache
from toolchain.pipeline.variants import variant_label

STEM_OFF = variant_label("fp32_stem", False)  # cpu-server measures its fp32 stem both ways


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_structured_prune_entry_replays_into_a_smaller_model_that_exports(tmp_path):
    recipe = Recipe(train={"epochs": 2}, prune={"kind": "structured", "amount": 0.5, "finetune_epochs": 1})
    cache = StageCache(tmp_path)
    data = steps.dataset(recipe)
    trained = steps.train(cache, recipe, data)
    pruned = steps.prune(cache, recipe, data, trained)
    assert pruned.record["plan"] == "plan.json" and pruned.path("plan.json").is_file()
    assert json.loads(pruned.path("plan.json").read_text())["schema_version"] == 2

    full, small = steps.load_model(recipe, trained), steps.load_model(recipe, pruned)
    assert _params(small) < 0.4 * _params(full)
    with torch.no_grad():
        logits = small(torch.as_tensor(data.x_test[:8])).numpy()
    assert logits.shape == (8, 10) and np.isfinite(logits).all()

    exported = steps.export(cache, recipe, data, pruned, label="export[pruned]")  # parity-checked inside
    assert exported.record["parity"]["max_abs_diff"] < 1e-4
    # the cache hit path loads through the same replay
    again = steps.prune(StageCache(tmp_path), recipe, data, trained)
    assert again.hit and _params(steps.load_model(recipe, again)) == _params(small)


def test_run_benchmarks_the_pruned_network_in_fp32_beside_its_int8_artifact(tmp_path):
    """With structured pruning the run also times the pruned model without int8, so a user sees
    when int8 kernels lose to fp32 on narrow layers (measured: MobileNetV2 pruned 75% at 224 px)."""
    from toolchain.pipeline.report import render_run, render_target, run_document
    from toolchain.pipeline.run import RunOptions, run_pipeline

    recipe = Recipe(train={"epochs": 2}, prune={"kind": "structured", "amount": 0.5, "finetune_epochs": 1},
                    targets=["cpu-server"])
    result = run_pipeline(recipe, RunOptions(out_dir=tmp_path / "run"))
    target = result.targets["cpu-server"]
    m = target.metrics
    pf = m["pruned_fp32"]
    weighed = m["selection"]["candidates"]
    int8_bytes = weighed["int8"]["bytes"]
    assert int8_bytes < pf["bytes"] < m["fp32_bytes"]  # smaller than fp32, larger than int8
    assert 0 < pf["accuracy"] <= 1 and pf["p50_ms"] > 0
    assert m["int8_speedup_vs_pruned_fp32"] == pf["p50_ms"] / weighed["int8"]["p50_ms"]
    # cpu-server ships the fastest candidate that passes every budget, and says which one it was
    assert m["selection"]["rule"] == "fastest" and m["shipped"] in weighed
    passing = {k: c for k, c in weighed.items() if not c["failed_budgets"]}
    if passing:  # of those about as fast as the fastest (at its own best thread count) and about as
        # small as the smallest of them, the first of int8 (then its scheme variant), pruned fp32, int8-weights
        tie = m["selection"]["tie"]
        fast = min(c["selection_p50_ms"] for c in passing.values())
        fast_enough = {k: c for k, c in passing.items() if c["selection_p50_ms"] <= fast * (1 + tie)}
        small = min(c["bytes"] for c in fast_enough.values())
        assert m["shipped"] == next(k for k in ("int8", STEM_OFF, "int8[ort_uint8_qdq]", "pruned_fp32", "int8_weights")
                                    if k in fast_enough and fast_enough[k]["bytes"] <= small * (1 + tie))
        assert all(c["selection_threads"] in (1, 2) for c in weighed.values())  # cpu-server sweeps 1 and 2
    assert target.artifact.stat().st_size == m["bytes"] == weighed[m["shipped"]]["bytes"]
    # the same pruned network with int8-stored weights: a third of the bytes, the same accuracy
    w8 = weighed["int8_weights"]
    assert w8["bytes"] < 0.35 * pf["bytes"] and abs(w8["accuracy"] - pf["accuracy"]) <= 0.01
    text = render_target("cpu-server", target)
    row = next(line for line in text.splitlines() if "pruned: int8 vs fp32" in line)
    assert f"{pf['p50_ms']:.4f} (pruned fp32)" in row
    assert "shipped: " in text
    st = result.baseline["structure"]  # params and MACs before and after, in the report and report.json
    assert st["params_after"] < 0.4 * st["params_before"] and st["macs_after"] < st["macs_before"]
    assert f"params {st['params_before']:,} -> {st['params_after']:,}" in render_run(result)
    doc = run_document(result)["targets"]["cpu-server"]
    assert doc["pruned_fp32"]["bytes"] == pf["bytes"] and doc["shipped"] == m["shipped"]
    # digits' grey stem conv: cpu-server's fp32_stem is measured both ways (scheme_candidates), and
    # ORT's own uint8 QDQ (per-tensor, int8 stem) as the peer the shipped file must not be slower than
    assert set(doc["candidates"]) == {"fp32", "int8", STEM_OFF, "int8[ort_uint8_qdq]", "pruned_fp32", "int8_weights"}
    assert doc["selection"]["ort_uint8_qdq"]["candidate"] == "int8[ort_uint8_qdq]"
    assert Path(doc["candidates"][m["shipped"]]).read_bytes() == target.artifact.read_bytes()

    # an unpruned (magnitude) recipe has no such candidate: same network, nothing to compare
    plain = run_pipeline(Recipe(train={"epochs": 2}, prune={"kind": "none"}, targets=["cpu-server"]),
                         RunOptions(out_dir=tmp_path / "plain"))
    assert "pruned_fp32" not in plain.targets["cpu-server"].metrics


def _bench_row(p50: float, nbytes: int, accuracy: float) -> dict:
    lat = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "std": 0.01, "mean": p50}
    return {"bytes": nbytes, "latency_ms": {"1": lat}, "accuracy": accuracy, "peak_memory_mb": 20.0,
            "runtime_floor_mb": 16.0, "model_memory_mb": 4.0}


def test_fastest_rule_ships_the_fastest_candidate_that_passes_every_budget():
    from toolchain.config.target import load_target
    from toolchain.pipeline.metrics import summarize_metrics
    from toolchain.pipeline.ship import choose_artifact

    profile = load_target("cpu-server")
    fastest = profile.model_copy(update={"artifact": profile.artifact.model_copy(update={"ship": "fastest"})})
    quantized = profile.model_copy(update={"artifact": profile.artifact.model_copy(update={"ship": "quantized"})})
    results = {"fp32": _bench_row(0.40, 1_000_000, 0.95), "int8": _bench_row(0.16, 250_000, 0.945),
               "pruned_fp32": _bench_row(0.12, 110_000, 0.947)}

    shipped, selection = choose_artifact(results, fastest, profile.budgets)
    assert shipped == "pruned_fp32" and selection["candidates"]["int8"]["p50_ms"] == 0.16
    m = summarize_metrics(results, fastest, shipped).document()
    assert m["bytes"] == 110_000 and m["speedup_vs_fp32"] == 0.40 / 0.12 and abs(m["accuracy_drop"] - 0.003) < 1e-12
    assert m["int8_speedup_vs_pruned_fp32"] == 0.12 / 0.16  # still int8 vs pruned fp32, whatever ships

    # faster but over the size budget (0.30x): the int8 artifact ships instead
    too_big = {**results, "pruned_fp32": _bench_row(0.12, 400_000, 0.947)}
    shipped, selection = choose_artifact(too_big, fastest, profile.budgets)
    assert shipped == "int8" and selection["candidates"]["pruned_fp32"]["failed_budgets"] == ["max_size_ratio"]
    # over the accuracy budget (1 point): same
    worse = {**results, "pruned_fp32": _bench_row(0.12, 110_000, 0.93)}
    assert choose_artifact(worse, fastest, profile.budgets)[0] == "int8"
    # ship = "quantized" keeps int8 even when a faster candidate passes
    assert choose_artifact(results, quantized, profile.budgets)[0] == "int8"

    # equally fast (within ship_tie, 5%) and 5%+ smaller: the smaller ships; beyond it, speed decides
    tied = {**results, "int8_weights": _bench_row(0.1255, 40_000, 0.946)}
    shipped, selection = choose_artifact(tied, fastest, profile.budgets)
    assert shipped == "int8_weights" and selection["tie"] == 0.05 and list(selection["candidates"]) == [
        "int8", "pruned_fp32", "int8_weights"]  # fp32 only where no compressed form pays
    assert choose_artifact({**tied, "int8_weights": _bench_row(0.1265, 40_000, 0.946)}, fastest, profile.budgets)[0] == "pruned_fp32"
    strict = fastest.model_copy(update={"artifact": fastest.artifact.model_copy(update={"ship_tie": 0.0})})
    assert choose_artifact(tied, strict, profile.budgets)[0] == "pruned_fp32"
    # about as fast but only 1% smaller: not worth a slower artifact
    assert choose_artifact({**tied, "int8_weights": _bench_row(0.1255, 108_900, 0.946)}, fastest, profile.budgets)[0] == "pruned_fp32"
    # equal speed and bytes within ship_tie: the preferred form ships whichever measured faster, so
    # timing noise does not flip the shipped file (digits: int8 and int8-weights, 0.5% apart)
    digits = {"fp32": _bench_row(0.040, 600_000, 0.95), "int8": _bench_row(0.0220, 155_739, 0.945),
              "int8_weights": _bench_row(0.0212, 154_934, 0.95)}
    assert choose_artifact(digits, fastest, profile.budgets)[0] == "int8"
    assert choose_artifact(digits, strict, profile.budgets)[0] == "int8_weights"
    # a gap wider than ship_tie still decides
    assert choose_artifact({**digits, "int8_weights": _bench_row(0.0205, 154_934, 0.95)}, fastest, profile.budgets)[0] == "int8_weights"
    # preference holds among tied forms however they are listed
    assert choose_artifact(dict(reversed(list(digits.items()))), fastest, profile.budgets)[0] == "int8"

    # with a thread sweep, each candidate counts at its fastest thread count (what its package will name)
    def swept(row, p50_by_threads):
        return {**row, "threads": {n: {"1": {"p50": v}} for n, v in p50_by_threads.items()}}

    threaded = {**results, "int8": swept(results["int8"], {"1": 0.10, "2": 0.16}),
                "pruned_fp32": swept(results["pruned_fp32"], {"1": 0.13, "2": 0.12})}
    shipped, selection = choose_artifact(threaded, fastest, profile.budgets)
    assert shipped == "int8" and selection["candidates"]["int8"]["selection_threads"] == 1
    assert selection["candidates"]["int8"]["p50_ms"] == 0.16  # the profile-thread p50 is still reported

    # none passes: of those failing the fewest budgets, the fastest ships (best effort, exit 1 later)
    all_big = {"fp32": _bench_row(0.40, 100_000, 0.95), "int8": _bench_row(0.60, 31_800, 0.945),
               "int8_weights": _bench_row(0.40, 31_600, 0.95)}
    shipped, selection = choose_artifact(all_big, fastest, profile.budgets)
    assert shipped == "int8_weights" and selection["candidates"]["int8"]["failed_budgets"] == ["max_size_ratio"]
    worse_too = {**all_big, "int8_weights": _bench_row(0.40, 31_600, 0.90)}  # also fails accuracy: 2 > 1
    assert choose_artifact(worse_too, fastest, profile.budgets)[0] == "int8"
    assert choose_artifact(all_big, quantized, profile.budgets)[0] == "int8"

    # torch eager is timed in its own rounds against fp32: its speedup chains the two same-round ratios
    eager = {"latency_ms": {"1": {"p50": 2.0, "p90": 2.2, "p99": 2.4}}, "fp32_p50_same_rounds": {"1": 0.5}}
    m = summarize_metrics({**results, "torch-eager": eager}, fastest, "int8").document()
    assert m["speedup_vs_torch"] == pytest.approx((2.0 / 0.5) * (0.40 / 0.16))


@pytest.mark.parametrize(("fp32_same_round", "noted"), [(0.40, False), (0.004, True)])
def test_eager_row_ratio_is_the_ratio_it_shows_and_a_busy_machine_is_said(fp32_same_round, noted):
    from pathlib import Path

    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import TargetResult
    from toolchain.pipeline.metrics import summarize_metrics
    from toolchain.pipeline.report import render_target

    profile = load_target("cpu-server")
    results = {"fp32": _bench_row(0.40, 100_000, 0.95), "int8": _bench_row(0.16, 31_000, 0.945)}
    eager = {"latency_ms": {"1": {"p50": 2.0, "p90": 2.2, "p99": 2.4}}, "fp32_p50_same_rounds": {"1": fp32_same_round}}
    m = summarize_metrics({**results, "torch-eager": eager}, profile, "int8").document()
    text = render_target("cpu-server", TargetResult("cpu-server", Path("a"), Path("b"), Path("c"), m, {}))
    row = next(line for line in text.splitlines() if "vs torch eager" in line)
    assert row.split()[-2] == f"{2.0 / 0.16:.2f}x"  # 12.50x: eager p50 / artifact p50, as printed
    assert ("machine was busy" in text) is noted  # chained 0.40 -> 12.5x agrees; 0.004 -> 1250x does not


def test_fp32_ships_where_compression_does_not_pay_and_the_report_says_so():
    from pathlib import Path

    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import TargetResult
    from toolchain.pipeline.metrics import summarize_metrics
    from toolchain.pipeline.report import render_target
    from toolchain.pipeline.ship import choose_artifact, compression_pays

    profile = load_target("cpu-server")  # ship = "fastest", max_size_ratio 0.30
    tiny = {"fp32": _bench_row(0.010, 2_000, 0.95), "int8": _bench_row(0.030, 5_940, 0.95),
            "int8_weights": _bench_row(0.011, 2_100, 0.95)}  # 2.97x and 1.05x fp32's bytes: both fail the size budget
    shipped, selection = choose_artifact(tiny, profile, profile.budgets)
    assert shipped == "fp32" and selection["candidates"]["fp32"]["failed_budgets"] == ["max_size_ratio"]
    m = summarize_metrics(tiny, profile, shipped).document()
    m["shipped"], m["selection"] = shipped, selection
    assert compression_pays(m) is False
    assert compression_pays({**summarize_metrics(tiny, profile, "int8").document(), "shipped": "int8"}) is False
    ok = {"fp32": _bench_row(0.40, 100_000, 0.95), "int8": _bench_row(0.16, 27_000, 0.945)}
    assert choose_artifact(ok, profile, profile.budgets)[0] == "int8"
    assert compression_pays({**summarize_metrics(ok, profile, "int8").document(), "shipped": "int8"}) is True
    m["compression_pays"] = False
    text = render_target("cpu-server", TargetResult("cpu-server", Path("a"), Path("b"), Path("c"), m, {}))
    assert "compression does not pay" in text and "the fp32 baseline" in text
    # ship = "quantized" never weighs fp32, nor does "fastest" while some compressed form pays
    quantized = profile.model_copy(update={"artifact": profile.artifact.model_copy(update={"ship": "quantized"})})
    assert "fp32" not in choose_artifact(tiny, quantized, profile.budgets)[1]["candidates"]
    slower_but_smaller = {**tiny, "int8": _bench_row(0.030, 640, 0.95)}
    assert "fp32" not in choose_artifact(slower_but_smaller, profile, profile.budgets)[1]["candidates"]
