"""benchmarks/privacy.py's recipe variants and rendering, on fixed numbers (the run itself takes minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import privacy as bench


def test_dp_variant_keeps_the_recipe_and_adds_the_budget():
    plain, dp = bench.recipe_for("tabular-mlp", None), bench.recipe_for("tabular-mlp", 3.0)
    assert plain.train.privacy is None
    assert dp.train.privacy.epsilon == 3.0 and dp.train.privacy.delta == bench.DELTA
    assert dp.train.batch_size == bench.DP_SCHEDULES["tabular-mlp"]["train"]["batch_size"]
    assert dp.prune.finetune_epochs == bench.DP_SCHEDULES["tabular-mlp"]["prune"]["finetune_epochs"]
    assert (dp.model, dp.data, dp.prune.amount) == (plain.model, plain.data, plain.prune.amount)


def test_render_states_spent_epsilon_int8_delta_and_time_ratio():
    privacy = {"epsilon": 2.9876, "target_epsilon": 3.0, "noise_multiplier": 1.5, "steps": 200}
    doc = {
        "host": {"cpu": "Test CPU", "cores": 2, "isa": ["avx2"]},
        "versions": {"edgeopt": "0", "torch": "2"},
        "date": "2026-12-02",
        "command": "--models tabular-mlp --repeats 2",
        "rows": [
            {
                "model": "tabular-mlp",
                "batch_size": 64,
                "trained_accuracy": 0.97,
                "pruned_fp32_accuracy": 0.96,
                "int8_accuracy": 0.95,
                "privacy": privacy,
            }
        ],
        "timing": {
            "tabular-mlp": {
                "non_private_s": [1.0, 2.0],
                "dp_s": [2.0, 5.0],
                "ratio_per_round": [2.0, 2.5],
                "ratio_median": 2.25,
            }
        },
    }
    text = bench.render(doc)
    assert "Machine: Test CPU (2 cores, avx2)" in text
    assert (
        "| tabular-mlp | DP-SGD | 2.988 (budget 3) | 1.500 | 200 | 64 | 97.00% | 96.00% | 95.00% | -1.00 |"
        in text
    )
    assert "| tabular-mlp | 1.0, 2.0 | 2.0, 5.0 | 2.00, 2.50 | 2.25x | met |" in text
