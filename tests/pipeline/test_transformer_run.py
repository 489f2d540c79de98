"""`edgeopt run` on a reduced tiny-bert recipe for cpu-server: both int8 forms of a transformer (QDQ
and dynamic, each fused first) are built, measured and weighed; the report says what was fused."""

from __future__ import annotations

import pytest

from toolchain.config.recipe import Recipe
from toolchain.pipeline.report import render_target
from toolchain.pipeline.run import RunOptions, run_pipeline
from toolchain.pipeline.ship import pick_fastest

pytestmark = pytest.mark.slow
DYNAMIC = "int8[format=dynamic]"


def _recipe(target: str) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "tiny-bert-fast",
            "model": {"name": "tiny_bert", "kwargs": {"hidden": 32, "heads": 2}},
            "data": {"name": "token_patterns", "kwargs": {"samples": 1200}},
            "train": {"epochs": 3, "batch_size": 32, "lr": 3e-3},
            "prune": {"kind": "none"},
            "export": {"exporter": "torchscript"},
            "targets": [target],
            "budgets": {
                "all": {"max_size_ratio": 0.6}
            },  # the QDQ form keeps fp32 embedding tables (0.44x measured)
        }
    )


def test_tiny_bert_weighs_qdq_and_dynamic_after_fusion(fast_targets_dir, tmp_path, one_torch_thread):
    recipe = _recipe("cpu-server")
    result = run_pipeline(recipe, RunOptions(out_dir=tmp_path / "run", targets_dir=fast_targets_dir))
    target = result.targets["cpu-server"]
    m = target.metrics
    weighed = m["selection"]["candidates"]
    assert {"int8", DYNAMIC} <= set(weighed) and "int8[fp32_stem=false]" not in weighed  # no conv stem here
    assert weighed["int8"]["scheme"]["format"] == "qdq" and weighed[DYNAMIC]["scheme"]["format"] == "dynamic"
    assert weighed["int8"]["scheme"]["fused"] is True and weighed[DYNAMIC]["scheme"]["fused"] is True
    for label in ("int8", DYNAMIC):
        fused = m["transformer_fusion"][label]
        assert fused["applied"] is True and fused["fused_ops"]["Attention"] == 2
    assert m["shipped"] == pick_fastest(weighed, m["selection"]["tie"])
    assert (
        m["accuracy"] >= 0.6 and abs(m["accuracy_drop"]) <= 0.05
    )  # chance is 0.25; measured 0.83 in test_zoo
    text = render_target("cpu-server", target)
    fusion_line = next(line for line in text.splitlines() if "transformer fusion (int8):" in line)
    assert "Attention 2" in fusion_line and "BiasGelu 2" in fusion_line  # op order is the cache's
    assert "SkipLayerNormalization" not in fusion_line  # left as Add + LayerNormalization: faster on ORT's CPU EP
    assert f"candidate {DYNAMIC}: dynamic" in text and "transformer-fused" in text


def test_tiny_bert_runs_on_a_fixed_shape_target(fast_targets_dir, tmp_path, one_torch_thread):
    """Two inputs [batch, sequence] on arm-mobile: the .ort fixes the batch at 1, not the sequence,
    and fidelity, accuracy and the package's golden outputs feed it one sample at a time."""
    import onnxruntime as ort

    result = run_pipeline(_recipe("arm-mobile"), RunOptions(out_dir=tmp_path / "run", targets_dir=fast_targets_dir))
    target = result.targets["arm-mobile"]
    m = target.metrics
    sess = ort.InferenceSession(str(target.artifact), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape[0], isinstance(i.shape[1], str)) for i in sess.get_inputs()] == [
        ("input_ids", 1, True), ("attention_mask", 1, True)]
    assert m["accuracy"] >= 0.6 and abs(m["accuracy_drop"]) <= 0.05
    assert m["min_sqnr_db"] >= 15.0
    from toolchain.package.verify import verify_package

    checks = {c.name: c.status for c in verify_package(target.package).checks}
    assert checks["smoke run"] == "pass" and "fail" not in checks.values()  # golden outputs reproduce
