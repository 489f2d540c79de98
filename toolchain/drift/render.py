"""Text and Markdown views of the drift document compare() returns."""

from __future__ import annotations


def _where(r: dict) -> str:
    return f"{r['kind']} {r['tensor']}" + (f"[{r['channel']}]" if r["channel"] is not None else "")


def _worst(doc: dict) -> list[dict]:
    """Flagged rows first, then by PSI; at most 20 so a 64-channel input stays readable."""
    return sorted(doc["rows"], key=lambda r: (not r["drift"], -r["psi"]))[:20]


def _skipped(doc: dict) -> list[str]:
    return [f"skipped {s['kind']} {s['tensor']} ({s['as']}): {s['reason']}" for s in doc.get("skipped", ())]


def render_text(doc: dict) -> str:
    t = doc["thresholds"]
    head = (f"drift: {'DRIFT in ' + ', '.join(doc['flagged']) if doc['drift'] else 'none'} "
            f"(PSI >= {t['psi']} and KS p < {t['ks_pvalue_per_channel']:.2g} per channel)")
    lines = [head, f"{'where':<28} {'PSI':>8} {'KS':>7} {'KS p':>9}  verdict"]
    for r in _worst(doc):
        lines.append(f"{_where(r):<28} {r['psi']:>8.3f} {r['ks_statistic']:>7.3f} {r['ks_pvalue']:>9.2g}  "
                     f"{'DRIFT' if r['drift'] else 'ok'}")
    return "\n".join(lines + _skipped(doc))


def render_markdown(doc: dict) -> str:
    t = doc["thresholds"]
    verdict = "**drift** in " + ", ".join(f"`{f}`" for f in doc["flagged"]) if doc["drift"] else "no drift"
    lines = [f"## Drift: {doc['package']}", "",
             (f"{verdict}. Live samples: {', '.join(f'{k} {v}' for k, v in doc['samples'].items())}. "
             f"A channel drifts at PSI >= {t['psi']} with KS p-value < {t['ks_pvalue_per_channel']:.2g}."), "",
             "| where | PSI | KS statistic | KS p-value | verdict |", "|---|---|---|---|---|"]
    for r in _worst(doc):
        lines.append(f"| {_where(r)} | {r['psi']:.3f} | {r['ks_statistic']:.3f} | {r['ks_pvalue']:.2g} | "
                     f"{'drift' if r['drift'] else 'ok'} |")
    skipped = _skipped(doc)
    return "\n".join(lines + ([""] + [f"- {line}" for line in skipped] if skipped else [])) + "\n"
