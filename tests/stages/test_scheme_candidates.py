"""Scheme candidates (pipeline/variants.py): a [quantize] choice whose winner depends on the model is
built both ways and weighed by ship = "fastest". A model with an RGB stem gets both fp32_stem
variants measured and named in the report; a model without one gets one int8 form; the ship rule
picks the fastest passing candidate (timings injected, so the choice does not ride on luck)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from test_quantize_stem import _conv_net, _inputs

from toolchain.config.base import to_toml
from toolchain.config.target import QuantizeScheme, load_target
from toolchain.pipeline.ship import choose_artifact, preference
from toolchain.pipeline.variants import scheme_variants, variant_label

STEM_OFF = "int8[fp32_stem=false]"


def _fastest_cpu_server():
    """cpu-server without its ORT uint8 QDQ peer (tests/stages/test_peer_candidate.py covers it)."""
    profile = load_target("cpu-server")
    keys = [k for k in profile.artifact.scheme_candidates if k != "ort_uint8_qdq"]
    return profile.model_copy(update={"artifact": profile.artifact.model_copy(update={"scheme_candidates": keys})})


def test_variants_only_where_the_flip_changes_the_graph():
    profile = _fastest_cpu_server()
    scheme = profile.quantize
    assert profile.artifact.ship == "fastest" and scheme.fp32_stem is True  # the starting point
    with_stem = scheme_variants(profile, scheme, set(), {"stem_convs": ["stem"], "attention_nodes": 0})
    assert list(with_stem) == [STEM_OFF] and with_stem[STEM_OFF].fp32_stem is False
    assert with_stem[STEM_OFF].model_copy(update={"fp32_stem": True}) == scheme  # only the one key differs
    assert scheme_variants(profile, scheme, set(), {"stem_convs": [], "attention_nodes": 0}) == {}
    # the recipe pinned the key: its decision, not flipped
    assert scheme_variants(profile, scheme, {"fp32_stem"}, {"stem_convs": ["stem"]}) == {}
    # attention: QDQ and dynamic MatMul quantization are both built
    transformer = scheme_variants(profile, scheme, set(), {"stem_convs": [], "attention_nodes": 2})
    assert (
        list(transformer) == ["int8[format=dynamic]"]
        and transformer["int8[format=dynamic]"].format == "dynamic"
    )
    # ship = "quantized" or format = "none": nothing to weigh
    quantized = profile.model_copy(
        update={"artifact": profile.artifact.model_copy(update={"ship": "quantized"})}
    )
    assert scheme_variants(quantized, scheme, set(), {"stem_convs": ["stem"]}) == {}
    assert scheme_variants(profile, QuantizeScheme(format="none"), set(), {"stem_convs": ["stem"]}) == {}
    per_channel = profile.model_copy(
        update={"artifact": profile.artifact.model_copy(update={"scheme_candidates": ["per_channel"]})}
    )
    assert list(scheme_variants(per_channel, scheme, set(), {})) == [variant_label("per_channel", False)]


def _row(p50: float, nbytes: int, accuracy: float) -> dict:
    lat = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "std": 0.01, "mean": p50}
    return {
        "bytes": nbytes,
        "latency_ms": {"1": lat},
        "accuracy": accuracy,
        "peak_memory_mb": 20.0,
        "runtime_floor_mb": 16.0,
        "model_memory_mb": 4.0,
    }


def test_ship_rule_weighs_scheme_variants_by_their_numbers():
    profile = _fastest_cpu_server()
    base = {"fp32": _row(0.40, 1_000_000, 0.95), "int8": _row(0.20, 250_000, 0.945)}
    # the all-int8 stem is 25% faster (ResNet-18 at 224 px): it ships, and the reason says by how much
    shipped, selection = choose_artifact(
        {**base, STEM_OFF: _row(0.15, 251_000, 0.944)}, profile, profile.budgets
    )
    assert shipped == STEM_OFF and list(selection["candidates"]) == ["int8", STEM_OFF]
    assert selection["candidates"][STEM_OFF]["selection_p50_ms"] == 0.15
    assert "fastest" in selection["reason"] and "1.33x" in selection["reason"]
    # within ship_tie (5%): the profile's own scheme keeps shipping
    shipped, selection = choose_artifact(
        {**base, STEM_OFF: _row(0.195, 250_000, 0.945)}, profile, profile.budgets
    )
    assert shipped == "int8" and "within 5% in speed" in selection["reason"]
    assert "first in ship order" in selection["reason"]
    # faster but over the accuracy budget (1 point): it does not ship
    worse = {**base, STEM_OFF: _row(0.15, 250_000, 0.92)}
    shipped, selection = choose_artifact(worse, profile, profile.budgets)
    assert shipped == "int8" and selection["candidates"][STEM_OFF]["failed_budgets"] == ["max_accuracy_drop"]
    assert preference(["int8_weights", STEM_OFF, "fp32", "int8", "pruned_fp32"]) == [
        "int8",
        STEM_OFF,
        "pruned_fp32",
        "int8_weights",
        "fp32",
    ]


@pytest.fixture(scope="module")
def quick_cpu_server(fast_targets_dir, tmp_path_factory):
    """cpu-server with its scheme choices and ship rule, a short benchmark and no thread sweep."""
    d = tmp_path_factory.mktemp("targets-quick")
    data = tomllib.loads((fast_targets_dir / "cpu-server.toml").read_text())
    data["benchmark"].update(thread_sweep=[], batch_sizes=[1])
    data["budgets"].update(max_size_ratio=0.9, max_accuracy_drop=0.2, max_peak_memory_mb=2000.0)
    (d / "cpu-server.toml").write_text(to_toml(data))
    return d


def _compress(model_path, in_ch: int, tmp_path, targets_dir):
    from toolchain.compress.run import CompressOptions, compress, compress_document, render_compress

    x = _inputs(in_ch, n=80)
    y = (
        ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        .run(None, {"x": x})[0]
        .argmax(1)
    )
    np.savez(tmp_path / "data.npz", x=x, y=y)
    result = compress(
        CompressOptions(
            model=str(model_path),
            targets=("cpu-server",),
            data=str(tmp_path / "data.npz"),
            out_dir=tmp_path / "out",
            targets_dir=targets_dir,
            calibration_samples=32,
        ),
        warn=lambda _: None,
    )
    return compress_document(result)["targets"]["cpu-server"], render_compress(result)


@pytest.mark.slow
def test_rgb_stem_model_measures_both_stem_variants_and_ships_the_fastest(quick_cpu_server, tmp_path):
    t, text = _compress(_conv_net(3, tmp_path / "rgb.onnx"), 3, tmp_path, quick_cpu_server)
    # the report names both, with their schemes, and why the shipped one won
    assert "candidate int8: qdq uint8/int8, per-channel, fp32 stem (stem)" in text
    assert f"candidate {STEM_OFF}: qdq uint8/int8, per-channel, int8 stem" in text and "  why: " in text
    weighed = t["selection"]["candidates"]
    assert {"int8", STEM_OFF} <= set(weighed) and {"int8", STEM_OFF} <= set(t["candidates"])
    assert (
        weighed["int8"]["scheme"]["fp32_stem_nodes"] == ["stem"]
        and weighed["int8"]["scheme"]["fp32_stem"] is True
    )
    assert (
        weighed[STEM_OFF]["scheme"]["fp32_stem_nodes"] == []
        and weighed[STEM_OFF]["scheme"]["fp32_stem"] is False
    )
    for c in weighed.values():
        assert c["selection_p50_ms"] > 0 and c["bytes"] > 0 and c["min_sqnr_db"] is not None
    # the two files differ (a flip that changed nothing would not have been built)
    assert t["candidates"]["int8"] != t["candidates"][STEM_OFF]
    assert Path(t["candidates"]["int8"]).read_bytes() != Path(t["candidates"][STEM_OFF]).read_bytes()
    # the shipped one is the ship rule's pick on the report's own numbers
    from toolchain.pipeline.ship import pick_fastest

    assert t["shipped"] == pick_fastest(weighed, t["selection"]["tie"]) and t["selection"]["reason"]
    # the package's manifest records the scheme that shipped, not the profile's starting point
    import json
    import zipfile

    with zipfile.ZipFile(t["package"]) as zf:
        quantize = json.loads(zf.read("manifest.json"))["target_profile"]["quantize"]
    shipped_scheme = weighed[t["shipped"]]["scheme"]  # a dict for int8 forms, a word for fp32 forms
    expected = shipped_scheme["fp32_stem"] if isinstance(shipped_scheme, dict) else True  # the profile's
    assert quantize["fp32_stem"] is expected


@pytest.mark.slow
def test_a_model_without_a_stem_gets_one_int8_form(quick_cpu_server, tmp_path):
    t, text = _compress(_conv_net(16, tmp_path / "wide.onnx"), 16, tmp_path, quick_cpu_server)
    assert "fp32_stem=false" not in text
    int8_forms = [label for label in t["candidates"] if label.startswith("int8") and label != "int8_weights"]
    # no stem flip; ORT's own uint8 QDQ (per-tensor) is the only other int8 form
    assert int8_forms == ["int8", "int8[ort_uint8_qdq]"]
    assert t["selection"]["candidates"]["int8"]["scheme"]["fp32_stem_nodes"] == []
