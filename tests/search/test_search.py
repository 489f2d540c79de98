"""Accuracy-budget search: int8 fallback repairs a hostile layer; bisection finds the largest
pruning amount within budget; reports list what was tried and reverted; plots are written."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from toolchain.config.target import QuantizeScheme
from toolchain.config.zoo import ModelConfig, build_model
from toolchain.search import SearchBudget, search_prune_amount, search_quantization
from toolchain.search.measure import export_onnx
from toolchain.stages.prune import PruneConfig
from toolchain.stages.train import TrainConfig, train

FT = TrainConfig(epochs=10)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(digits):
    return train(build_model(ModelConfig(kwargs={"width": 8})), digits, FT)[0]


@pytest.fixture(scope="module")
def hostile_onnx(trained, digits, tmp_path_factory):
    """Same function, quantization-hostile: hidden unit 0 of the first Linear is scaled up 1000x
    and its outgoing weights down 1000x (ReLU commutes with positive scaling). Per-tensor int8 of
    that activation then rounds every other unit to zero."""
    model = copy.deepcopy(trained)
    with torch.no_grad():
        fc1, fc2 = model.classifier[1], model.classifier[3]
        fc1.weight[0] *= 1000
        fc1.bias[0] *= 1000
        fc2.weight[:, 0] /= 1000
    return export_onnx(model, digits.x_test, tmp_path_factory.mktemp("hostile") / "fp32.onnx")


def test_quant_fallback_repairs_hostile_layer(hostile_onnx, digits, tmp_path):
    budget = SearchBudget(max_drop=0.01, objective="bytes")
    report = search_quantization(hostile_onnx, digits.x_train[:128], digits.x_test, digits.y_test, budget, tmp_path,
                                 scheme=QuantizeScheme(per_channel=False), measure_latency=False)
    acc = {c.name: c.accuracy for c in report.candidates}
    # Measured: fp32 0.98, all-int8 0.21, hostile Gemm unit in fp32 0.98.
    assert acc["int8"] < 0.5
    assert report.met and acc[report.best] >= report.baseline_accuracy - 0.01
    assert report.reverted[0]["unit"] == "linear" and "node_linear" in report.reverted[0]["nodes"]
    assert [t["step"] for t in report.tried][:2] == ["int8", "rank"]
    saved = json.loads((tmp_path / "search_quant.json").read_text())
    assert saved["best"] == report.best and (tmp_path / "best.onnx").stat().st_size > 0
    assert (tmp_path / "pareto_quant_bytes.png").read_bytes()[:4] == b"\x89PNG"


def test_quant_budget_not_met_is_best_effort(hostile_onnx, digits, tmp_path):
    report = search_quantization(hostile_onnx, digits.x_train[:128], digits.x_test, digits.y_test,
                                 SearchBudget(max_drop=0.0), tmp_path, scheme=QuantizeScheme(per_channel=False), max_fallback=0)
    # Compressed: int8 and its fp32-stem twin (digits' 1-channel first conv); equal accuracy, int8 is smaller.
    assert [c.name for c in report.candidates] == ["fp32", "int8", "int8-fp32stem"]
    assert not report.met and report.best == "int8"
    assert (tmp_path / "best.onnx").is_file()
    assert all(c.latency_ms is not None and c.latency_ms > 0 for c in report.candidates)
    assert (tmp_path / "pareto_quant_latency.png").is_file()


def test_int8_weights_candidate_competes_when_asked_and_is_not_an_int8_variant(trained, digits, tmp_path):
    """fp32 compute with int8-stored weights: about int8's bytes at fp32's accuracy, weighed beside the
    int8 variants; it never hides the finding that int8 itself does not pay."""
    from toolchain.search.quant import _compare_with_fp32

    onnx_path = export_onnx(trained, digits.x_test, tmp_path / "fp32.onnx")
    report = search_quantization(onnx_path, digits.x_train[:128], digits.x_test, digits.y_test,
                                 SearchBudget(max_drop=0.01, objective="bytes"), tmp_path / "s", int8_weights=True,
                                 measure_latency=False)
    by_name = {c.name: c for c in report.candidates}
    w8, fp32 = by_name["fp32-int8weights"], by_name["fp32"]
    assert w8.detail["fp32_compute"] and w8.detail["weights_int8"] >= 3  # conv(s) and both Linear layers
    assert w8.bytes < 0.35 * fp32.bytes and abs(w8.accuracy - fp32.accuracy) <= 0.01 and w8.meets_budget
    plain = search_quantization(onnx_path, digits.x_train[:128], digits.x_test, digits.y_test,
                                SearchBudget(max_drop=0.01), tmp_path / "p", measure_latency=False)
    assert "fp32-int8weights" not in {c.name for c in plain.candidates}  # off by default

    # latency objective: int8 slower than fp32, int8 weights as fast as fp32 -> still flagged
    for c in report.candidates:
        c.latency_ms = {"fp32": 1.0, "fp32-int8weights": 1.0}.get(c.name, 1.5)
    _compare_with_fp32(report, w8, "latency")
    assert report.int8_slower_than_fp32 and report.speedup_vs_fp32 == 1.0


def test_bisection_finds_largest_amount_within_budget(trained, digits, tmp_path):
    budget = SearchBudget(max_drop=0.02, objective="bytes")
    report = search_prune_amount(trained, digits, budget, tmp_path, prune_cfg=PruneConfig(kind="structured",
                                 finetune_epochs=2), train_cfg=FT, hi=0.9, iterations=3, measure_latency=False)
    tried = {t["amount"]: t["meets_budget"] for t in report.tried}
    assert list(tried)[:2] == [0.9, 0.45]  # hi first, then halves
    best_amount = next(c.detail["amount"] for c in report.candidates if c.name == report.best)
    assert report.met and tried[best_amount]
    # Largest feasible among tried, and bracketed: every larger amount tried broke the budget.
    assert best_amount == max(a for a, ok in tried.items() if ok)
    assert all(not ok for a, ok in tried.items() if a > best_amount)
    assert {r["amount"] for r in report.reverted} == {a for a, ok in tried.items() if not ok}
    assert (tmp_path / "best" / "plan.json").is_file() and (tmp_path / "pareto_prune_bytes.png").is_file()
    sizes = {c.name: c.bytes for c in report.candidates}
    assert sizes[report.best] < 0.8 * sizes["baseline"]


def test_sweep_builds_every_amount_and_keeps_the_best_that_meets_the_budget(trained, digits, tmp_path):
    budget = SearchBudget(max_drop=0.02, objective="bytes")
    report = search_prune_amount(trained, digits, budget, tmp_path, prune_cfg=PruneConfig(kind="structured",
                                 finetune_epochs=2), train_cfg=FT, hi=0.8, sweep=4, measure_latency=False)
    assert report.strategy == "sweep" and report.reverted == []
    assert [t["amount"] for t in report.tried] == [0.2, 0.4, 0.6, 0.8]  # all of them, whatever the outcomes
    by_amount = {c.detail["amount"]: c for c in report.candidates if not c.baseline}
    feasible = [c for c in by_amount.values() if c.accuracy >= report.min_accuracy]
    assert feasible and report.met and {c.name for c in feasible} == {c.name for c in by_amount.values() if c.meets_budget}
    assert report.best == min(feasible, key=lambda c: c.bytes).name  # not assumed to be the largest amount
    assert by_amount[0.8].bytes < by_amount[0.2].bytes < report.candidates[0].bytes  # more pruned, fewer bytes
    assert (tmp_path / "best" / "model.onnx").read_bytes() == (tmp_path / report.best_path).read_bytes()


class _SpyPool:
    """The local process pool, recording which process ran each task."""

    def __init__(self, workers: int):
        from toolchain.executor.local import LocalExecutor

        self.pool, self.workers, self.name, self.pids = LocalExecutor(workers), workers, "local", {}

    def __getattr__(self, attr):
        return getattr(self.pool, attr)

    def collect(self, handle):
        result = self.pool.collect(handle)
        self.pids[len(self.pids)] = result["host"]["pid"]
        return result


def _comparable(report) -> dict:
    doc = report.to_dict()
    for step in doc["tried"]:
        step.pop("seconds", None)  # the rank step's own duration
    return doc


def test_parallel_quant_search_is_the_sequential_one(hostile_onnx, digits, tmp_path):
    """Probes, the fallback chain (scored ahead speculatively) and the stem flip as tasks on 2
    worker processes: the same report, the same bytes in every candidate file, nothing extra."""
    import hashlib
    import os

    def files(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.onnx"))}

    kw = {"scheme": QuantizeScheme(per_channel=False), "measure_latency": False}
    budget = SearchBudget(max_drop=0.01, objective="bytes")
    x_cal = digits.x_train[:128]
    seq = search_quantization(hostile_onnx, x_cal, digits.x_test, digits.y_test, budget, tmp_path / "seq",
                              cache_dir=tmp_path / "cache-seq", **kw)
    pool = _SpyPool(2)
    try:
        par = search_quantization(hostile_onnx, x_cal, digits.x_test, digits.y_test, budget, tmp_path / "par",
                                  executor=pool, cache_dir=tmp_path / "cache-par", **kw)
    finally:
        pool.close()
    assert _comparable(par) == _comparable(seq)
    assert files(tmp_path / "par") == files(tmp_path / "seq")  # best.onnx and every candidate, byte for byte
    assert seq.reverted and len(seq.tried[1]["ranking"]) >= 4  # probes and a fallback did run
    assert set(pool.pids.values()) - {os.getpid()}  # in worker processes
    # One speculative variant (the all-int8 model's stem flip, scored beside it) was scored (a cache
    # entry) but never became a candidate: the fallback that repaired the model had its flip scored beside it.
    entries = list((tmp_path / "cache-par" / "search-variants").iterdir())
    variants = [p for p in entries if not p.name.startswith(("pre-", "ranges-"))]
    qdq = [c for c in par.candidates if not c.baseline]
    assert len(variants) == len(qdq) + 1 and [c.name for c in qdq][-1].endswith("stem")
    assert len([p for p in entries if p.name.startswith("ranges-")]) == 1  # calibrated once


def test_variants_quantized_from_the_searchs_ranges_are_those_of_their_own_calibration(hostile_onnx, digits, tmp_path):
    """Calibration runs once per search: a variant quantized from the published ranges has the bytes
    of one calibrated for itself, whatever it excludes and whatever the stem setting."""
    import hashlib

    from toolchain.search import tasks as T
    from toolchain.search.quant import fallback_units

    x_cal = digits.x_train[:128]
    pre = T.preprocessed(hostile_onnx, tmp_path / "cache")
    units = fallback_units(pre)
    for scheme in (QuantizeScheme(per_channel=False, activation_type="uint8"), QuantizeScheme(fp32_stem=True)):
        ranges = T.calibration_ranges(pre, x_cal, scheme, tmp_path / "cache")
        assert ranges is not None and T.calibration_ranges(pre, x_cal, scheme, tmp_path / "cache") == ranges
        for exclude in ([], units[0]["nodes"], units[-1]["nodes"] + units[1]["nodes"]):
            own = T.quantize_static_to(pre, tmp_path / "own.onnx", x_cal, exclude, scheme)
            shared = T.quantize_static_to(pre, tmp_path / "shared.onnx", x_cal, exclude, scheme, ranges)
            assert hashlib.sha256(own.read_bytes()).digest() == hashlib.sha256(shared.read_bytes()).digest()
