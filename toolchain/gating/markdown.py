"""Markdown for a CI job summary (GitHub's $GITHUB_STEP_SUMMARY, a GitLab MR note): a table per
target with budget, value, limit and verdict."""

from __future__ import annotations

from typing import Any

from toolchain.gating.render import evidence, fmt, limit_text, verdict_word


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    head = "passed: all budgets met" if doc["passed"] else "FAILED: a budget was exceeded"
    lines = [f"## edgeopt gate {head}", ""]
    for target, t in doc["targets"].items():
        m = t.get("measurement")
        lines.append(f"### {_cell(target)} {'✅' if t['passed'] else '❌'}")
        lines.append("")
        lines.append(f"`{_cell(t['artifact'])}`; latency reference: {t['reference']['kind']}"
                     + (f"; {m['rounds']} rounds, {m['runs']} runs, {m['seconds']:.1f} s" if m else ""))
        lines += ["", "| budget | value | limit | verdict | evidence |", "|---|---:|---:|---|---|"]
        for name, v in t["budgets"].items():
            lines.append(f"| {_cell(name)} | {_cell(fmt(v['metric'], v['value']))} | {_cell(limit_text(v))} "
                         f"| {verdict_word(v)} | {_cell(evidence(v))} |")
        lines.append("")
    return "\n".join(lines)
