"""Shared formatting of verdict values for the JUnit, Markdown and terminal reports."""

from __future__ import annotations

from typing import Any


def fmt(metric: str, x: float | None) -> str:
    if x is None:
        return "not measured"
    if "regression" in metric:
        return f"{100 * x:+.1f}%"
    if metric == "bytes":
        return f"{int(x):,}"
    if metric == "accuracy_drop":
        return f"{100 * x:.2f} pt"
    return f"{x:.4g}"


def limit_text(v: dict[str, Any]) -> str:
    return fmt(v["metric"], v["limit"])


def evidence(v: dict[str, Any]) -> str:
    """Why the verdict: the interval for latency, 'exact' or the reason it was not measured."""
    if v.get("ci_low") is not None:
        return (f"{100 * v['coverage']:.1f}% interval [{fmt(v['metric'], v['ci_low'])}, "
                f"{fmt(v['metric'], v['ci_high'])}]; {v['decided_by']}")
    return v.get("note") or v["decided_by"]


def verdict_word(v: dict[str, Any]) -> str:
    word = "PASS" if v["pass"] else "FAIL"
    if "inconclusive" in v["decided_by"] or "at cap: pass" in v["decided_by"]:
        return f"{word} (inconclusive)"
    return f"{word} (at cap)" if "at cap" in v["decided_by"] else word


def summary_line(name: str, v: dict[str, Any]) -> str:
    """One line with value and limit: the JUnit failure message and the terminal row."""
    op = "<=" if v["pass"] else ">" if v["value"] is not None else "vs"
    return f"{name}: {fmt(v['metric'], v['value'])} {op} {limit_text(v)} ({evidence(v)})"


def render_text(doc: dict[str, Any]) -> str:
    lines = []
    for target, t in doc["targets"].items():
        lines.append(f"{target}: {t['artifact']} (reference: {t['reference']['kind']})")
        for name, v in t["budgets"].items():
            lines.append(f"  {verdict_word(v):<15} {summary_line(name, v)}")
    lines.append("all budgets met" if doc["passed"] else "BUDGET FAILED")
    return "\n".join(lines)
