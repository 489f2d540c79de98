"""Fast checks of the tracking helpers: URI precedence, flattening into MLflow's keys, name and
alias rules, and the skip-or-exit-2 decision for a store that cannot be used (no mlflow import
needed for any of these; the end-to-end flows are in test_tracking.py)."""

from __future__ import annotations

import math
import socket

import pytest
from conftest import require_extra

from toolchain.errors import BadInput
from toolchain.tracking import flatten, registry, store, track_run, worker


def test_uri_precedence_explicit_then_env_then_embedded(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert store.resolve_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    assert store.resolve_uri("", tmp_path) == "http://env:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert store.resolve_uri(None, tmp_path) == f"sqlite:///{(tmp_path / 'mlruns.db').resolve().as_posix()}"
    assert store.artifact_root(store.resolve_uri(None, tmp_path)) == (tmp_path / "mlartifacts").resolve().as_uri()
    assert store.artifact_root("http://h:1") is None  # a server decides where artifacts go
    with pytest.raises(BadInput, match="no known scheme"):
        store.resolve_uri("models/recipe.toml", tmp_path)


def test_flatten_keeps_numbers_as_metrics_and_everything_as_params():
    doc = {"bytes": 1234, "latency_ms": {"p50": 0.5, "p99": float("nan")}, "passed": True, "note": None,
           "shape": [1, 3], "who's": {"a b": 2}}
    m = flatten.metrics(doc)
    assert m == {"bytes": 1234.0, "latency_ms.p50": 0.5, "passed": 1.0, "who_s.a b": 2.0}  # NaN dropped
    p = flatten.params(doc, "recipe")
    assert p["recipe.shape"] == "[1, 3]" and p["recipe.bytes"] == "1234" and "recipe.note" not in p
    assert len(flatten.params({"long": "x" * 7000})["long"]) == 6000
    assert all(not math.isnan(v) for v in m.values())


@pytest.mark.parametrize("alias", ["latest", "v3", "V12", "prod uction", "", "a" * 101])
def test_aliases_mlflow_reserves_or_refuses_are_bad_input(alias):
    with pytest.raises(BadInput):
        registry.check_alias(alias)


def test_names_and_refs():
    assert registry.parse_ref("digits-cnn@production") == ("digits-cnn", "production")
    assert registry.check_alias("v2-candidate") == "v2-candidate"
    for bad in ("digits-cnn", "@production", "a/b@prod"):
        with pytest.raises(BadInput):
            registry.parse_ref(bad)


def _dead_uri() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


def test_unusable_store_is_one_warning_line_or_exit_2_when_required(tmp_path, capsys):
    doc = {"recipe": {"name": "r", "hash": "h"}, "passed": True, "targets": {}}
    assert track_run(doc, tmp_path / "run", None) is None  # not asked for: nothing at all
    assert capsys.readouterr() == ("", "")
    dead = _dead_uri()
    assert track_run(doc, tmp_path / "run", dead) is None
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("edgeopt: warning: tracking skipped:") and dead in err
    with pytest.raises(store.TrackingUnavailable) as info:
        track_run(doc, tmp_path / "run", dead, required=True)
    assert info.value.exit_code == 2 and dead in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written for a store that was never reached


def test_reading_commands_never_create_a_store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}"
    with pytest.raises(BadInput, match="no registry at"):
        registry.existing_client(uri)
    assert list(tmp_path.iterdir()) == []


def test_a_store_that_cannot_be_created_is_a_skip_not_a_crash(tmp_path, capsys):
    require_extra("mlflow", "mlflow")
    (tmp_path / "a-file").write_text("not a folder")
    doc = {"recipe": {"name": "r", "hash": "h"}, "passed": True, "targets": {}}
    assert track_run(doc, tmp_path / "run", f"sqlite:///{tmp_path / 'a-file' / 'mlruns.db'}") is None
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("edgeopt: warning: tracking skipped:")


def _doc() -> dict:
    return {"recipe": {"name": "r", "hash": "h"}, "passed": True, "targets": {}}


def test_worker_reports_its_failed_import_like_a_failed_import_here(tmp_path, monkeypatch, capsys):
    """--track starts a worker process that imports mlflow beside the run; when that import fails,
    the run's tracking is skipped with the usual one line, or exit 2 when required, naming the extra."""
    fake = tmp_path / "fake"
    (fake / "mlflow").mkdir(parents=True)
    (fake / "mlflow" / "__init__.py").write_text("raise ImportError('no mlflow in this environment')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}"
    for required in (False, True):
        monkeypatch.setattr(worker, "_worker", [])
        worker.start()
        worker.start()  # once per process
        assert len(worker._worker) == 1
        if required:
            with pytest.raises(store.TrackingUnavailable, match="mlflow is not installed") as info:
                track_run(_doc(), tmp_path / "runs" / "r", uri, required=True)
            assert info.value.exit_code == 2 and "pip install" in info.value.fix
        else:
            assert track_run(_doc(), tmp_path / "runs" / "r", uri) is None
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "tracking skipped: mlflow is not installed" in err
        assert worker._worker == []  # used up: its process has answered and exited
    assert not (tmp_path / "runs").exists()  # no store was created


def test_an_unused_worker_is_stopped_and_touches_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "_worker", [])
    monkeypatch.chdir(tmp_path)
    worker.start()
    proc = worker._worker[0]
    worker.stop()
    assert proc.returncode is not None and worker._worker == [] and not worker.started()
    assert list(tmp_path.iterdir()) == []


def test_a_failure_of_the_logging_code_in_the_worker_is_an_internal_error(tmp_path, monkeypatch):
    """Not a skip: a bug in what logs must not pass for an unusable store (exit 3, not 2 or a warning)."""
    require_extra("mlflow", "mlflow")
    monkeypatch.setattr(worker, "_worker", [])
    worker.start()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with pytest.raises(worker.TrackingCrashed, match="AttributeError"):
        worker.call(uri, "toolchain.tracking.log:no_such_function", {})
    assert not (tmp_path / "mlruns.db").exists()
