"""JUnit XML: one <testsuite> per target, one <testcase> per budget. CI systems (GitHub via
test-reporter actions, GitLab's `reports: junit`) show a failed budget as a failed test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from toolchain.gating.render import evidence, fmt, limit_text, summary_line


def junit_xml(doc: dict[str, Any]) -> str:
    # ElementTree escapes every attribute and text, so artifact paths with '&' or '<' stay valid XML.
    root = ET.Element("testsuites", name="edgeopt gate")
    total = failures = 0
    for target, t in doc["targets"].items():
        cases = t["budgets"]
        failed = sum(1 for v in cases.values() if not v["pass"])
        seconds = t.get("measurement", {}).get("seconds", 0.0)
        suite = ET.SubElement(root, "testsuite", name=target, tests=str(len(cases)), failures=str(failed),
                              errors="0", skipped="0", time=f"{seconds:.3f}")
        props = ET.SubElement(suite, "properties")
        for key, value in (("artifact", t["artifact"]), ("reference", t["reference"]["kind"])):
            ET.SubElement(props, "property", name=key, value=str(value))
        for name, v in cases.items():
            case = ET.SubElement(suite, "testcase", classname=f"edgeopt.gate.{target}", name=name, time="0")
            if not v["pass"]:
                failure = ET.SubElement(case, "failure", type="BudgetExceeded", message=summary_line(name, v))
                failure.text = (f"value {fmt(v['metric'], v['value'])}, limit {limit_text(v)}\n"
                                f"evidence: {evidence(v)}\nartifact: {t['artifact']}\n")
        total += len(cases)
        failures += failed
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
