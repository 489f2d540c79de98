"""What does differentially private training (DP-SGD, [train.privacy]) cost in accuracy and time?

For the zoo's digits CNN (models/digits-cnn.toml) and breast-cancer MLP (models/tabular-mlp.toml):
the bundled non-private recipe against DP-SGD at epsilon = 8 and 3 (delta = 1e-5, one budget over
training and the fine-tune after pruning), with the DP schedules in DP_SCHEDULES. Accuracy is held-out
top-1 of the trained model, of the pruned fp32 model (what is quantized), and of the int8 model
(cpu-server quantization of the pruned model, run by ONNX Runtime). Training time (train + prune's
fine-tune, the stages DP-SGD runs in) is timed interleaved: each repeat trains every setting once,
in turn, so load from other processes hits all of them alike.

Usage: python benchmarks/privacy.py [--models digits-cnn tabular-mlp] [--repeats 3] [--results DIR]
Writes results/privacy.{json,md}; stage caches under runs/benchmarks/privacy/.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECIPES = {
    "digits-cnn": ROOT / "models" / "digits-cnn.toml",
    "tabular-mlp": ROOT / "models" / "tabular-mlp.toml",
}
EPSILONS = (8.0, 3.0)
DELTA = 1e-5
TARGET = "cpu-server"
# What DP-SGD needs, tuned within the budgets: larger batches (the noise is averaged over the
# batch: sigma * C / batch), a higher learning rate (clipped gradients are smaller), and a
# per-sample clipping norm near the typical gradient norm. Same schedule at both epsilons.
DP_SCHEDULES = {
    "digits-cnn": {
        "train": {"epochs": 20, "batch_size": 256, "lr": 0.01},
        "prune": {"finetune_epochs": 2, "finetune_lr": 0.001},
        "max_grad_norm": 1.0,
    },
    "tabular-mlp": {
        "train": {"epochs": 20, "batch_size": 64, "lr": 0.01},
        "prune": {"finetune_epochs": 5, "finetune_lr": 0.005},
        "max_grad_norm": 1.0,
    },
}
GOALS = {"digits-cnn": 0.90, "tabular-mlp": 0.93}  # at epsilon = 8 (digits) / both (tabular), fp32
INT8_GOAL_PT = 1.0
TIME_GOAL = 3.0


def recipe_for(name: str, epsilon: float | None):
    """The bundled recipe (epsilon None) or its DP variant."""
    from toolchain.config.recipe import load_recipe
    from toolchain.config.stages import PrivacyConfig

    base = load_recipe(RECIPES[name])
    if epsilon is None:
        return base
    dp = DP_SCHEDULES[name]
    privacy = PrivacyConfig(epsilon=epsilon, delta=DELTA, max_grad_norm=dp["max_grad_norm"])
    return base.model_copy(
        update={
            "train": base.train.model_copy(update={**dp["train"], "privacy": privacy}),
            "prune": base.prune.model_copy(update=dp["prune"]),
        }
    )


def accuracies(recipe, cache_dir: Path) -> dict:
    """Held-out accuracy trained / pruned fp32 / int8, and the spent budget."""
    from toolchain.config.target import load_target
    from toolchain.pipeline import steps
    from toolchain.pipeline.build_target import quantize_config
    from toolchain.pipeline.cache import StageCache
    from toolchain.search.measure import onnx_accuracy

    cache = StageCache(cache_dir, log=lambda _m: None)
    data = steps.dataset(recipe)
    trained = steps.train(cache, recipe, data)
    pruned = steps.prune(cache, recipe, data, trained)
    onnx = steps.export(cache, recipe, data, pruned, label="export[pruned]")
    qcfg = quantize_config(load_target(TARGET), recipe.quantize, recipe.train.seed)
    int8 = steps.quantize(cache, qcfg, data, onnx, {}, label="quantize")
    fp32 = onnx_accuracy(steps.artifact_path(onnx), data.x_test, data.y_test)
    row = {
        "trained_accuracy": trained.record["accuracy"],
        "pruned_fp32_accuracy": fp32,
        "int8_accuracy": onnx_accuracy(steps.artifact_path(int8), data.x_test, data.y_test),
        "test_rows": len(data.y_test),
    }
    dp = pruned.record.get("privacy")
    if dp is not None:
        row["privacy"] = {k: v for k, v in dp.items() if k != "history"}
    return row


def train_seconds(recipe) -> float:
    """Wall time of the train and prune stages (training + fine-tune) from an empty cache."""
    from toolchain.pipeline import steps
    from toolchain.pipeline.cache import StageCache

    data = steps.dataset(recipe)
    with tempfile.TemporaryDirectory(prefix="edgeopt-dp-bench-") as tmp:
        cache = StageCache(Path(tmp), log=lambda _m: None)
        started = time.perf_counter()
        steps.prune(cache, recipe, data, steps.train(cache, recipe, data))
        return time.perf_counter() - started


def timings(names: list[str], repeats: int) -> dict:
    settings = [(name, eps) for name in names for eps in (None, EPSILONS[0])]
    seconds: dict[str, list[float]] = {f"{n}/{eps}": [] for n, eps in settings}
    for _ in range(repeats):  # interleaved: one of each per round
        for name, eps in settings:
            seconds[f"{name}/{eps}"].append(train_seconds(recipe_for(name, eps)))
    out = {}
    for name in names:
        plain, dp = seconds[f"{name}/None"], seconds[f"{name}/{EPSILONS[0]}"]
        ratios = [d / p for d, p in zip(dp, plain)]
        out[name] = {
            "non_private_s": plain,
            "dp_s": dp,
            "ratio_per_round": ratios,
            "ratio_median": statistics.median(ratios),
        }
    return out


def render(doc: dict) -> str:
    from toolchain.bench.results import machine_line

    lines = [
        "# Differentially private training (DP-SGD) vs non-private",
        "",
        machine_line(doc["host"], doc["versions"], only=("edgeopt", "torch", "onnxruntime", "opacus")),
        "",
        (
            f"Measured {doc['date']} with `python benchmarks/privacy.py` ({doc['command']}). delta = {DELTA:g}; "
            "one budget over training + the fine-tune after magnitude pruning (RDP accountant). "
            "Non-private rows are the bundled recipes unchanged; DP rows use benchmarks/privacy.py's DP_SCHEDULES. "
            "Accuracy on the recipes' held-out splits (digits 360 images: 0.28 pt each; breast cancer 114 rows: "
            "0.88 pt each). int8 = cpu-server quantization of the pruned model, run by ONNX Runtime."
        ),
        "",
        "| model | training | spent epsilon | noise multiplier | steps | batch | trained | pruned fp32 | int8 | int8 vs fp32 (pt) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        dp = r.get("privacy")
        eps = f"{dp['epsilon']:.3f} (budget {dp['target_epsilon']:g})" if dp else "non-private"
        sigma = f"{dp['noise_multiplier']:.3f}" if dp else "-"
        steps = str(dp["steps"]) if dp else "-"
        lines.append(
            f"| {r['model']} | {'DP-SGD' if dp else 'plain'} | {eps} | {sigma} | {steps} | {r['batch_size']} "
            f"| {100 * r['trained_accuracy']:.2f}% | {100 * r['pruned_fp32_accuracy']:.2f}% "
            f"| {100 * r['int8_accuracy']:.2f}% | {100 * (r['int8_accuracy'] - r['pruned_fp32_accuracy']):+.2f} |"
        )
    lines += [
        "",
        (
            f"Training time (train + fine-tune, seconds; interleaved rounds, one value per round; DP at epsilon = "
            f"{EPSILONS[0]:g}, the schedule above; the machine is shared with other jobs, so single rounds are noisy):"
        ),
        "",
        "| model | non-private (s) | DP-SGD (s) | DP / non-private per round | median ratio | goal <= 3x |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in doc["timing"].items():
        lines.append(
            f"| {name} | {', '.join(f'{s:.1f}' for s in t['non_private_s'])} | {', '.join(f'{s:.1f}' for s in t['dp_s'])} "
            f"| {', '.join(f'{x:.2f}' for x in t['ratio_per_round'])} | {t['ratio_median']:.2f}x "
            f"| {'met' if t['ratio_median'] <= TIME_GOAL else 'NOT met'} |"
        )
    return "\n".join(lines + ["", *NOTES]) + "\n"


NOTES = [
    "Notes:",
    (
        "- digits-cnn has no BatchNorm (two convolutions, two Linear layers), so neither GroupNorm nor "
        "`fix_modules` was needed; its DP schedule trains at batch 256 for 20 + 2 epochs (132 noisy steps) where "
        "the plain recipe trains at batch 64 for 15 + 3 epochs. At batch 128, 15 + 2 epochs, lr 0.003 the same "
        "budget gave 85.8% trained (tuning run, not in the table)."
    ),
    "- int8 changes accuracy by at most one test sample here; a DP model is no harder to quantize.",
    (
        "- The time ratios are not trustworthy on this machine: it was shared with ~6 other jobs, so the same "
        "non-private tabular training took 8.3 to 40.2 s in three rounds. Rerun on a quiet machine with "
        "`python benchmarks/privacy.py --repeats 5` before relying on the 3x verdict."
    ),
]


def main() -> int:
    from toolchain.bench.results import publish
    from toolchain.hostinfo import host_info
    from toolchain.pipeline.cache import library_versions

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    rows = []
    for name in args.models:
        for eps in (None, *EPSILONS):
            recipe = recipe_for(name, eps)
            row = accuracies(recipe, ROOT / "runs" / "benchmarks" / "privacy" / "cache")
            rows.append({"model": name, "epsilon": eps, "batch_size": recipe.train.batch_size, **row})
            print(name, eps, {k: v for k, v in row.items() if k != "privacy"}, flush=True)
    versions = {**library_versions(), "opacus": _opacus_version()}
    command = f"--models {' '.join(args.models)} --repeats {args.repeats}"
    doc = {
        "host": host_info(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "rows": rows,
        "timing": timings(args.models, args.repeats),
    }
    publish(args.results, "privacy", doc, render(doc))
    return 0


def _opacus_version() -> str:
    from importlib import metadata

    return metadata.version("opacus")


if __name__ == "__main__":
    raise SystemExit(main())
