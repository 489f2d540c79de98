"""Fidelity vs fp32: per output and per slice, a default floor without labels, and gated like a budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from toolchain.bench.fidelity import SQNR_CEILING_DB, compare_outputs, feature_axis, output_fidelity, sqnr_db
from toolchain.config.budgets import DEFAULT_MIN_SQNR_DB, Budgets, evaluate, with_default_fidelity


def _detector_head(rng, anchors=300, classes=3):
    """[1, 4 + classes, anchors]: box pixels (0..640) concatenated with sigmoid scores (0..1)."""
    boxes = rng.uniform(0, 640, (1, 4, anchors))
    scores = 1 / (1 + np.exp(-rng.normal(-1, 1, (1, classes, anchors))))
    return np.concatenate([boxes, scores], axis=1).astype(np.float32)


def test_zeroed_scores_hide_in_the_whole_output_but_not_in_its_slices():
    ref = _detector_head(np.random.default_rng(0))
    broken = ref.copy()
    broken[:, 4:] = 0.0  # what one per-tensor int8 scale over boxes and scores did to every score
    fid = output_fidelity(ref, broken)
    assert fid["sqnr_db"] > 40  # the boxes carry nearly all the energy
    assert fid["worst_slice"]["axis"] == 1 and fid["worst_slice"]["index"] >= 4
    assert fid["min_sqnr_db"] == pytest.approx(0.0, abs=1e-9)  # every score gone: noise = signal
    assert fid["min_sqnr_db"] < DEFAULT_MIN_SQNR_DB


def test_small_uniform_noise_passes_everywhere():
    rng = np.random.default_rng(1)
    ref = _detector_head(rng)
    noisy = ref * (1 + rng.normal(0, 1e-3, ref.shape)).astype(np.float32)  # 0.1% relative: ~60 dB
    fid = output_fidelity(ref, noisy)
    assert 55 < fid["min_sqnr_db"] <= fid["sqnr_db"] + 10 and fid["cosine"] > 0.9999


def test_edge_cases_are_numbers_json_can_hold():
    ref = np.random.default_rng(2).standard_normal((8, 10)).astype(np.float32)
    assert sqnr_db(ref, ref) == SQNR_CEILING_DB
    assert output_fidelity(ref, ref)["top1_agreement"] == 1.0 and output_fidelity(ref, ref)["top5_agreement"] == 1.0
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert output_fidelity(ref, nan)["min_sqnr_db"] == -SQNR_CEILING_DB
    ids = np.array([[1, 2], [3, 4]], dtype=np.int64)
    assert output_fidelity(ids, ids + np.array([[0, 0], [0, 1]]))["exact_match"] == 0.75
    assert output_fidelity(ref, ref[:4])["error"].startswith("shape")
    doc = compare_outputs({"logits": ref, "ids": ids}, {"logits": ref * 1.01, "ids": ids})
    assert doc["worst_output"] == "logits" and doc["min_sqnr_db"] == pytest.approx(40.0, abs=0.05)
    json.dumps(doc, allow_nan=False)  # no NaN or inf anywhere


def test_feature_axis_is_the_smallest_non_batch_axis():
    assert feature_axis((1, 84, 8400)) == 1 and feature_axis((1, 8400, 84)) == 2
    assert feature_axis((32, 10)) == 1 and feature_axis((2, 3, 224, 224)) == 1
    assert feature_axis((5,)) is None and feature_axis((4, 1)) is None


def test_min_budgets_are_floors_and_the_default_applies_only_without_labels():
    budgets = Budgets(min_sqnr_db=25.0, max_bytes=100)
    verdicts = evaluate(budgets, {"min_sqnr_db": 30.0, "bytes": 50})
    assert verdicts["min_sqnr_db"].passed and verdicts["max_bytes"].passed
    assert not evaluate(budgets, {"min_sqnr_db": 24.9, "bytes": 50})["min_sqnr_db"].passed
    assert not evaluate(budgets, {"bytes": 50})["min_sqnr_db"].passed  # not measured never passes
    assert with_default_fidelity(Budgets(), labelled=False).min_sqnr_db == DEFAULT_MIN_SQNR_DB
    assert with_default_fidelity(Budgets(), labelled=True).min_sqnr_db is None
    assert with_default_fidelity(Budgets(min_sqnr_db=10.0), labelled=False).min_sqnr_db == 10.0
