"""`edgeopt search --track`: one MLflow run per search in the embedded SQLite store, one nested
run per candidate holding its numbers. The search itself is replaced by a fixed outcome (the
search is tested in tests/search): what is checked here is what reaches the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_extra

from toolchain.cli.main import main
from toolchain.search.budget import Candidate, SearchReport
from toolchain.search.session import SearchOutcome, recipe_hint

require_extra("mlflow", "mlflow")

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def _outcome(search_dir: Path) -> SearchOutcome:
    cands = [
        Candidate("fp32", "fp32.onnx", 0.98, 40_000, 0.31, baseline=True),
        Candidate("int8", "int8.onnx", 0.21, 11_000, 0.12),
        Candidate(
            "int8-fallback-1",
            "best.onnx",
            0.975,
            12_500,
            0.13,
            meets_budget=True,
            detail={"excluded_nodes": ["node_linear"], "fallbacks": 1},
        ),
    ]
    report = SearchReport(
        kind="quantization",
        budget={"max_drop": 0.01, "drop_kind": "absolute", "objective": "latency"},
        baseline_accuracy=0.98,
        min_accuracy=0.97,
        met=True,
        best="int8-fallback-1",
        best_path="best.onnx",
        candidates=cands,
        tried=[],
        reverted=[],
        plots=["pareto_quant_latency.png"],
        speedup_vs_fp32=2.38,
    )
    search_dir.mkdir(parents=True, exist_ok=True)
    report.save(search_dir / "search_quant.json")
    (search_dir / "pareto_quant_latency.png").write_bytes(PNG)
    doc = {**report.to_dict(), "recipe_hint": recipe_hint(report, "quantization")}
    return SearchOutcome("quantization", "cpu-server", search_dir, report, doc)


@pytest.mark.slow  # creating a new SQLite store runs MLflow's schema migrations: 8 s CPU, 20 s on a busy machine
def test_search_track_logs_one_run_with_a_nested_run_per_candidate(
    reduced_recipe, fast_targets_dir, tmp_path, monkeypatch
):
    from toolchain.search import session

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "runs" / "digits"
    monkeypatch.setattr(
        session,
        "run_search",
        lambda rec, profile, target, rd, budget, knob, **_: _outcome(Path(rd) / "search" / target),
    )
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main(
            [
                "search",
                str(reduced_recipe),
                "--target",
                "cpu-server",
                "--targets-dir",
                str(fast_targets_dir),
                "--out",
                str(run_dir),
                "--json",
                "--track",
            ]
        )
    assert code == 0, err.getvalue().decode()
    assert json.loads(out.getvalue())["best"] == "int8-fallback-1"  # stdout is still exactly the report

    from mlflow import MlflowClient

    db = tmp_path / "runs" / "mlruns.db"  # beside the run directory, where `edgeopt run --track` logs too
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("edgeopt")
    [parent] = client.search_runs([exp.experiment_id], filter_string="tags.`edgeopt.kind` = 'search'")
    assert parent.info.status == "FINISHED"
    assert (
        parent.data.tags["edgeopt.best"] == "int8-fallback-1"
        and parent.data.tags["edgeopt.search"] == "quantization"
    )
    assert parent.data.tags["edgeopt.target"] == "cpu-server" and parent.data.tags["edgeopt.passed"] == "true"
    assert (
        parent.data.params["recipe.train.epochs"] == "6" and parent.data.params["budget.max_drop"] == "0.01"
    )
    assert (
        parent.data.metrics["best.accuracy"] == pytest.approx(0.975)
        and parent.data.metrics["candidates"] == 3
    )
    assert parent.data.metrics["speedup_vs_fp32"] == pytest.approx(2.38)
    arts = sorted(a.path for a in client.list_artifacts(parent.info.run_id))
    assert arts == ["plots", "search_quant.json"]
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == [
        "plots/pareto_quant_latency.png"
    ]
    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    got = {c.info.run_name: c for c in children}
    assert sorted(got) == ["fp32", "int8", "int8-fallback-1"]
    assert got["int8"].data.metrics["bytes"] == 11_000 and got["int8"].data.metrics[
        "accuracy"
    ] == pytest.approx(0.21)
    assert (
        got["fp32"].data.metrics["baseline"] == 1.0
        and got["int8"].data.tags["edgeopt.meets_budget"] == "false"
    )
    best = got["int8-fallback-1"]
    assert best.data.tags["edgeopt.best"] == "true" and best.data.metrics["latency_ms"] == pytest.approx(0.13)
    assert (
        best.data.metrics["detail.fallbacks"] == 1
        and best.data.params["detail.excluded_nodes"] == '["node_linear"]'
    )


def test_search_without_track_never_imports_mlflow_for_tracking(
    reduced_recipe, fast_targets_dir, tmp_path, monkeypatch
):
    from toolchain.search import session
    from toolchain.tracking import worker

    monkeypatch.setattr(worker, "_worker", [])
    started = []
    monkeypatch.setattr(worker, "start", lambda: started.append(True))
    monkeypatch.setattr(
        session,
        "run_search",
        lambda rec, profile, target, rd, budget, knob, **_: _outcome(Path(rd) / "search" / target),
    )
    runner = CliRunner()
    with runner.isolation():
        code = main(
            [
                "search",
                str(reduced_recipe),
                "--target",
                "cpu-server",
                "--targets-dir",
                str(fast_targets_dir),
                "--out",
                str(tmp_path / "runs" / "d"),
                "--json",
            ]
        )
    assert code == 0
    assert started == [] and not (tmp_path / "runs" / "mlruns.db").exists()
