"""How much faster does the tiny-bert encoder run after ORT's transformer fusion and int8?

Builds the zoo's tiny-bert recipe (models/tiny-bert.toml: trained on token_patterns, exported with
input_ids + attention_mask) and, with `--configs`, wider variants of it, through edgeopt's own
cached stages, then times every form side by side against the *unfused* ORT fp32 export:

- fp32 unfused: the exported graph as cpu-server converts it (the reference of every ratio)
- fp32 fused: ORT's transformer optimizer only (stages/transformer_fusion.py)
- int8 qdq fused / int8 dynamic fused: cpu-server's [quantize] scheme, format QDQ or dynamic,
  fused first: the two candidates cpu-server's ship = "fastest" weighs (scheme_candidates "format")
- int8 dynamic unfused: fuse_transformer = false, to show what fusion adds to int8

1 intra-op thread, batch 1, sequences of the recipe's length; `--rounds` interleaved rounds
(candidate order rotated per round), the ratio per round is fp32 p50 / form p50 in that round,
reported as the median with min-max. Accuracy: top-1 on the held-out split (600 sequences).

Usage: python benchmarks/transformer.py [--configs zoo,wide] [--rounds 7] [--runs 300] [--smoke]
Writes results/transformer.{json,md}. The machine is shared: say so when reporting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# Wider variants of the zoo recipe: (model kwargs, data kwargs, train overrides).
CONFIGS = {
    "zoo": ({}, {}, {}),
    "wide": ({"hidden": 128, "vocab": 256, "max_length": 64}, {"length": 64, "vocab": 256}, {"epochs": 6}),
}
FORMS = ("fp32 unfused", "fp32 fused", "int8 qdq fused", "int8 dynamic fused", "int8 dynamic unfused")
GOAL = 2.0  # over unfused ORT fp32, within 1 point of its accuracy


def recipe_for(config: str, smoke: bool):
    from toolchain.config.recipe import load_recipe

    base = load_recipe(ROOT / "models" / "tiny-bert.toml")
    model_kw, data_kw, train_kw = CONFIGS[config]
    if smoke:  # proves the script runs: a model too small and too briefly trained to mean anything
        data_kw, train_kw = {**data_kw, "samples": 400}, {**train_kw, "epochs": 1}
    return base.model_copy(
        update={
            "name": f"tiny-bert-{config}",
            "model": base.model.model_copy(update={"kwargs": {**base.model.kwargs, **model_kw}}),
            "data": base.data.model_copy(update={"kwargs": {**base.data.kwargs, **data_kw}}),
            "train": base.train.model_copy(update=train_kw),
        }
    )


def build_forms(recipe, cache_dir: Path, work: Path) -> tuple[dict[str, Path], Any, dict[str, Any]]:
    """form -> artifact path (converted like cpu-server's), the data set, and the fusion records."""
    from toolchain.config.target import load_target
    from toolchain.pipeline import steps
    from toolchain.pipeline.build_target import convert_config
    from toolchain.pipeline.cache import StageCache
    from toolchain.stages.convert import convert
    from toolchain.stages.quantize import QuantizeConfig
    from toolchain.stages.transformer_fusion import fuse_transformer

    profile = load_target("cpu-server")
    cache, ccfg = StageCache(cache_dir), convert_config(profile)
    data = steps.dataset(recipe)
    trained = steps.train(cache, recipe, data)
    exported = steps.export(cache, recipe, data, trained, label="export[fp32]")
    paths = {
        "fp32 unfused": steps.artifact_path(steps.convert(cache, ccfg, exported, {}, label="convert[fp32]"))
    }
    fusion = {"fp32 fused": fuse_transformer(steps.artifact_path(exported), work / "fused.onnx", True)}
    (work / "fused").mkdir(exist_ok=True)
    paths["fp32 fused"] = work / "fused" / convert(work / "fused.onnx", ccfg, work / "fused")["artifact"]
    for form, update in (
        ("int8 qdq fused", {"format": "qdq"}),
        ("int8 dynamic fused", {"format": "dynamic"}),
        ("int8 dynamic unfused", {"format": "dynamic", "fuse_transformer": False}),
    ):
        scheme = profile.quantize.model_copy(update=update)
        q = steps.quantize(
            cache, QuantizeConfig(scheme=scheme), data, exported, {}, label=f"quantize[{form}]"
        )
        fusion[form] = q.record["transformer_fusion"]
        paths[form] = steps.artifact_path(steps.convert(cache, ccfg, q, {}, label=f"convert[{form}]"))
    return paths, data, fusion


def per_round_p50(
    sessions: dict[str, Any], feed: dict, rounds: int, runs: int, warmup: int = 30
) -> dict[str, list[float]]:
    """Each round times every session `runs` times, order rotated per round; p50 ms per round."""
    names = list(sessions)
    for name in names:
        for _ in range(warmup):
            sessions[name].run(None, feed)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                sessions[name].run(None, feed)
                times.append((time.perf_counter() - start) * 1e3)
            out[name].append(float(np.median(times)))
    return out


def ratio_cells(p50s: dict[str, list[float]], reference: str) -> dict[str, dict[str, float]]:
    """Per form: median p50 and fp32/form ratio per round as median, min, max."""
    out = {}
    for name, rounds in p50s.items():
        ratios = [ref / mine for ref, mine in zip(p50s[reference], rounds)]
        out[name] = {
            "p50_ms": statistics.median(rounds),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
        }
    return out


def measure(config: str, args, cache_dir: Path) -> dict[str, Any]:
    from toolchain.bench.session import load_session, predict
    from toolchain.config.target import load_target

    recipe = recipe_for(config, args.smoke)
    runtime = load_target("cpu-server").runtime.model_copy(
        update={"intra_op_threads": 1, "inter_op_threads": 1}
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths, data, fusion = build_forms(recipe, cache_dir, Path(tmp))
        sessions = {form: load_session(paths[form], runtime) for form in FORMS}
        accuracy = {
            form: float((predict(s, data.x_test).argmax(1) == data.y_test).mean())
            for form, s in sessions.items()
        }
        sizes = {form: paths[form].stat().st_size for form in FORMS}
        feed = data.x_test.at_batch(1)
        cells = ratio_cells(per_round_p50(sessions, feed, args.rounds, args.runs), "fp32 unfused")
    for form in FORMS:
        cells[form].update(
            accuracy=accuracy[form],
            bytes=sizes[form],
            accuracy_drop_pt=100 * (accuracy["fp32 unfused"] - accuracy[form]),
        )
    return {
        "model": dict(recipe.model.kwargs),
        "sequence_length": int(feed["input_ids"].shape[1]),
        "forms": cells,
        "fusion": fusion,
    }


def goal_met(res: dict[str, Any]) -> dict[str, Any]:
    """The best int8 form within 1 point of fp32, and whether it reaches GOAL."""
    ok = {f: c for f, c in res["forms"].items() if f.startswith("int8") and c["accuracy_drop_pt"] <= 1.0}
    if not ok:
        return {"best": None, "met": False}
    best = max(ok, key=lambda f: ok[f]["ratio"])
    return {"best": best, "ratio": ok[best]["ratio"], "met": ok[best]["ratio"] >= GOAL}


def write_markdown(doc: dict[str, Any], dest: Path) -> None:
    host = doc["host"]
    lines = [
        "# Transformer encoder: ORT transformer fusion and int8 vs unfused ORT fp32",
        "",
        f"CPU: {host.get('cpu')} ({host.get('machine')}, ISA {', '.join(host.get('isa', []))}); onnxruntime {doc['onnxruntime']}. "
        f"1 intra-op thread, batch 1, {doc['rounds']} interleaved rounds of {doc['runs']} runs (order rotated per round); "
        "ratio = unfused ORT fp32 p50 / form p50 in the same round, median (min-max). "
        "The machine was shared with other jobs while this ran: absolute times are noisy, ratios less so."
        + (" SMOKE RUN (1 epoch, 400 samples): proves the script, not the goal." if doc["smoke"] else ""),
        "",
    ]
    for config, res in doc["configs"].items():
        g = res["goal"]
        lines += [
            f"## {config}: tiny_bert {res['model']}, sequence length {res['sequence_length']}",
            "",
            "| form | p50 ms | vs unfused fp32 | bytes | accuracy | drop (pt) |",
            "|---|---|---|---|---|---|",
        ]
        for form, c in res["forms"].items():
            lines.append(
                f"| {form} | {c['p50_ms']:.4f} | {c['ratio']:.2f}x ({c['ratio_min']:.2f}-{c['ratio_max']:.2f}) | "
                f"{c['bytes']:,} | {100 * c['accuracy']:.2f}% | {c['accuracy_drop_pt']:+.2f} |"
            )
        fused = res["fusion"]["fp32 fused"]
        lines += [
            "",
            "Fused ops: "
            + (
                ", ".join(f"{k} {v}" for k, v in fused.get("fused_ops", {}).items())
                if fused.get("applied")
                else f"none ({fused.get('reason')})"
            ),
            "",
            f"Goal >= {GOAL}x within 1 pt: "
            + (
                f"{'met' if g['met'] else 'NOT met'} by {g['best']} at {g['ratio']:.2f}x"
                if g["best"]
                else "no int8 form within 1 pt"
            ),
            "",
        ]
    dest.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="zoo,wide")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument(
        "--smoke", action="store_true", help="1 epoch on 400 samples, few runs: checks the script"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgeopt-transformer-bench"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    import onnxruntime
    import torch

    from toolchain.hostinfo import host_info

    torch.set_num_threads(1)  # training too: the benchmark must not contend with itself
    configs = {}
    for config in args.configs.split(","):
        res = measure(config, args, args.cache / (f"smoke-{config}" if args.smoke else config))
        res["goal"] = goal_met(res)
        configs[config] = res
    doc = {
        "host": host_info(),
        "onnxruntime": onnxruntime.__version__,
        "rounds": args.rounds,
        "runs": args.runs,
        "smoke": args.smoke,
        "configs": configs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transformer.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_markdown(doc, args.out / "transformer.md")
    print((args.out / "transformer.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
