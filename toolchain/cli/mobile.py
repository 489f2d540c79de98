"""`edgeopt mobile-report`: EP coverage, static memory and analytical latency of a mobile model.

Nothing here is measured: coverage comes from ORT's usability checker (XNNPACK: approximate),
memory and latency are estimates and are printed as such. Exit 0, or 2 on bad input.
"""

from __future__ import annotations

from typing import Any

import click

from toolchain.cli.options import PATH, emit, json_option, targets_dir_option
from toolchain.mobile.report import mobile_report


def render(doc: dict[str, Any]) -> str:
    lines = [f"{doc['model']} for {doc['target']} (batch {doc['batch']})"]
    notes = doc.get("notes", {})
    if doc["ep_coverage"] is None:
        lines.append(f"execution-provider coverage: {notes.get('ep_coverage', 'not estimated')}")
    else:
        lines.append("execution-provider coverage:")
        for name, ep in doc["ep_coverage"]["eps"].items():
            verdict = f", suitability {ep['suitability']}" if ep["suitability"] else ""
            unsup = ", ".join(ep["unsupported_ops"]) or "none"
            lines.append(f"  {name:<21} {ep['nodes_covered']}/{ep['nodes_total']} nodes in {ep['partitions']} partition(s)"
                         f"{verdict} [{ep['accuracy']}]; unsupported: {unsup}")
    m = doc["memory"]
    if m is None:
        lines.append(f"memory (estimated): {notes.get('memory', 'not estimated')}")
    else:
        lines.append(f"memory (estimated): weights {m['weights_bytes']:,} B + peak activations "
                     f"{m['peak_activation_bytes']:,} B (at {m['peak_node']}) = {m['total_bytes']:,} B")
    lines.extend(_latency_lines(doc["latency"], notes))
    return "\n".join(lines)


def _latency_lines(lat: dict[str, Any] | None, notes: dict[str, str]) -> list[str]:
    if lat is None:
        return [f"latency (estimated): {notes.get('latency', 'not estimated')}"]
    macs = f"{lat['macs_int8']:,} int8 MACs, {lat['macs_fp32']:,} fp32 MACs, {lat['bytes_moved']:,} B moved"
    if lat["latency_ms"] is None:
        return [(f"latency (estimated): unavailable, missing {', '.join(lat['missing'])} "
                 f"(use --device or add [device] to the target); {macs}")]
    return [f"latency (estimated, roofline at peak; a lower bound): {lat['latency_ms']:.4f} ms; {macs}",
            f"  figures: {lat['device_from']}: {lat['device_source']}"]


@click.command("mobile-report")
@click.argument("model", type=PATH)
@click.option("--target", required=True, help="Target profile (fixed batch, device figures).")
@click.option("--device", "device_name", default=None,
              help="Reference device figures to use instead of the target's (cortex-a76, raspberry-pi-4).")
@targets_dir_option
@json_option
def mobile_report_cmd(model, target, device_name, targets_dir, as_json):
    """EP coverage (NNAPI, CoreML, XNNPACK), static memory and latency estimates of an .onnx.

    Give the .onnx an .ort is converted from: an .ort file keeps no shape information.
    """
    from toolchain.config.target import load_target

    doc = mobile_report(model, load_target(target, targets_dir), device_name, strict=True)
    emit(doc, as_json, render)


COMMANDS = [mobile_report_cmd]
