"""Which int8 scheme does OpenVINO run fastest? The x86-server-openvino defaults, measured.

One process, one thread, batch 1. For a ResNet-18-style network and MobileNetV2 (paper width,
224 px; built and given BatchNorm statistics as benchmarks/runtimes.py does) and the zoo's
resnet_small (64 px), each int8 scheme is written by edgeopt's own quantize helpers (ORT's
quant_pre_process, then quantize_static) and converted as the x86-server-openvino profile converts
("basic": portable QDQ), then compiled by OpenVINO (LATENCY hint, f32). The variants flip one
choice at a time from a base (per-channel int8 symmetric weights, uint8 asymmetric activations,
int8 stem, MinMax):

- per-tensor weights;   - int8 activations;   - symmetric activations (`ActivationSymmetric`);
- asymmetric weights (`WeightSymmetric=False`);   - fp32 stem (the RGB stem conv left fp32).

All are timed in the same interleaved rounds with ORT fp32 (the reference of benchmarks/runtimes.py)
and OpenVINO f32 (benchmarks/runtimes.py's `measure`): per round, each candidate's median and its
ratio to each reference's median in that round; reported, the median ratio over rounds (min-max).
Fidelity: SQNR (dB) of the logits against ORT fp32 on held-out random inputs, and top-1 agreement.

Usage: python benchmarks/openvino_schemes.py [--models resnet18,mobilenet_v2,resnet_small]
       [--rounds N] [--runs N] [--warmup N] [--samples N] [--smoke]
Writes results/openvino_schemes.{json,md} (with --smoke: labelled as a smoke run under load).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from runtimes import REFERENCE, build, measure, same_round_ratios, with_bn_statistics

OV_FP32 = "openvino-f32"
BASE = {"format": "qdq", "activation_type": "uint8", "weight_type": "int8", "per_channel": True,
        "reduce_range": False, "calibration_method": "minmax", "fp32_stem": False}
# label -> ([quantize] keys changed from BASE, quantize_static extra_options)
VARIANTS = {
    "base: per-channel, u8 asym act, i8 sym weights": ({}, {}),
    "per-tensor weights": ({"per_channel": False}, {}),
    "int8 activations": ({"activation_type": "int8"}, {}),
    "symmetric activations": ({}, {"ActivationSymmetric": True}),
    "asymmetric weights": ({}, {"WeightSymmetric": False}),
    "fp32 stem": ({"fp32_stem": True}, {}),
}
SIZES = {"resnet18": 224, "mobilenet_v2": 224, "resnet_small": 64}


def network(name: str, calib: np.ndarray):
    """The eval-mode torch model with BatchNorm statistics from `calib`."""
    if name in ("resnet18", "mobilenet_v2"):
        return build(name, calib)
    import torch

    from toolchain.config.zoo import resolve_factory

    torch.manual_seed(0)
    return with_bn_statistics(resolve_factory(name)(num_classes=8, width=16), calib)  # models/resnet-small.toml


def quantized(pre: Path, calib: np.ndarray, changes: dict, extra: dict, dest: Path) -> None:
    """`pre` (already through quant_pre_process) quantized with BASE + `changes` and `extra`,
    by the same helpers as edgeopt's quantize stage (stages/quantize.py)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from toolchain.config.target import QuantizeScheme
    from toolchain.stages.quantize import excluded_nodes, static_kwargs

    scheme = QuantizeScheme(**{**BASE, **changes})
    exclude, _ = excluded_nodes(onnx.load(str(pre), load_external_data=False), scheme, [])
    name = onnx.load(str(pre), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(pre), str(dest), Reader(), nodes_to_exclude=exclude, extra_options=extra,
                    **static_kwargs(scheme))


def artifacts(name: str, calib: np.ndarray, work: Path) -> dict[str, Path]:
    """label -> the converted file: fp32 and every variant, as x86-server-openvino converts them."""
    from toolchain.config.stages import ExportConfig
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import convert_config
    from toolchain.stages.convert import convert
    from toolchain.stages.export import export_onnx
    from toolchain.stages.quantize import pre_process

    ccfg = convert_config(load_target("x86-server-openvino"))
    fp32, pre = work / "fp32.onnx", work / "pre.onnx"
    with contextlib.redirect_stdout(sys.stderr):
        export_onnx(network(name, calib), calib[:4], ExportConfig(parity_atol=1e-3, parity_samples=2), fp32)
        pre_process(fp32, pre)
    files = {"fp32": fp32}
    for i, (label, (changes, extra)) in enumerate(VARIANTS.items()):
        raw = work / f"v{i}.onnx"
        with contextlib.redirect_stdout(sys.stderr):
            quantized(pre, calib, changes, extra, raw)
        out = work / f"v{i}"
        out.mkdir()
        files[label] = out / convert(raw, ccfg, out, {})["artifact"]
    out = work / "fp32-basic"
    out.mkdir()
    files[OV_FP32] = out / convert(fp32, ccfg, out, {})["artifact"]
    return files


def rows(files: dict[str, Path]) -> dict[str, tuple[Path, object]]:
    """label -> (file, RuntimeOptions at 1 thread): ORT fp32, OpenVINO f32 and the int8 variants on OpenVINO."""
    from toolchain.config.target import RuntimeOptions, load_target

    ov = load_target("x86-server-openvino").runtime.model_copy(update={"intra_op_threads": 1, "inference_precision": "f32"})
    out = {REFERENCE: (files["fp32"], RuntimeOptions(intra_op_threads=1)), OV_FP32: (files[OV_FP32], ov)}
    out.update({label: (files[label], ov) for label in VARIANTS})
    return out


def run_model(name: str, args) -> dict:
    size = SIZES[name]
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(args.samples, 3, size, size)).astype(np.float32)
    evals = rng.normal(size=(args.evals, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix=f"ov-schemes-{name}-") as tmp:
        started = time.time()
        files = artifacts(name, calib, Path(tmp))
        built = time.time() - started
        result = measure(rows(files), evals[:1], evals, args.rounds, args.runs, args.warmup)
        for label, r in result.items():  # a variant ORT writes byte-identical to the base is a noise control
            r["sha256"] = hashlib.sha256(rows(files)[label][0].read_bytes()).hexdigest()
    ov = result[OV_FP32].get("p50_ms_by_round")
    for r in result.values():
        if ov and "p50_ms_by_round" in r:
            vs = same_round_ratios(ov, r["p50_ms_by_round"])
            r.update(vs_ov_f32_median=vs["ratio_median"], vs_ov_f32_min=vs["ratio_min"], vs_ov_f32_max=vs["ratio_max"])
    return {"size": size, "build_seconds": built, "candidates": result}


BASE_LABEL = next(iter(VARIANTS))


def with_base_ratio(result: dict) -> None:
    """Each int8 variant's same-round speed vs the base scheme (> 1: the variant is faster)."""
    base = result[BASE_LABEL].get("p50_ms_by_round")
    for label in VARIANTS:
        r = result[label]
        if base and "p50_ms_by_round" in r:
            vs = same_round_ratios(base, r["p50_ms_by_round"])
            r.update(vs_base_median=vs["ratio_median"], vs_base_min=vs["ratio_min"], vs_base_max=vs["ratio_max"])


def _ratio(r: dict, key: str) -> str:
    return f"{r[key + '_median']:.2f}x ({r[key + '_min']:.2f}-{r[key + '_max']:.2f})" if key + "_median" in r else ""


def model_table(model: str, res: dict) -> list[str]:
    lines = [f"## {model} ({res['size']} px)", "",
             "| candidate | bytes | p50 ms | vs ORT fp32 | vs OpenVINO f32 | vs base scheme | SQNR dB | top-1 agreement |",
             "|---|---|---|---|---|---|---|---|"]
    base_sha = res["candidates"][BASE_LABEL].get("sha256")
    for label, r in res["candidates"].items():
        if label in VARIANTS and label != BASE_LABEL and r.get("sha256") == base_sha:
            label += " (the same file as base: a noise control)"
        if "skipped" in r:
            lines.append(f"| {label} | skipped: {r['skipped']} | | | | | | |")
            continue
        sqnr = "reference" if label == REFERENCE else f"{r['sqnr_db']:.1f}"
        lines.append(f"| {label} | {r['bytes']:,} | {r['p50_ms']:.2f} | {r['ratio_median']:.2f}x "
                     f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {_ratio(r, 'vs_ov_f32')} | {_ratio(r, 'vs_base')} "
                     f"| {sqnr} | {r['top1_agreement']:.0%} |")
    return [*lines, ""]


def render_markdown(doc: dict) -> str:
    host = doc["host"]
    head = "# OpenVINO int8 schemes: which one x86-server-openvino should default to"
    lines = [head + (" (SMOKE RUN, under load)" if doc["smoke"] else ""), ""]
    if doc["smoke"]:
        lines += [("**Smoke run under load**: few rounds and runs on a 2-core machine shared with other jobs "
                   f"(load average {doc['load_before'][0]:.2f} before, {doc['load_after'][0]:.2f} after). Ratios are "
                   "same-round, so drift hits every candidate alike, but the spread is wide: rerun quietly with the "
                   "full command below before quoting a number."), ""]
    lines += [(f"CPU: {host['cpu']} ({host['cores']} cores), ISA flags: {', '.join(host['isa']) or 'none of interest'}. "
               f"onnxruntime {doc['versions']['onnxruntime']}, openvino {doc['versions']['openvino']}. Measured {doc['date']}."),
              "",
              (f"1 thread, batch 1, random-init weights (BatchNorm statistics from {doc['samples']} random inputs, which also "
              f"calibrate every int8 form). {doc['rounds']} interleaved rounds x {doc['runs']} runs; a ratio is the reference's "
              "median / the candidate's median in the same round, median over rounds (min-max); 'vs base scheme' > 1 means "
              f"the variant is faster than the base. SQNR and top-1 agreement: logits vs ORT fp32 on {doc['evals']} held-out "
              "random inputs. OpenVINO: LATENCY hint, 1 thread, f32 precision hint, x86-server-openvino's \"basic\" files."),
              "", f"Command: `{doc['command']}`", ""]
    for model, res in doc["models"].items():
        lines += model_table(model, res)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,mobilenet_v2,resnet_small")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=50, help="timed runs per candidate per round")
    ap.add_argument("--warmup", type=int, default=10, help="untimed runs per candidate per round")
    ap.add_argument("--samples", type=int, default=64, help="random inputs for BatchNorm statistics and calibration")
    ap.add_argument("--evals", type=int, default=16, help="held-out random inputs for SQNR and agreement")
    ap.add_argument("--smoke", action="store_true", help="label the results as a smoke run under load")
    args = ap.parse_args()
    unknown = set(args.models.split(",")) - set(SIZES)
    if unknown:
        ap.error(f"unknown model {sorted(unknown)}; known: {', '.join(SIZES)}")

    from importlib import metadata

    from toolchain.hostinfo import host_info

    doc = {"host": host_info(), "smoke": args.smoke, "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds,
           "runs": args.runs, "samples": args.samples, "evals": args.evals, "load_before": os.getloadavg(),
           "command": "python benchmarks/openvino_schemes.py " + " ".join(sys.argv[1:]),
           "versions": {lib: metadata.version(lib) for lib in ("onnxruntime", "openvino")}, "models": {}}
    for m in args.models.split(","):
        doc["models"][m] = run_model(m, args)
        with_base_ratio(doc["models"][m]["candidates"])
    doc["load_after"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "openvino_schemes.smoke" if args.smoke else "openvino_schemes"
    (RESULTS / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.md").write_text(render_markdown(doc), encoding="utf-8")
    print(render_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
