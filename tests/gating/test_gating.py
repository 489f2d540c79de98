"""`edgeopt gate` / `edgeopt baseline save`: the decision rule on synthetic samples, budgets
file errors, report formats, and the commands on a tiny ONNX model (fast measurement spec)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from toolchain.cli.gate import COMMANDS
from toolchain.errors import ConfigError
from toolchain.gating import gate_run
from toolchain.gating.baseline import Baseline
from toolchain.gating.budgets_file import GateBudgets, load_budgets, parse_budgets
from toolchain.gating.junit import junit_xml
from toolchain.gating.markdown import markdown
from toolchain.gating.noise import ARTIFACT, REFERENCE, MeasureSpec, Rounds, decide, measure, median_ci

KNOWN = ["arm-mobile", "cpu-server"]
FAST = MeasureSpec(min_rounds=8, max_rounds=12, max_seconds=3.0, slice_seconds=0.005, warmup_seconds=0.02)


# ---------------------------------------------------------------- statistics and the rule
def test_median_interval_matches_binomial_tables():
    lo, hi, cov = median_ci(np.arange(1, 101), 0.95)  # textbook: ranks 40 and 61 for n = 100
    assert (lo, hi) == (40.0, 61.0) and cov == pytest.approx(0.9648, abs=1e-4)
    lo, hi, cov = median_ci(np.arange(1, 9), 0.99)  # n = 8 is the smallest n with a 99% interval
    assert (lo, hi) == (1.0, 8.0) and cov == pytest.approx(1 - 2 / 256)


def test_decide_clear_under_passes_clear_over_fails_straddle_asks_for_more():
    assert decide(1.0, 0.9, 1.1, limit=1.2, final=False).passed is True
    assert decide(1.4, 1.3, 1.5, limit=1.2, final=False).passed is False
    assert decide(1.1, 1.0, 1.3, limit=1.2, final=False).passed is None
    assert decide(1.25, 1.0, 1.3, limit=1.2, final=True).passed is True  # default: a straddle at the cap passes
    assert decide(1.1, 1.0, 1.3, limit=1.2, final=True, straddle="fail").passed is False
    assert decide(1.25, 1.0, 1.3, limit=1.2, final=True, straddle="estimate").passed is False


def _rounds(artifact_ms: list[np.ndarray], reference_ms: list[np.ndarray] | None = None) -> Rounds:
    samples = {ARTIFACT: [np.asarray(a, float) for a in artifact_ms]}
    if reference_ms is not None:
        samples[REFERENCE] = [np.asarray(r, float) for r in reference_ms]
    return Rounds(list(samples), samples, seconds=1.0)


def _baseline_stub() -> Baseline:
    iv = {"value": 1.0, "ci_low": 0.9, "ci_high": 1.1, "coverage": 0.99}
    return Baseline.model_validate({
        "schema_version": 1, "target": "cpu-server", "source_kind": "artifact",
        "artifact": {"path": "m.onnx", "sha256": "0" * 64, "bytes": 1},
        "metrics": {"bytes": 1, "p50_ms": iv, "p90_ms": iv}, "measurement": {}, "host": {}, "versions": {}})


def _synthetic(ratio: float, noise: float, n: int = 12, seed: int = 0) -> Rounds:
    """Rounds whose reference drifts wildly (x0.5..x2) while artifact/reference stays ~ratio."""
    rng = np.random.default_rng(seed)
    art, ref = [], []
    for _ in range(n):
        drift = rng.uniform(0.5, 2.0)
        ref.append(drift * (1 + 0.01 * rng.standard_normal(200)))
        art.append(drift * ratio * (1 + noise * rng.standard_normal()) * (1 + 0.01 * rng.standard_normal(200)))
    return _rounds(art, ref)


@pytest.mark.parametrize(("ratio", "noise", "expected"), [(1.0, 0.01, True), (1.4, 0.01, False), (1.15, 0.2, None)])
def test_regression_verdicts_on_synthetic_rounds(ratio, noise, expected):
    ref = gate_run.Reference(Path("ref.onnx"), "baseline-artifact")
    base = _baseline_stub()
    checks = {k: v for k, v in gate_run._latency_checks(GateBudgets(max_regression=0.15), base, ref).items()
              if k.endswith("p50_ms")}
    v = gate_run._latency_verdicts(checks, _synthetic(ratio, noise), FAST, final=False)["max_regression.p50_ms"]
    assert v["pass"] is expected  # clearly under, clearly over, noisy straddle -> measure more
    assert v["ci_low"] <= v["value"] <= v["ci_high"]
    assert v["value"] == pytest.approx(ratio - 1, abs=0.02 if noise < 0.05 else 0.3)  # drift x0.5..x2 cancelled


@pytest.mark.parametrize(("regressions", "passed", "rule"), [
    ([0.05, 0.10, 0.18, 0.19, 0.20, 0.21, 0.22, 0.22, 0.23, 0.24, 0.30, 0.40], False, "80% interval above"),
    (list(np.linspace(0.05, 0.25, 12)), True, "still straddles"),
])
def test_straddle_at_the_cap_is_rechecked_at_80_percent(regressions, passed, rule):
    # 99% interval (ranks 2 and 11 of 12) straddles 0.15 in both cases; the 80% one (ranks 4 and 9) does not
    # in the first. Reference rounds are constant, so each round's ratio is exactly 1 + regression.
    rounds = _rounds([np.full(10, 1 + x) for x in regressions], [np.ones(10)] * len(regressions))
    ref = gate_run.Reference(Path("ref.onnx"), "baseline-artifact")
    checks = {k: v for k, v in gate_run._latency_checks(GateBudgets(max_regression=0.15), _baseline_stub(), ref).items()
              if k.endswith("p50_ms")}
    assert gate_run._latency_verdicts(checks, rounds, FAST, final=False)["max_regression.p50_ms"]["pass"] is None
    v = gate_run._latency_verdicts(checks, rounds, FAST, final=True)["max_regression.p50_ms"]
    assert v["pass"] is passed and rule in v["decided_by"] and v["final_ci_low"] > v["ci_low"]


def test_measure_keeps_going_while_undecided_and_stops_at_the_caps():
    calls = []
    spec = replace(FAST, min_rounds=3, max_rounds=7, max_seconds=60.0)
    fn = lambda: None
    r = measure({ARTIFACT: fn, REFERENCE: fn}, spec, lambda rounds: calls.append(len(rounds)) or len(rounds) >= 5)
    assert len(r) == 5 and calls == [3, 4, 5]  # re-measured twice after the first undecided look
    r = measure({ARTIFACT: fn}, spec, lambda rounds: False)
    assert len(r) == 7 and set(r.samples) == {ARTIFACT}  # never decided: the round cap ends it


# ---------------------------------------------------------------- budgets file
def test_budgets_file_round_trip_and_errors(tmp_path):
    tables = parse_budgets({"schema_version": 1, "cpu-server": {"max_p50_ms": 1.5, "max_regression": 0.1}}, "b.toml", KNOWN)
    assert tables["cpu-server"].max_regression == 0.1 and tables["cpu-server"].absolute().max_p50_ms == 1.5
    with pytest.raises(ConfigError, match=r"unknown key 'max_p50'; known keys here: .*max_p50_ms.*max_regression"):
        parse_budgets({"schema_version": 1, "cpu-server": {"max_p50": 1.0}}, "b.toml", KNOWN)
    with pytest.raises(ConfigError, match=r"unknown target '\[gpu\]'; known targets: arm-mobile, cpu-server"):
        parse_budgets({"schema_version": 1, "gpu": {"max_bytes": 1}}, "b.toml", KNOWN)
    with pytest.raises(ConfigError, match="schema_version"):
        parse_budgets({"cpu-server": {"max_bytes": 1}}, "b.toml", KNOWN)
    with pytest.raises(ConfigError, match="bad value for 'max_bytes'"):
        parse_budgets({"schema_version": 1, "cpu-server": {"max_bytes": "1"}}, "b.toml", KNOWN)
    (tmp_path / "bad.toml").write_text("schema_version = 1\n[cpu-server\n")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_budgets(tmp_path / "bad.toml")


# ---------------------------------------------------------------- reports
def _doc() -> dict:
    ok = {"metric": "bytes", "limit": 100.0, "value": 50.0, "pass": True, "decided_by": "exact"}
    bad = {"metric": "p50_ms", "limit": 1.0, "value": 2.5, "pass": False, "decided_by": "interval above limit",
           "ci_low": 2.0, "ci_high": 3.0, "coverage": 0.99}
    return {"passed": False, "targets": {
        "cpu-server": {"artifact": "a & <b>.onnx", "reference": {"kind": "none"}, "passed": False,
                       "measurement": {"rounds": 8, "runs": 80, "seconds": 1.5},
                       "budgets": {"max_bytes": ok, "max_p50_ms": bad}},
        "arm-mobile": {"artifact": "m.ort", "reference": {"kind": "none"}, "passed": True, "budgets": {"max_bytes": ok}}}}


def test_junit_parses_with_one_testcase_per_budget_and_failure_names_value_and_limit():
    root = ET.fromstring(junit_xml(_doc()).split("\n", 1)[1])
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"cpu-server", "arm-mobile"} and root.get("tests") == "3" and root.get("failures") == "1"
    cases = suites["cpu-server"].findall("testcase")
    assert [c.get("name") for c in cases] == ["max_bytes", "max_p50_ms"]
    failure = cases[1].find("failure")
    assert "2.5" in failure.get("message") and "> 1" in failure.get("message")
    assert cases[0].find("failure") is None and suites["cpu-server"].get("failures") == "1"


def test_markdown_has_a_table_row_per_budget():
    md = markdown(_doc())
    rows = [line for line in md.splitlines() if line.startswith("| max_")]
    assert len(rows) == 3 and "| FAIL |" in rows[1] and "| 2.5 | 1 |" in rows[1]


# ---------------------------------------------------------------- commands on a tiny model
def _mlp(path: Path, extra: int = 0) -> Path:
    """x @ w, then `extra` more multiplications by the same w: more work, (almost) no more bytes."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((256, 256)) / 16).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h0"])]
    for i in range(extra):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256])],
                              [helper.make_tensor_value_info(f"h{extra}", TensorProto.FLOAT, None)], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture
def fast(monkeypatch):
    """Short measurement and a fixed peak-memory figure (the real probe spawns 6 processes)."""
    monkeypatch.setattr("toolchain.gating.gate_run.DEFAULT_SPEC", FAST)
    monkeypatch.setattr("toolchain.gating.baseline_save.BASELINE_SPEC", FAST)
    monkeypatch.setattr("toolchain.gating.gate_run.peak_memory", lambda *a: 10.0)
    monkeypatch.setattr("toolchain.gating.baseline_save.peak_memory", lambda *a: 10.0)


def _cli(args: list[str]):
    return CliRunner().invoke(click.Group(commands=COMMANDS), args)


def _budgets(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "budgets.toml"
    path.write_text("schema_version = 1\n\n[cpu-server]\n" + body)
    return path


def test_gate_artifact_exit_codes_and_reports(tmp_path, fast):
    model = _mlp(tmp_path / "m.onnx")
    ok = _cli(["gate", str(model), "--target", "cpu-server", "--budgets",
               str(_budgets(tmp_path, "max_bytes = 1000000\nmax_p50_ms = 1000.0\n")), "--json",
               "--junit", str(tmp_path / "r.xml"), "--markdown", str(tmp_path / "r.md")])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    v = doc["targets"]["cpu-server"]["budgets"]["max_p50_ms"]
    assert doc["passed"] and v["pass"] and v["decided_by"] == "interval below limit" and v["value"] > 0
    assert doc["targets"]["cpu-server"]["measurement"]["rounds"] == FAST.min_rounds  # clear: no extra rounds
    assert len(ET.parse(tmp_path / "r.xml").getroot().findall("testsuite/testcase")) == 2

    bad = _cli(["gate", str(model), "--target", "cpu-server", "--budgets", str(_budgets(tmp_path, "max_bytes = 10\n")),
                "--junit", str(tmp_path / "r.xml")])
    assert bad.exit_code == 1
    failure = ET.parse(tmp_path / "r.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and f"{model.stat().st_size:,}" in failure.get("message")

    unmeasured = _cli(["gate", str(model), "--target", "cpu-server", "--budgets",
                       str(_budgets(tmp_path, "max_accuracy_drop = 0.01\n")), "--json"])
    assert unmeasured.exit_code == 1  # a bare artifact has no accuracy: never passes silently
    assert json.loads(unmeasured.output)["targets"]["cpu-server"]["budgets"]["max_accuracy_drop"]["value"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "cpu-server", "--budgets", "missing.toml"], "budgets file not found"),
    (["--target", "gpu", "--budgets", "B"], "unknown target 'gpu'"),
    (["--target", "arm-mobile", "--budgets", "B"], "has no [arm-mobile] table"),
    (["--budgets", "B"], "pass --target NAME"),
    (["--target", "cpu-server", "--budgets", "R"], "needs a baseline"),
])
def test_gate_bad_input_is_exit_2(tmp_path, fast, args, message):
    from toolchain.errors import EXIT_BAD_INPUT, EdgeoptError

    model = _mlp(tmp_path / "m.onnx")
    b = _budgets(tmp_path, "max_bytes = 100000\n")
    r = (tmp_path / "r.toml")
    r.write_text("schema_version = 1\n[cpu-server]\nmax_regression = 0.1\n")
    args = [str({"B": b, "R": r}.get(a, a)) for a in args]
    result = _cli(["gate", str(model), *args])
    assert isinstance(result.exception, EdgeoptError) and result.exception.exit_code == EXIT_BAD_INPUT
    assert message in str(result.exception)


def test_baseline_then_regression_gate_uses_the_baseline_artifact_as_reference(tmp_path, fast):
    model = _mlp(tmp_path / "m.onnx")
    out = tmp_path / "ci" / "baseline.json"
    saved = _cli(["baseline", "save", str(model), "--target", "cpu-server", "--out", str(out), "--copy-artifact"])
    assert saved.exit_code == 0, saved.output
    base = json.loads(out.read_text())
    assert base["artifact"]["path"] == "baseline.artifact.onnx" and base["metrics"]["bytes"] == model.stat().st_size
    assert base["metrics"]["p50_ms"]["ci_low"] <= base["metrics"]["p50_ms"]["value"] <= base["metrics"]["p50_ms"]["ci_high"]

    budgets = _budgets(tmp_path, "max_regression = 0.15\n")
    same = _cli(["gate", str(model), "--target", "cpu-server", "--budgets", str(budgets), "--baseline", str(out), "--json"])
    t = json.loads(same.output)["targets"]["cpu-server"]
    assert t["reference"]["kind"] == "baseline-artifact"
    assert set(t["budgets"]) == {f"max_regression.{m}" for m in ("p50_ms", "p90_ms", "bytes", "peak_memory_mb")}
    assert t["budgets"]["max_regression.bytes"]["value"] == 0.0

    slower = _mlp(tmp_path / "slower.onnx", extra=30)  # ~30x the work of the baseline model
    slow = _cli(["gate", str(slower), "--target", "cpu-server", "--budgets", str(budgets), "--baseline", str(out), "--json"])
    assert slow.exit_code == 1
    verdicts = json.loads(slow.output)["targets"]["cpu-server"]["budgets"]
    assert verdicts["max_regression.p50_ms"]["decided_by"] == "interval above limit"
    assert verdicts["max_regression.p50_ms"]["value"] > 1.0 and verdicts["max_regression.bytes"]["pass"]


def test_run_directory_uses_fp32_reference_when_the_baseline_artifact_is_gone(tmp_path, fast):
    run = tmp_path / "run"
    (run / "cpu-server").mkdir(parents=True)
    art, fp32 = _mlp(run / "cpu-server" / "m.onnx"), _mlp(run / "cpu-server" / "m.fp32.onnx", extra=1)
    report = {"out_dir": "/elsewhere/run", "targets": {"cpu-server": {  # recorded where another CI job ran it
        "artifact": "/elsewhere/run/cpu-server/m.onnx", "fp32_artifact": "/elsewhere/run/cpu-server/m.fp32.onnx",
        "fp32_bytes": fp32.stat().st_size, "accuracy_drop": 0.004}}}
    (run / "report.json").write_text(json.dumps(report))
    out = tmp_path / "baseline.json"
    assert _cli(["baseline", "save", str(run), "--target", "cpu-server", "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["fp32_ratio"]["p50"]["value"] > 0
    _mlp(art, extra=2)  # the next run overwrites the artifact: its sha no longer matches the baseline
    budgets = _budgets(tmp_path, "max_regression = 5.0\nmax_size_ratio = 2.0\nmax_accuracy_drop = 0.01\n")
    result = _cli(["gate", str(run), "--budgets", str(budgets), "--baseline", str(out), "--json"])
    t = json.loads(result.output)["targets"]["cpu-server"]
    assert result.exit_code == 0 and t["reference"]["kind"] == "fp32"
    assert t["budgets"]["max_accuracy_drop"]["value"] == 0.004
    assert t["budgets"]["max_size_ratio"]["value"] == pytest.approx(art.stat().st_size / fp32.stat().st_size)


def test_gate_a_package_names_the_zip_and_takes_its_target_from_the_manifest(tmp_path, fast):
    from toolchain.cli.package import package_cmd

    built = CliRunner().invoke(package_cmd, [str(_mlp(tmp_path / "m.onnx")), "--target", "cpu-server",
                                             "--out", str(tmp_path / "pkg")])
    assert built.exit_code == 0, built.output
    pkg = Path(built.output.strip())
    result = _cli(["gate", str(pkg), "--budgets", str(_budgets(tmp_path, "max_p50_ms = 1000.0\n")), "--json"])
    t = json.loads(result.output)["targets"]["cpu-server"]
    assert result.exit_code == 0 and t["kind"] == "package" and t["artifact"] == f"{pkg}!model.onnx"
    wrong = _cli(["gate", str(pkg), "--target", "arm-mobile", "--budgets", str(_budgets(tmp_path, "max_bytes = 1\n"))])
    assert "built for target 'cpu-server'" in str(wrong.exception)
