"""report.html: the run's JSON document as a page a person can look at.

Self-contained: styles inline, plots embedded as base64 PNG, no script and no network, so it
opens from a CI artifact store or an email attachment. Rendered from the same document as
report.json (`run_document` / `compress_document`), never from state the JSON lacks.
"""

from __future__ import annotations

import base64
import html
import io
import zipfile
from pathlib import Path
from typing import Any

from toolchain.fsio import write_text_atomic
from toolchain.pipeline.report import scheme_text

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}.pass{color:#176b2c;font-weight:600}.fail{color:#a4161a;font-weight:600}
.shipped{background:#eef6ee}section{border-top:2px solid #ddd;margin-top:2em}img{max-width:100%}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, fmt: str = ".4g") -> str:
    return "n/a" if value is None else format(value, fmt) if isinstance(value, (int, float)) else _e(value)


def _speed(ratio: float) -> str:
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def _table(head: list[str], rows: list[list[str]], row_class: list[str] | None = None) -> str:
    cls = row_class or [""] * len(rows)
    body = "".join(f'<tr class="{c}">' + "".join(f"<td>{cell}</td>" for cell in r) + "</tr>" for r, c in zip(rows, cls))
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + f"</tr>{body}</table>"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _latency_plot(t: dict[str, Any]) -> str:
    """p50/p90/p99 of every candidate at every batch size measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_batch = t.get("latency_by_batch") or {}
    series = [(label, b, st) for label, batches in by_batch.items() for b, st in batches.items()]
    if not series:
        return ""
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(series) + 1))
    names = [f"{label} @batch {b}" for label, b, _ in series]
    for k, (pct, colour) in enumerate((("p50", "#4c78a8"), ("p90", "#f58518"), ("p99", "#e45756"))):
        ax.barh([i + 0.25 * k for i in range(len(series))], [st.get(pct, 0) for _, _, st in series], 0.25,
                label=pct, color=colour)
    ax.set_yticks([i + 0.25 for i in range(len(series))], names)
    ax.set_xlabel("latency, ms")
    ax.legend()
    html_img = _png(fig)
    plt.close(fig)
    return html_img


def _budgets(t: dict[str, Any]) -> str:
    rows, cls = [], []
    for name, v in t.get("budgets", {}).items():
        sign = ">=" if name.startswith("min_") else "<="
        verdict = '<span class="pass">PASS</span>' if v.get("pass") else '<span class="fail">FAIL</span>'
        rows.append([_e(name), _num(v.get("value")), f"{sign} {_num(v.get('limit'))}", verdict])
        cls.append("")
    return _table(["budget", "measured", "limit", "verdict"], rows, cls)


def _candidates(t: dict[str, Any]) -> str:
    weighed = (t.get("selection") or {}).get("candidates", {})
    rows = [[_e(label), _e(scheme_text(c.get("scheme"))), _num(c.get("selection_p50_ms")), f"{c.get('bytes', 0):,}",
             _num(c.get("accuracy")), _num(c.get("min_sqnr_db")), _e(", ".join(c.get("failed_budgets", [])) or "none")]
            for label, c in weighed.items()]
    cls = ["shipped" if label == t.get("shipped") else "" for label in weighed]
    selection = t.get("selection") or {}
    why = f"; {_e(selection['reason'])}" if selection.get("reason") else ""
    return (f"<p>shipped: <b>{_e(t.get('shipped', 'int8'))}</b> (ship = {_e(selection.get('rule', ''))}{why})</p>"
            + _table(["candidate", "scheme", "p50 ms", "bytes", "accuracy", "min SQNR dB", "failed budgets"], rows, cls))


def _threads(t: dict[str, Any]) -> str:
    sweep = t.get("thread_sweep")
    if not sweep:
        return ""
    rows = [[_e(n), *[_num(by_batch.get(b)) for b in sorted(sweep["fastest"], key=int)]]
            for n, by_batch in sweep["p50_ms"].items()]
    return "<h3>Thread sweep (p50 ms)</h3>" + _table(["threads", *[f"batch {b}" for b in sorted(sweep["fastest"], key=int)]], rows)


def _package(t: dict[str, Any]) -> str:
    path = Path(t.get("package", ""))
    if not path.is_file():
        return ""
    with zipfile.ZipFile(path) as zf:
        rows = [[_e(i.filename), f"{i.file_size:,}"] for i in zf.infolist()]
    return f"<h3>Package {_e(path.name)}</h3>" + _table(["member", "bytes"], rows)


def _pareto(out_dir: Path, target: str) -> str:
    pngs = sorted((out_dir / "search" / target).glob("*.png")) if out_dir.is_dir() else []
    return "".join(f"<h3>{_e(p.stem)}</h3>" + f'<img alt="{_e(p.stem)}" src="data:image/png;base64,'
                   f'{base64.b64encode(p.read_bytes()).decode()}">' for p in pngs)


def _target(name: str, t: dict[str, Any], out_dir: Path) -> str:
    head = [["bytes", f"{t['bytes']:,}", f"{t['fp32_bytes']:,}", f"{t['size_ratio']:.3f}x"],
            ["p50 ms", _num(t["latency_ms"]["p50"]), _num(t["fp32_latency_ms"]["p50"]), _speed(t["speedup_vs_fp32"])],
            ["peak MB", _num(t["peak_memory_mb"]), _num(t["fp32_peak_memory_mb"]), _num(t.get("memory_ratio"), ".2f")],
            ["accuracy", _num(t.get("accuracy")), _num(t.get("fp32_accuracy")), _num(t.get("accuracy_drop"))]]
    if t.get("min_sqnr_db") is not None:
        head.append(["min SQNR vs fp32", f"{t['min_sqnr_db']:.1f} dB", "", ""])
    verdict = '<span class="pass">all budgets met</span>' if t.get("passed") else '<span class="fail">BUDGET FAILED</span>'
    caveat = f'<p class="fail">note: {_e(t["host_caveat"])}</p>' if t.get("host_caveat") else ""
    return (f'<section id="target-{_e(name)}"><h2>{_e(name)}: {verdict}</h2>' + caveat
            + _table(["metric", "artifact", "fp32", "ratio"], head) + "<h3>Budgets</h3>" + _budgets(t)
            + "<h3>Candidates weighed</h3>" + _candidates(t) + "<h3>Latency</h3>" + _latency_plot(t)
            + _threads(t) + _pareto(out_dir, name) + _package(t) + "</section>")


def render_page(doc: dict[str, Any]) -> str:
    out_dir = Path(doc.get("out_dir", "."))
    name = doc.get("recipe", {}).get("name", "edgeopt run")
    verdict = "all budgets met" if doc.get("passed") else "BUDGET FAILED"
    host = (doc.get("baseline") or {}).get("host", {})
    body = "".join(_target(n, t, out_dir) for n, t in doc.get("targets", {}).items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>edgeopt: {_e(name)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>edgeopt: {_e(name)} ({_e(verdict)})</h1>"
            f"<p>measured on {_e(host.get('cpu', 'unknown CPU'))}, {_e(host.get('cores', '?'))} cores</p>"
            f"{_data_use(doc)}{body}</body></html>")


_GOLDEN_TEXT = {"synthetic": "synthetic inputs drawn from per-channel statistics (no data rows)",
                "samples": "REAL evaluation samples (opted in with golden = \"samples\")"}


def _data_use(doc: dict[str, Any]) -> str:
    """The run's data beyond training: what calibrated the quantizer, what the packages carry."""
    calib = doc.get("calibration_data")
    if not calib:  # a report written before these keys existed
        return ""
    golden = _GOLDEN_TEXT.get(doc.get("package_golden"), _e(doc.get("package_golden")))
    return (f'<p class="data-use">Calibration data: <b>{_e(calib["kind"])}</b> ({_e(calib["source"])}); '
            f"{_e(calib['note'])}. Package golden inputs: {_e(golden)}.</p>")


def write_page(doc: dict[str, Any], dest: Path) -> Path:
    return write_text_atomic(dest, render_page(doc))
