"""Which runtime runs the same model fastest? ONNX Runtime and OpenVINO side by side, with the peers.

For MobileNetV2 (models/mobilenet_v2.py, paper width 1.0, 224 px, 1000 classes) and a
ResNet-18-style network (built below: torchvision is not a dependency; He et al. 2016, basic
blocks [2, 2, 2, 2], 7x7 stride-2 stem, max pool, 224 px), random-init weights whose BatchNorm
statistics are set from a few random batches (so activations have realistic scales), exported
by edgeopt's export stage, one process, one thread, batch 1:

- ort-fp32: the fp32 ONNX on ONNX Runtime (level "all"): the reference of every ratio;
- edgeopt-cpu-server (ORT): the file edgeopt's cpu-server profile ships for int8, on ORT with its
  session options (at 1 thread);
- openvino-f32 / openvino-bf16 / edgeopt-openvino-int8: edgeopt's x86-server-openvino files
  (portable: offline optimization "basic") compiled by OpenVINO with the LATENCY hint; bf16 only
  where the CPU has AVX512-BF16 or AMX;
- openvino-int8 (ort-qdq-uint8 graph): OpenVINO on the peer's uint8 QDQ file;
- ort-qdq-default: `onnxruntime.quantization.quantize_static` with its defaults (QDQ, S8S8);
- ort-qdq-uint8: the same with uint8 activations (`activation_type=QUInt8`).

The candidates are timed in interleaved rounds (the order rotates each round, so machine drift
hits all); each round gives every candidate's median and its ratio to ort-fp32's median in the
same round. Reported: the median ratio over rounds and its spread (min-max). Weights are random,
so accuracy cannot be measured; fidelity is the SQNR (dB) of each candidate's logits against
ort-fp32's on held-out random inputs, and top-1 agreement with it.

Usage: python benchmarks/runtimes.py [--rounds N] [--runs N] [--models mobilenet_v2,resnet18] [--smoke]
Writes results/runtimes.{json,md} (with --smoke: labelled as a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
REFERENCE = "ort-fp32"


def resnet18(num_classes: int = 1000):
    """ResNet-18's layout from the zoo's basic block (models/resnet_small.py): 7x7/2 stem, 3x3/2
    max pool, stages of [2, 2, 2, 2] blocks at 64/128/256/512 channels, average pool, Linear."""
    from torch import nn

    from models.resnet_small import BasicBlock

    layers = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512)):
        for i in range(2):
            layers.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


def build(name: str, calib: np.ndarray):
    """The random-init network with BatchNorm running statistics set from `calib` (train-mode
    forward passes, no gradient): untouched BN statistics (mean 0, var 1) let activations grow or
    vanish layer by layer, which no trained network does and which would make SQNR meaningless."""
    import torch

    from models import mobilenet_v2

    torch.manual_seed(0)
    model = mobilenet_v2.build(num_classes=1000, width_mult=1.0) if name == "mobilenet_v2" else resnet18()
    return with_bn_statistics(model, calib)


def with_bn_statistics(model, calib: np.ndarray):
    """`model` in eval mode with its BatchNorm running statistics averaged over `calib` (8 at a time)."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for start in range(0, len(calib), 8):
            model(torch.as_tensor(calib[start : start + 8]))
    return model.eval()


def artifacts(name: str, model, calib: np.ndarray, work: Path) -> dict[str, Path]:
    """Every file the candidates run, built by edgeopt's own stages (and the peers' quantizer)."""
    from toolchain.config.recipe import QuantizeOverrides
    from toolchain.config.stages import ExportConfig
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import convert_config, quantize_config
    from toolchain.stages.convert import convert
    from toolchain.stages.export import export_onnx
    from toolchain.stages.quantize import quantize

    fp32 = work / f"{name}.fp32.onnx"
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(model, calib[:8], ExportConfig(parity_atol=1e-3, parity_samples=4), fp32)
    files = {"fp32": fp32}
    for target in ("cpu-server", "x86-server-openvino"):
        profile = load_target(target)
        for form in ("fp32", "int8"):
            if target == "cpu-server" and form == "fp32":
                continue  # the reference is the plain export on ORT
            src = fp32
            if form == "int8":
                src = work / f"{target}.q.onnx"
                with contextlib.redirect_stdout(sys.stderr):
                    record = quantize(fp32, calib, quantize_config(profile, QuantizeOverrides(), 0), src, {})
                if target == "cpu-server":  # the other int8 forms its ship rule weighs, as `edgeopt run` builds them
                    files.update(scheme_variant_files(profile, record, fp32, calib, work))
            out = work / f"{target}-{form}"
            out.mkdir()
            files[f"{target}/{form}"] = out / convert(src, convert_config(profile), out, {})["artifact"]
    files.update(peer_quantized(fp32, calib, work))
    return files


def scheme_variant_files(profile, record: dict, fp32: Path, calib: np.ndarray, work: Path) -> dict[str, Path]:
    """"<target>/<variant label>" -> file, for each [artifact] scheme_candidates flip `edgeopt run`
    would build for this model (pipeline/variants.py), quantized and converted with the profile."""
    from toolchain.config.recipe import QuantizeOverrides
    from toolchain.pipeline.build_target import convert_config, quantize_config
    from toolchain.pipeline.variants import scheme_variants
    from toolchain.stages.convert import convert
    from toolchain.stages.quantize import quantize

    base = quantize_config(profile, QuantizeOverrides(), 0)
    files = {}
    for i, (label, scheme) in enumerate(scheme_variants(profile, base.scheme, set(), record).items()):
        src, out = work / f"{profile.name}.variant{i}.q.onnx", work / f"{profile.name}-variant{i}"
        with contextlib.redirect_stdout(sys.stderr):
            quantize(fp32, calib, base.model_copy(update={"scheme": scheme}), src, {})
        out.mkdir()
        files[f"{profile.name}/{label}"] = out / convert(src, convert_config(profile), out, {})["artifact"]
    return files


def peer_quantized(fp32: Path, calib: np.ndarray, work: Path) -> dict[str, Path]:
    """ONNX Runtime's quantize_static as its docs show it (defaults), and with uint8 activations."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    out = {"peer/qdq-default": work / "qdq_default.onnx", "peer/qdq-uint8": work / "qdq_uint8.onnx"}
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(str(fp32), str(out["peer/qdq-default"]), Reader())
        quantize_static(
            str(fp32),
            str(out["peer/qdq-uint8"]),
            Reader(),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return out


def candidates(files: dict[str, Path], bf16: bool) -> dict[str, tuple[Path, object]]:
    """label -> (file, RuntimeOptions at 1 thread)."""
    from toolchain.config.target import RuntimeOptions, load_target

    ort = RuntimeOptions(intra_op_threads=1)
    server = load_target("cpu-server").runtime.model_copy(update={"intra_op_threads": 1})
    ov = load_target("x86-server-openvino").runtime.model_copy(update={"intra_op_threads": 1})
    rows = {
        REFERENCE: (files["fp32"], ort),
        "edgeopt-cpu-server (ORT)": (files["cpu-server/int8"], server),
        **{f"edgeopt-cpu-server {key.split('/', 1)[1]} (ORT)": (path, server)
           for key, path in files.items() if key.startswith("cpu-server/int8[")},
        "openvino-f32": (files["x86-server-openvino/fp32"], ov),
        "edgeopt-openvino-int8": (files["x86-server-openvino/int8"], ov),
        "openvino-int8 (ort-qdq-uint8 graph)": (files["peer/qdq-uint8"], ov),
        "ort-qdq-default": (files["peer/qdq-default"], ort),
        "ort-qdq-uint8": (files["peer/qdq-uint8"], ort),
    }
    if bf16:
        rows["openvino-bf16"] = (
            files["x86-server-openvino/fp32"],
            ov.model_copy(update={"inference_precision": "bf16"}),
        )
    return rows


def measure(
    rows: dict[str, tuple[Path, object]],
    x1: np.ndarray,
    evals: np.ndarray,
    rounds: int,
    runs: int,
    warmup: int,
) -> dict[str, dict]:
    """Per candidate: fidelity vs ort-fp32, per-round medians (ms) and ratios vs ort-fp32."""
    from toolchain.bench.fidelity import sqnr_db
    from toolchain.bench.latency import interleaved
    from toolchain.runtime import load_session, runtime_for

    sessions, skipped = {}, {}
    for label, (path, rt) in rows.items():
        try:
            sessions[label] = load_session(path, rt)
        except Exception as err:  # noqa: BLE001 - a candidate an engine cannot compile is reported, not fatal
            skipped[label] = str(err)[:300]
    name = sessions[REFERENCE].get_inputs()[0].name
    ref = np.concatenate(
        [sessions[REFERENCE].run(None, {name: evals[i : i + 1]})[0] for i in range(len(evals))]
    )
    out: dict[str, dict] = {label: {"skipped": why} for label, why in skipped.items()}
    for label, sess in sessions.items():
        got = np.concatenate([sess.run(None, {name: evals[i : i + 1]})[0] for i in range(len(evals))])
        path, rt = rows[label]
        out[label] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "engine": rt.engine,
            "settings": runtime_for(rt).settings(),
            "sqnr_db": sqnr_db(ref, got),
            "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
            "p50_ms_by_round": [],
        }
    labels = list(sessions)
    for r in range(rounds):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        fns = {label: (lambda s=sessions[label]: s.run(None, {name: x1})) for label in order}
        stats = interleaved(fns, warmup=warmup, runs=runs, rounds=1, max_seconds=120)
        for label in labels:
            out[label]["p50_ms_by_round"].append(stats[label].p50)
    for label in labels:
        out[label].update(same_round_ratios(out[REFERENCE]["p50_ms_by_round"], out[label]["p50_ms_by_round"]))
    return out


def same_round_ratios(reference_ms: list[float], candidate_ms: list[float]) -> dict[str, float]:
    """Per round reference / candidate median; their median and spread, and the candidate's median."""
    ratios = [f / c for f, c in zip(reference_ms, candidate_ms, strict=True)]
    return {
        "p50_ms": statistics.median(candidate_ms),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


def run_model(name: str, rounds: int, runs: int, warmup: int, samples: int, bf16: bool) -> dict:
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(samples, 3, 224, 224)).astype(np.float32)
    evals = rng.normal(size=(16, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix=f"runtimes-{name}-") as tmp:
        started = time.time()
        files = artifacts(name, build(name, calib), calib, Path(tmp))
        built = time.time() - started
        result = measure(candidates(files, bf16), evals[:1], evals, rounds, runs, warmup)
    return {"build_seconds": built, "candidates": result}


def render_markdown(doc: dict) -> str:
    host = doc["host"]
    lines = [
        "# Runtimes: ONNX Runtime vs OpenVINO on the same models" + (" (SMOKE RUN)" if doc["smoke"] else ""),
        "",
        *(
            [
                (
                    "**Smoke run**: few rounds and runs on a shared machine, to prove the script works; the numbers are "
                    "not a measurement to quote. Rerun with the full command below on a quiet machine."
                ),
                "",
            ]
            if doc["smoke"]
            else []
        ),
        (
            f"CPU: {host['cpu']} ({host['cores']} cores), ISA flags: {', '.join(host['isa']) or 'none of interest'}; "
            f"bf16 compute: {'yes' if doc['bf16'] else 'no (openvino-bf16 not measured)'}. "
            f"onnxruntime {doc['versions']['onnxruntime']}, openvino {doc['versions']['openvino']}. "
            f"Measured {doc['date']}; 1-minute load average {doc['load_average']['start']:.1f} at the start, "
            f"{doc['load_average']['end']:.1f} at the end (other processes share the cores above "
            f"{host['cores']}). Ratios are same-round, so drift hits both sides."
        ),
        "",
        (
            f"1 thread, batch 1, 224 px, random-init weights (BatchNorm statistics from {doc['samples']} random images; "
            f"the same images calibrate every int8 form). {doc['rounds']} interleaved rounds x {doc['runs']} runs; "
            "ratio = ort-fp32 median / candidate median in the same round, median over rounds (min-max). "
            "SQNR and top-1 agreement: logits vs ort-fp32 on 16 held-out random images."
        ),
        "",
        f"Command: `{doc['command']}`",
        "",
    ]
    for model, res in doc["models"].items():
        lines += [
            f"## {model}",
            "",
            "| candidate | engine | bytes | p50 ms | speedup vs ORT fp32 (min-max) | SQNR dB | top-1 agreement |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, r in sorted(res["candidates"].items(), key=lambda kv: -kv[1].get("ratio_median", 0)):
            if "skipped" in r:
                lines.append(f"| {label} | skipped: {r['skipped']} | | | | | |")
                continue
            lines.append(
                f"| {label} | {r['engine']} | {r['bytes']:,} | {r['p50_ms']:.2f} | {r['ratio_median']:.2f}x "
                f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {'reference' if label == REFERENCE else format(r['sqnr_db'], '.1f')} | {r['top1_agreement']:.0%} |"
            )
        lines += ["", edgeopt_pick(res["candidates"]), ""]
    lines += [
        (
            "OpenVINO settings: `PERFORMANCE_HINT=LATENCY`, `INFERENCE_NUM_THREADS=1`, `INFERENCE_PRECISION_HINT` as named; "
            'its files are the x86-server-openvino profile\'s (offline optimization "basic": portable QDQ). '
            "edgeopt-cpu-server's files are the cpu-server profile's (offline \"extended\"; its own scheme with the fp32 stem, and the scheme candidates `edgeopt run` builds for the model), which OpenVINO cannot load."
        ),
        "",
    ]
    return "\n".join(lines)


def edgeopt_pick(rows: dict[str, dict]) -> str:
    """Which of cpu-server's int8 forms its ship rule would take (the fastest; within 5% the rule
    prefers the first in its order, so this line names the fastest and the tie)."""
    mine = {label: r for label, r in rows.items() if label.startswith("edgeopt-cpu-server") and "skipped" not in r}
    if not mine:
        return ""
    best = max(mine, key=lambda label: mine[label]["ratio_median"])
    tied = [label for label, r in mine.items() if r["p50_ms"] <= 1.05 * mine[best]["p50_ms"] and label != best]
    return (f"edgeopt cpu-server weighs {len(mine)} int8 form(s) here (`ship = \"fastest\"`): fastest {best} at "
            f"{mine[best]['ratio_median']:.2f}x" + (f"; within the 5% tie: {', '.join(tied)}" if tied else "") + ".")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet18")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per candidate per round")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs per candidate per round")
    ap.add_argument(
        "--samples", type=int, default=64, help="random images for BatchNorm statistics and calibration"
    )
    ap.add_argument("--smoke", action="store_true", help="label the results as a smoke run")
    args = ap.parse_args()

    from importlib import metadata

    from toolchain.hostinfo import has_bf16, host_info

    bf16 = has_bf16()
    load_start = os.getloadavg()[0]
    doc = {
        "host": host_info(),
        "bf16": bf16,
        "smoke": args.smoke,
        "date": time.strftime("%Y-%m-%d"),
        "rounds": args.rounds,
        "runs": args.runs,
        "samples": args.samples,
        "command": "python benchmarks/runtimes.py " + " ".join(sys.argv[1:]),
        "versions": {lib: metadata.version(lib) for lib in ("onnxruntime", "openvino")},
        "models": {
            m: run_model(m, args.rounds, args.runs, args.warmup, args.samples, bf16)
            for m in args.models.split(",")
        },
    }
    doc["load_average"] = {"start": load_start, "end": os.getloadavg()[0]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runtimes.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "runtimes.md").write_text(render_markdown(doc), encoding="utf-8")
    print(render_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
