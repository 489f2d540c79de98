"""MLflow tracking and the model registry, end to end: a real `mlflow server` on 127.0.0.1 and
the embedded SQLite store, each with two tracked `edgeopt compress` runs of a tiny ONNX model,
both packages registered, promote v1 then v2, roll back to v1, and `pull NAME@production`
byte-identical to v1's package. Plus the bad inputs: server unreachable, nothing to roll back
to, a tampered package, a failed gate."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import require_extra
from onnx import TensorProto, helper, numpy_helper

from toolchain.cli.main import main
from toolchain.config.base import to_toml

require_extra("mlflow", "mlflow")
pytestmark = pytest.mark.slow  # each compress run and the server start take seconds


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(argv: list[str]) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main(argv)
    return code, out.getvalue().decode(), err.getvalue().decode()


def _mlp(path: Path, hidden: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {"w1": rng.standard_normal((hidden, 32)) / np.sqrt(32), "b1": rng.standard_normal(hidden) * 0.1,
              "w2": rng.standard_normal((4, hidden)) / np.sqrt(hidden), "b2": rng.standard_normal(4) * 0.1}
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def tiny(fast_targets_dir, tmp_path_factory) -> dict:
    """Two different tiny models and the fast cpu-server profile with budgets they can meet,
    plus one whose size budget no model meets (a package whose gate failed)."""
    d = tmp_path_factory.mktemp("tiny")
    data = tomllib.loads((fast_targets_dir / "cpu-server.toml").read_text())
    (d / "ok").mkdir()
    (d / "strict").mkdir()
    (d / "ok" / "cpu-server.toml").write_text(to_toml({**data, "budgets": {**data["budgets"], "max_size_ratio": 0.9,
                                                                              "max_accuracy_drop": 1.0}}))
    (d / "strict" / "cpu-server.toml").write_text(to_toml({**data, "budgets": {**data["budgets"], "max_bytes": 100}}))
    return {"v1": _mlp(d / "m1.onnx", 96, 1), "v2": _mlp(d / "m2.onnx", 64, 2), "ok": d / "ok", "strict": d / "strict"}


def _compress(model: Path, out: Path, targets: Path, *track: str) -> tuple[int, str, str]:
    return _cli(["compress", str(model), "--target", "cpu-server", "--data", "random", "--name", "tiny",
                 "--targets-dir", str(targets), "--out", str(out), *track])


def _package(out: Path) -> Path:
    return Path(json.loads((out / "report.json").read_text())["targets"]["cpu-server"]["package"])


def _registry_flow(uri_args: list[str], pkg1: Path, pkg2: Path, pull_dir: Path) -> None:
    """register both, promote 1 then 2, roll back to 1, pull @production == v1, bytes and all."""
    assert _sha(pkg1) != _sha(pkg2)  # else "identical to v1" could not tell the versions apart
    versions = []
    for pkg in (pkg1, pkg2):
        code, out, err = _cli(["registry", "register", str(pkg), "--name", "tiny", "--json", *uri_args])
        assert code == 0, err
        versions.append(json.loads(out)["version"])
    assert versions == [1, 2]
    for version in versions:
        code, out, err = _cli(["registry", "promote", "tiny", str(version), "--alias", "production", "--json", *uri_args])
        assert code == 0, err
    assert json.loads(out)["previous"] == 1
    code, out, err = _cli(["registry", "rollback", "tiny", "--alias", "production", "--json", *uri_args])
    assert code == 0, err
    assert json.loads(out) == {"name": "tiny", "alias": "production", "version": 1, "rolled_back": 2}
    code, out, err = _cli(["registry", "pull", "tiny@production", "--out", str(pull_dir), "--json", *uri_args])
    assert code == 0, err
    pulled = json.loads(out)
    assert pulled["version"] == 1
    assert _sha(pulled["path"]) == _sha(pkg1)
    # v1 never had a predecessor: a second rollback exits 1 and leaves the alias on v1
    code, _, err = _cli(["registry", "rollback", "tiny", "--alias", "production", *uri_args])
    assert code == 1 and err.count("\n") == 1 and "no earlier version" in err
    code, out, _ = _cli(["registry", "list", "tiny", "--json", *uri_args])
    rows = {r["version"]: r for r in json.loads(out)["versions"]}
    assert code == 0 and rows[1]["aliases"] == ["production"] and rows[2]["aliases"] == []
    assert rows[1]["sha256"] == _sha(pkg1) and rows[2]["sha256"] == _sha(pkg2)


def _tracked_runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("edgeopt")
    return client, client.search_runs([exp.experiment_id], filter_string="tags.`edgeopt.kind` = 'compress'")


def _check_tracked(uri: str, outs: list[Path]) -> None:
    """One parent run per compress run, a nested run for cpu-server holding the report's numbers
    and the package zip."""
    client, parents = _tracked_runs(uri)
    assert len(parents) == len(outs)
    for out in outs:
        report = json.loads((out / "report.json").read_text())["targets"]["cpu-server"]
        parent = next(r for r in parents if r.data.tags["edgeopt.out_dir"] == str(out.resolve()))
        children = client.search_runs([parent.info.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert [c.info.run_name for c in children] == ["cpu-server"]
        child = children[0]
        assert child.data.metrics["bytes"] == report["bytes"]
        assert child.data.metrics["latency_ms.p50"] == pytest.approx(report["latency_ms"]["p50"])
        assert child.data.tags["edgeopt.shipped"] == report.get("shipped", "int8")
        assert child.data.params["target_profile.name"] == "cpu-server"
        arts = [a.path for a in client.list_artifacts(child.info.run_id, "package")]
        assert arts == [f"package/{Path(report['package']).name}"]
        assert "report.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]


@pytest.fixture()
def mlflow_server(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art")],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health within 120 s")
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: it and its workers, nothing else
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_server_track_register_promote_rollback_pull(tiny, mlflow_server, tmp_path):
    outs = [tmp_path / "runs" / "a", tmp_path / "runs" / "b"]
    for model, out in zip((tiny["v1"], tiny["v2"]), outs):
        code, _, err = _compress(model, out, tiny["ok"], f"--track={mlflow_server}", "--track-required")
        assert code == 0, err
    _check_tracked(mlflow_server, outs)
    assert not (tmp_path / "runs" / "mlruns.db").exists()  # a server URI never makes a local store
    _registry_flow(["--registry", mlflow_server], _package(outs[0]), _package(outs[1]), tmp_path / "pulled")


def test_embedded_store_flow_and_failed_gate(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # the registry commands' default store: runs/mlruns.db here
    outs = [Path("runs") / "a", Path("runs") / "b"]
    code, _, err = _compress(tiny["v1"], outs[0], tiny["ok"], "--track")
    assert code == 0, err
    code, _, err = _compress(tiny["v2"], outs[1], tiny["strict"], "--track")
    assert code == 1, err  # max_bytes 100 fails, the package is still written and tracked
    assert (tmp_path / "runs" / "mlruns.db").is_file()
    _check_tracked(f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}", [tmp_path / o for o in outs])
    failed = _package(tmp_path / outs[1])
    code, _, err = _cli(["registry", "register", str(failed), "--name", "tiny"])
    assert code == 1 and err.count("\n") == 1 and "max_bytes" in err and "--allow-failed" in err
    code, _, err = _cli(["registry", "list", "tiny"])
    assert code == 2 and "tiny" in err  # the refused package registered nothing
    _registry_flow_allow_failed(_package(tmp_path / outs[0]), failed, tmp_path / "pulled")


def _registry_flow_allow_failed(pkg1: Path, pkg2: Path, pull_dir: Path) -> None:
    code, out, err = _cli(["registry", "register", str(pkg1), "--name", "tiny", "--json"])
    assert code == 0 and json.loads(out)["gate"] == "pass", err
    code, out, err = _cli(["registry", "register", str(pkg2), "--name", "tiny", "--allow-failed", "--json"])
    assert code == 0 and json.loads(out) | {"version": 2, "gate": "fail"} == json.loads(out), err
    for version in (1, 2):
        assert _cli(["registry", "promote", "tiny", str(version), "--alias", "production"])[0] == 0
    assert _cli(["registry", "rollback", "tiny", "--alias", "production"])[0] == 0
    code, out, err = _cli(["registry", "pull", "tiny@production", "--out", str(pull_dir), "--json"])
    assert code == 0 and json.loads(out)["version"] == 1, err
    assert _sha(json.loads(out)["path"]) == _sha(pkg1)
    code, _, err = _cli(["registry", "rollback", "tiny", "--alias", "production"])
    assert code == 1
    code, out, _ = _cli(["registry", "list", "tiny", "--json"])
    assert [r["aliases"] for r in json.loads(out)["versions"]] == [[], ["production"]]  # newest first: v2, v1


def test_unreachable_server_warns_once_or_exits_2_when_required(tiny, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    out = tmp_path / "run"
    code, stdout, err = _compress(tiny["v1"], out, tiny["ok"], f"--track={dead}", "--json")
    assert code == 0 and json.loads(stdout)["passed"] is True  # stdout is still one document
    assert (out / "report.json").is_file() and _package(out).is_file()
    lines = [line for line in err.splitlines() if "tracking" in line]
    assert len(lines) == 1 and lines[0].startswith("edgeopt: warning: tracking skipped:") and dead in lines[0]
    code, _, err = _compress(tiny["v1"], tmp_path / "run2", tiny["ok"], f"--track={dead}", "--track-required")
    assert code == 2 and (tmp_path / "run2" / "report.json").is_file()
    assert err.strip().splitlines()[-1].startswith("edgeopt: error:") and dead in err


def _tamper(pkg: Path, dest: Path) -> Path:
    with zipfile.ZipFile(pkg) as src, zipfile.ZipFile(dest, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, data + b"\0" if info.filename == "golden.npz" else data)
    return dest


def test_tampered_package_is_refused_naming_the_check(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "t"
    assert _compress(tiny["v1"], out, tiny["ok"])[0] == 0
    bad = _tamper(_package(out), tmp_path / "tampered.zip")
    code, _, err = _cli(["registry", "register", str(bad), "--name", "tiny"])
    assert code == 1 and err.count("\n") == 1
    assert "check 'file golden.npz' failed" in err
    key = tmp_path / "key.pem"
    assert _cli(["keygen", str(key)])[0] == 0
    pub = tmp_path / "key.pem.pub"
    code, _, err = _cli(["registry", "register", str(_package(out)), "--name", "tiny", "--public-key", str(pub)])
    assert code == 1 and "check 'signature' failed" in err  # unsigned, and a key says it must be signed
    assert not (tmp_path / "runs" / "mlruns.db").exists()  # refused before any store was opened


def test_promote_unknown_version_is_bad_input_and_moves_nothing(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "u"
    assert _compress(tiny["v1"], out, tiny["ok"])[0] == 0
    assert _cli(["registry", "register", str(_package(out)), "--name", "tiny"])[0] == 0
    code, _, err = _cli(["registry", "promote", "tiny", "7", "--alias", "production"])
    assert code == 2 and err.count("\n") == 1
    code, _, err = _cli(["registry", "rollback", "tiny", "--alias", "production"])
    assert code == 1 and "no alias 'production'" in err


def test_edgeopt_run_is_tracked_with_its_recipe_as_params(reduced_recipe, fast_targets_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "runs" / "digits"
    code, stdout, err = _cli(["run", str(reduced_recipe), "--target", "cpu-server", "--out", str(out),
                              "--targets-dir", str(fast_targets_dir), "--json", "--track"])
    assert code in (0, 1), err
    report = json.loads(stdout)  # stdout is still exactly the report
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}")
    exp = client.get_experiment_by_name("edgeopt")
    [parent] = client.search_runs([exp.experiment_id], filter_string="tags.`edgeopt.kind` = 'run'")
    assert parent.data.params["recipe.train.epochs"] == "6" and parent.data.params["recipe.prune.amount"] == "0.3"
    assert parent.data.tags["edgeopt.recipe_hash"] == report["recipe"]["hash"]
    assert parent.data.tags["edgeopt.passed"] == str(report["passed"]).lower()
    [child] = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    target = report["targets"]["cpu-server"]
    assert child.data.metrics["bytes"] == target["bytes"]
    assert child.data.metrics["accuracy"] == pytest.approx(target["accuracy"])
    for budget, verdict in target["budgets"].items():
        assert child.data.tags[f"budget.{budget}"] == ("pass" if verdict["pass"] else "fail")
    assert child.data.metrics["candidate.int8.bytes"] == target["selection"]["candidates"]["int8"]["bytes"]
