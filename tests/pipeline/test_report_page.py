"""report.html: self-contained, well-formed, and it shows what the JSON says."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from html.parser import HTMLParser

import pytest

from toolchain.pipeline.page import render_page

_VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(HTMLParser):
    """Fails on a closing tag that does not match the open one; collects ids, srcs and text."""

    def __init__(self):
        super().__init__()
        self.stack, self.ids, self.srcs, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.ids += [a["id"]] if "id" in a else []
        self.srcs += [a["src"]] if "src" in a else []
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data):
        self.text.append(data)


def _doc(tmp_path, passed=True):
    pkg = tmp_path / "m-cpu-server.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("manifest.json", "{}")
        zf.writestr("model.onnx", b"x" * 1234)
    lat = {"p50": 0.02, "p90": 0.03, "p99": 0.04}
    target = {
        "bytes": 1000, "fp32_bytes": 4000, "size_ratio": 0.25, "latency_ms": lat, "fp32_latency_ms": lat,
        "speedup_vs_fp32": 1.5, "peak_memory_mb": 17.0, "fp32_peak_memory_mb": 18.0, "memory_ratio": 0.94,
        "accuracy": None, "min_sqnr_db": 31.2, "passed": passed, "package": str(pkg), "shipped": "int8",
        "budgets": {"max_size_ratio": {"value": 0.25, "limit": 0.3, "pass": True},
                    "min_sqnr_db": {"value": 31.2, "limit": 40.0, "pass": passed}},
        "selection": {"rule": "fastest", "candidates": {"int8": {"selection_p50_ms": 0.02, "bytes": 1000,
                                                                  "failed_budgets": []}}},
        "latency_by_batch": {"fp32": {"1": lat}, "int8": {"1": lat}},
        "thread_sweep": {"p50_ms": {"1": {"1": 0.02}, "2": {"1": 0.03}}, "fastest": {"1": 1}},
        "host_caveat": "Test CPU has no VNNI: ...",
    }
    return {"recipe": {"name": "m<&>"}, "out_dir": str(tmp_path), "passed": passed, "targets": {"cpu-server": target},
            "baseline": {"host": {"cpu": "Test CPU", "cores": 2}}}


def test_page_is_well_formed_self_contained_and_shows_the_verdicts(tmp_path):
    page = render_page(_doc(tmp_path, passed=False))
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []  # every element closed
    text = " ".join(checker.text)
    assert checker.ids == ["target-cpu-server"] and "m<&>" in text  # escaped in the source, shown as is
    assert "note: Test CPU has no VNNI: ..." in text  # why this host's int8 numbers may not be the target's
    assert "BUDGET FAILED" in text and "min_sqnr_db" in text and ">= 40" in text and "model.onnx" in text
    assert all(src.startswith("data:image/png;base64,") for src in checker.srcs) and checker.srcs  # no network
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


@pytest.mark.slow
def test_page_renders_in_a_real_headless_browser(tmp_path):
    """Debian's chromium loads the page from disk, with the network flags off: the DOM it built
    holds every target section and the screenshot is a real picture."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium missing: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    page = tmp_path / "report.html"
    page.write_text(render_page(_doc(tmp_path)))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False).stdout
    assert 'id="target-cpu-server"' in dom and "all budgets met" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
