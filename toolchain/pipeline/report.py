"""Render a run: the machine-readable document (`--json`, report.json) and per-target tables."""

from __future__ import annotations

from typing import Any

from toolchain.pipeline.cache import library_versions
from toolchain.pipeline.variants import is_scheme_variant


def target_document(t) -> dict[str, Any]:
    m = t.metrics
    doc = {
        "artifact": str(t.artifact),
        "fp32_artifact": str(t.fp32_artifact),
        "package": str(t.package),
        "bytes": m["bytes"],
        "fp32_bytes": m["fp32_bytes"],
        "size_ratio": m["size_ratio"],
        "batch": m["batch"],
        "latency_ms": {k: m["latency_ms"][k] for k in ("p50", "p90", "p99")},
        "latency_std_ms": m["latency_ms"]["std"],
        "fp32_latency_ms": m["fp32_latency_ms"],
        "speedup_vs_fp32": m["speedup_vs_fp32"],
        "peak_memory_mb": m["peak_memory_mb"],
        "fp32_peak_memory_mb": m["fp32_peak_memory_mb"],
        "memory_ratio": m["memory_ratio"],
        "runtime_floor_mb": m["runtime_floor_mb"],
        "fp32_runtime_floor_mb": m["fp32_runtime_floor_mb"],
        "model_memory_mb": m["model_memory_mb"],
        "fp32_model_memory_mb": m["fp32_model_memory_mb"],
        "model_memory_ratio": m["model_memory_ratio"],
        "accuracy": m.get("accuracy"),
        "fp32_accuracy": m.get("fp32_accuracy"),
        "accuracy_drop": m.get("accuracy_drop"),
        "budgets": t.verdicts,
        "passed": t.passed,
        "latency_by_batch": m["latency_by_batch"],
        # every measured candidate's file (in the run's cache), shipped or not
        "candidates": {label: str(path) for label, path in t.candidates.items()},
    }
    for key in ("throughput_per_s", "cost_per_million", "price_per_hour", "optimized_ops", "fp32_nodes_by_design",
                "pruned_fp32", "int8_speedup_vs_pruned_fp32", "min_sqnr_db", "fidelity", "compression_pays", "shipped", "selection", "transformer_fusion", "thread_sweep", "measured_on", "target_platform", "host_caveat", "estimated"):
        if key in m:
            doc[key] = m[key]
    if "torch_eager_latency_ms" in m:
        doc["torch_eager_latency_ms"] = m["torch_eager_latency_ms"]
        doc["speedup_vs_torch"] = m["speedup_vs_torch"]
    return doc


def run_document(result) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "recipe": {"name": result.recipe.name, "hash": result.recipe.content_hash()},
        "out_dir": str(result.out_dir.resolve()),
        "passed": result.passed,
        "targets": {name: target_document(t) for name, t in result.targets.items()},
        "baseline": result.baseline,
        **data_use(result.recipe.quantize.calibration_data, result.recipe.package.golden),
        "stages": [{"stage": label, "status": status} for label, status in result.stages],
        "versions": library_versions(),
        "privacy": privacy_document(getattr(result, "privacy", None)),
    }


def data_use(calibration_data: str, golden: str) -> dict[str, Any]:
    """What the run did with data beyond training (docs/privacy.md): which data calibrated the
    quantizer (a non-private input) and whether the packages carry real samples."""
    from toolchain.data.calibration import calibration_facts

    return {"calibration_data": calibration_facts(calibration_data), "package_golden": golden}


def privacy_document(dp: dict[str, Any] | None) -> dict[str, Any]:
    """report.json's privacy block: whether and how the weights were trained with DP-SGD."""
    return {"differentially_private_training": dp is not None,
            # covers train + every fine-tune after pruning; the fp32 baseline (training only) spent less
            "dp_sgd": None if dp is None else {k: v for k, v in dp.items() if k != "history"}}


def _worst_slice(fid: dict[str, Any]) -> str:
    out = fid["outputs"].get(fid["worst_output"], {})
    worst = out.get("worst_slice")
    if worst and worst["sqnr_db"] <= out.get("sqnr_db", worst["sqnr_db"]):
        return f"slice {worst['index']} of axis {worst['axis']}: {worst['sqnr_db']:.1f} dB"
    return f"whole output: {out['sqnr_db']:.1f} dB" if "sqnr_db" in out else out.get("error", "")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _faster(ratio: float) -> str:
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


_HOST_PLATFORM = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm", "arm64": "arm"}


def render_target(name: str, t) -> str:
    m = t.metrics
    rows = _rows(m)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{name}: {t.artifact}"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for budget, v in t.verdicts.items():
        value = "not measured" if v["value"] is None else f"{v['value']:.4g}"
        sign = ">=" if budget.startswith("min_") else "<="
        lines.append(f"  budget {budget}: {value} {sign} {v['limit']:.4g}  {'PASS' if v['pass'] else 'FAIL'}")
    lines += _graph_notes(m)
    lines += _eager_note(m)
    lines += _selection_lines(name, m)
    lines += _fusion_lines(m)
    lines += _thread_lines(m)
    host = _HOST_PLATFORM.get(m.get("measured_on", ""), m.get("measured_on"))
    if host and m.get("target_platform") and host != m["target_platform"]:
        lines.append(f"  note: timed on this {m['measured_on']} host; the artifact is built for {m['target_platform']}, "
                     "so its latency here says nothing about the device (check it with verify-arm / bench --remote)")
    if m.get("host_caveat"):
        lines.append(f"  note: {m['host_caveat']}")
    lines.append(f"  package: {t.package}")
    return "\n".join(lines)


def _rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The table: each measured number of the artifact beside fp32's and their ratio."""
    rows = [("metric", "artifact", "fp32 ORT", "vs fp32")]
    rows.append(("bytes", f"{m['bytes']:,}", f"{m['fp32_bytes']:,}", f"{m['size_ratio']:.3f}x"))
    threads = (m.get("thread_sweep") or {}).get("profile_threads")
    at = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    for p in ("p50", "p90"):
        rows.append((f"{p} latency (ms, batch {m['batch']}{at})", f"{m['latency_ms'][p]:.4f}",
                     f"{m['fp32_latency_ms'][p]:.4f}", _faster(m['fp32_latency_ms'][p] / m['latency_ms'][p])))
    if "torch_eager_latency_ms" in m:
        eager = m["torch_eager_latency_ms"]["p50"]
        # The ratio of the two numbers shown; speedup_vs_torch (in the JSON) chains same-round pairs.
        rows.append(("p50 vs torch eager (ms)", f"{m['latency_ms']['p50']:.4f}",
                     f"{eager:.4f} (eager)", _faster(eager / m["latency_ms"]["p50"])))
    # fp32's memory is measured with ORT's default session options, the artifact's with the profile's
    rows.append(("peak MB (fp32: ORT defaults)", f"{m['peak_memory_mb']:.1f}", f"{m['fp32_peak_memory_mb']:.1f}",
                 _times(m["memory_ratio"])))
    rows.append(("  minus ORT floor", f"{m['model_memory_mb']:.1f} (floor {m['runtime_floor_mb']:.1f})",
                 f"{m['fp32_model_memory_mb']:.1f} (floor {m['fp32_runtime_floor_mb']:.1f})", _times(m["model_memory_ratio"])))
    if m.get("accuracy") is not None:
        rows.append(("accuracy", _pct(m["accuracy"]), _pct(m["fp32_accuracy"]),
                     f"drop {100 * m['accuracy_drop']:.2f} pt"))
    if m.get("min_sqnr_db") is not None and m["fidelity"].get("worst_output"):
        fid = m["fidelity"]
        rows.append(("fidelity vs fp32 (min SQNR)", f"{m['min_sqnr_db']:.1f} dB", f"worst: {fid['worst_output']}",
                     _worst_slice(fid)))
    if "pruned_fp32" in m:  # same pruned network without int8, measured in the same rounds
        pf = m["pruned_fp32"]
        int8_p50 = pf["p50_ms"] / m["int8_speedup_vs_pruned_fp32"]
        rows.append(("pruned: int8 vs fp32 (p50)", f"{int8_p50:.4f} (int8)", f"{pf['p50_ms']:.4f} (pruned fp32)",
                     "int8 " + _faster(m["int8_speedup_vs_pruned_fp32"])))
    if "cost_per_million" in m:
        rows.append(("cost per 1M inferences", f"{m['cost_per_million']:.4f}",
                     f"at {m['price_per_hour']}/h", f"{m['throughput_per_s']:,.0f}/s"))
    return rows


def _graph_notes(m: dict[str, Any]) -> list[str]:
    """What ORT runs here, and whether compression paid at all."""
    lines: list[str] = []
    ops = m.get("optimized_ops")
    if ops and shipped_form(m) != "int8" and not is_scheme_variant(shipped_form(m)):
        lines.append(f"  ORT graph here: {ops['fp32_compute']} fp32 compute ops (the shipped candidate has no int8)")
    elif ops:
        chosen = len(m.get("fp32_nodes_by_design", []))
        if ops["fp32_compute"] == 0:
            note = ""
        elif ops["fp32_compute"] <= chosen:
            note = f"  ({chosen} kept fp32 on purpose: fp32_stem / nodes_to_exclude)"
        else:
            note = "  <- fp32 compute left between Q/DQ: int8 not fully fused"
        lines.append(f"  ORT graph here: {ops['int8_kernels']} int8 kernels, {ops['fp32_compute']} fp32 compute ops, "
                     f"{ops['quantize_dequantize']} Q/DQ{note}")
    if m.get("compression_pays") is False:
        why = ("no compressed form did better, so fp32 ships" if m.get("shipped") == "fp32" else
               f"the shipped artifact is {m['size_ratio']:.2f}x fp32's bytes at {m['speedup_vs_fp32']:.2f}x its speed")
        lines.append(f"  note: compression does not pay for this model on this target: {why}")
    return lines


# Timings of one pair taken in different rounds may disagree this much before we say so.
_EAGER_DISAGREEMENT = 2.0


def _eager_note(m: dict[str, Any]) -> list[str]:
    """Torch eager is timed in its own rounds against fp32; when that same-round chain and the
    direct ratio of the shown numbers disagree, the machine was busy during one of them."""
    if "torch_eager_latency_ms" not in m:
        return []
    direct = m["torch_eager_latency_ms"]["p50"] / m["latency_ms"]["p50"]
    chained = m["speedup_vs_torch"]
    if max(direct, chained) / min(direct, chained) < _EAGER_DISAGREEMENT:
        return []
    return [(f"  note: eager vs artifact is {direct:.2f}x from the numbers shown but {chained:.2f}x from same-round "
            "pairs: the machine was busy while one of them was timed; rerun with --rebench on an idle machine")]




_SHIPPED_NAMES = {"fp32": "the fp32 baseline (compression did not pay)", "int8": "the quantized model", "pruned_fp32": "the pruned model in fp32 (no int8)",
                  "int8_weights": "int8-stored weights, fp32 compute",
                  "fp32_bf16": "the fp32 model compiled at bf16 (OpenVINO)",
                  "unquantized": 'the model unquantized, fp32 ([quantize] format = "none")'}


def shipped_form(m: dict[str, Any]) -> str:
    """The shipped candidate's label, except that the "int8" candidate of [quantize] format =
    "none" is fp32 and is named "unquantized"."""
    shipped = m.get("shipped", "int8")
    return "unquantized" if shipped == "int8" and m.get("quantize_format") == "none" else shipped


def _selection_lines(name: str, m: dict[str, Any]) -> list[str]:
    """Which candidate ships and why; a hint when the rule left a faster passing one behind."""
    selection = m.get("selection")
    skipped = [f"  skipped: {label}: {why}" for label, why in ((selection or {}).get("skipped") or {}).items()]
    if not selection or len(selection["candidates"]) < 2:
        return skipped
    shipped = m.get("shipped", "int8")
    def p50(c: dict[str, Any]) -> float:  # reports written before selection_p50_ms existed have p50_ms only
        return c.get("selection_p50_ms", c["p50_ms"])

    def timed(c: dict[str, Any]) -> str:
        at = f" @{c['selection_threads']}t" if c.get("selection_threads") else ""
        return f"{p50(c):.4f} ms{at} {c['bytes']:,} B" + (f" (fails {', '.join(c['failed_budgets'])})" if c["failed_budgets"] else "")

    first = "unquantized" if m.get("quantize_format") == "none" else "int8"  # the "int8" label's real form
    weighed = ", ".join(f"{first if label == 'int8' else label} {timed(c)}" for label, c in selection["candidates"].items())
    tie = (f" (within {selection['tie']:.0%} counts as equally fast, then as equally small; ties go to {first}, its scheme variants, pruned fp32, int8-weights in that order)"
           if selection["rule"] == "fastest" and "tie" in selection else "")
    lines = [f"  shipped: {_SHIPPED_NAMES.get(shipped_form(m), shipped)} [ship = \"{selection['rule']}\"{tie}; p50, bytes: {weighed}]"]
    if selection.get("reason"):
        lines.append(f"  why: {selection['reason']}")
    lines += _peer_lines(selection.get("ort_uint8_qdq"))
    lines += [f"  candidate {label}: {scheme_text(c.get('scheme'))}" + (
        f", min SQNR {c['min_sqnr_db']:.1f} dB" if c.get("min_sqnr_db") is not None else "")
        for label, c in selection["candidates"].items() if is_scheme_variant(label) or label == "int8"]
    passing = {label: c for label, c in selection["candidates"].items() if not c["failed_budgets"]}
    if passing and selection["rule"] == "quantized" and min(passing, key=lambda k: p50(passing[k])) != shipped:
        lines.append(f"  note: a faster candidate passes every budget here; [artifact] ship = \"fastest\" in {name}'s profile ships it")
    return lines + skipped


def _peer_lines(peer: dict[str, Any] | None) -> list[str]:
    """How the shipped candidate compares with ONNX Runtime's own uint8 QDQ of the same model."""
    if not peer:
        return []
    if not peer["weighed"]:
        return [f"  vs ORT's own uint8 QDQ ({peer['candidate']}): not weighed, {peer['reason']}"]
    fails = f"; it fails {', '.join(peer['failed_budgets'])}" if peer["failed_budgets"] else ""
    return [(f"  vs ORT's own uint8 QDQ ({peer['candidate']}): shipped {peer['speedup']:.2f}x as fast "
             f"({peer['shipped_p50_ms']:.4g} vs {peer['p50_ms']:.4g} ms){fails}")]


def scheme_text(scheme: dict[str, Any] | str | None) -> str:
    """An int8 candidate's scheme in a few words (a form's scheme is already a phrase)."""
    if not isinstance(scheme, dict):
        return scheme or "?"
    stem = f"fp32 stem ({', '.join(scheme['fp32_stem_nodes'])})" if scheme.get("fp32_stem_nodes") else "int8 stem"
    text = (f"{scheme['format']} {scheme['activation_type']}/{scheme['weight_type']}, "
            f"{'per-channel' if scheme['per_channel'] else 'per-tensor'}, {stem}")
    return text + (", transformer-fused" if scheme.get("fused") else "")


def _fusion_lines(m: dict[str, Any]) -> list[str]:
    """What ORT's transformer optimizer did to each int8 candidate, or why it did not."""
    lines = []
    for label, f in (m.get("transformer_fusion") or {}).items():
        if f.get("applied"):
            ops = ", ".join(f"{op} {n}" for op, n in f["fused_ops"].items())
            lines.append(f"  transformer fusion ({label}): {ops}")
        elif f.get("attention_patterns"):  # a model without attention needs no sentence
            lines.append(f"  transformer fusion ({label}): not applied, {f['reason']}")
    return lines


def _thread_lines(m: dict[str, Any]) -> list[str]:
    sweep = m.get("thread_sweep")
    if not sweep:
        return []
    parts = []
    for b, best in sweep["fastest"].items():
        timed = ", ".join(f"{n}t {by_batch[b]:.4f}" + (f" ({sweep['speedup_vs_fp32'][n][b]:.2f}x fp32)"
                                                         if b in sweep["speedup_vs_fp32"].get(n, {}) else "")
                          for n, by_batch in sweep["p50_ms"].items() if b in by_batch)
        parts.append(f"batch {b}: {timed} -> {best}")
    lines = ["  threads (p50 ms, timed in their own rounds, one live session at a time): " + "; ".join(parts)]
    off = sorted({best for best in sweep["fastest"].values() if best != sweep["profile_threads"]})
    if off:
        smallest = min(sweep["fastest"], key=int)
        lines.append(f"  note: this artifact runs fastest at {'/'.join(map(str, off))} intra-op thread(s) for some batch "
                     f"sizes here, the profile sets {sweep['profile_threads']}; the package's manifest `session` says "
                     f"{sweep['fastest'][smallest]} (batch {smallest}), per batch in intra_op_threads_by_batch")
    return lines


def render_run(result) -> str:
    hits = sum(1 for _, s in result.stages if s == "hit")
    head = f"edgeopt run '{result.recipe.name}' -> {result.out_dir} ({hits}/{len(result.stages)} stages from cache)"
    st = result.baseline.get("structure")
    if st:
        head += (f"\nstructured pruning: params {st['params_before']:,} -> {st['params_after']:,} "
                 f"({st['params_after'] / st['params_before']:.3f}x), MACs {st['macs_before']:,} -> {st['macs_after']:,} "
                 f"({st['macs_after'] / st['macs_before']:.3f}x)")
        if st.get("blocks_dropped"):
            head += f", blocks dropped: {', '.join(st['blocks_dropped'])}"
    calib, golden = result.recipe.quantize.calibration_data, result.recipe.package.golden
    head += (f"\ncalibration data: {calib} (a non-private input to quantization); "
             f"package golden inputs: {golden}{' (REAL evaluation samples)' if golden == 'samples' else ''}")
    body = "\n\n".join(render_target(n, t) for n, t in result.targets.items())
    verdict = "all budgets met" if result.passed else "BUDGET FAILED"
    return f"{head}\n\n{body}\n\n{verdict}"
