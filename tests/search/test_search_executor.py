"""`edgeopt search --executor local --workers 2` is the sequential search: same candidates, same
accuracies and sizes, the same chosen candidate and the same bytes in its artifact."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "batch"))

from batch_fixtures import subprocess_env, tiny_recipe


def _search(recipe: Path, out: Path, *extra: str) -> dict:
    # bytes, not latency: the choice must not depend on timing noise between the two runs
    argv = [sys.executable, "-m", "toolchain.cli", "search", str(recipe), "--target", "cpu-server", "--max-drop", "0",
            "--objective", "bytes", "--out", str(out), "--json", *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, env=subprocess_env(), timeout=900, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_search_on_two_workers_is_the_sequential_search(tmp_path):
    recipe = tiny_recipe("digits-cnn", tmp_path)
    seq = _search(recipe, tmp_path / "seq")
    # The trained and exported model from the sequential run's cache: the variants are built anew, by the workers.
    shutil.copytree(tmp_path / "seq" / "cache", tmp_path / "par" / "cache",
                    ignore=shutil.ignore_patterns("search-variants"))
    par = _search(recipe, tmp_path / "par", "--executor", "local", "--workers", "2")
    assert (tmp_path / "par" / "cache" / "search-variants").is_dir()

    def table(doc):
        return [(c["name"], c["accuracy"], c["bytes"], c["meets_budget"], c["detail"].get("logit_mse"))
                for c in doc["candidates"]]

    assert table(par) == table(seq) and len(seq["candidates"]) >= 3
    assert (par["best"], par["met"], par["recipe_hint"]) == (seq["best"], seq["met"], seq["recipe_hint"])
    best = Path("search") / "cpu-server" / seq["best_path"]
    assert _sha(tmp_path / "par" / best) == _sha(tmp_path / "seq" / best)
    assert all(c["latency_ms"] > 0 for c in par["candidates"])  # timed by the driver after the tasks
    # `--cache`: a search into another run dir finds the model and every variant in a shared cache
    # (the one `edgeopt run --cache` filled), with no cache of its own.
    shared = _search(recipe, tmp_path / "third", "--cache", (tmp_path / "seq" / "cache").as_uri())
    assert table(shared) == table(seq) and not (tmp_path / "third" / "cache").exists()
    assert _sha(tmp_path / "third" / best) == _sha(tmp_path / "seq" / best)


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--ray-address", "127.0.0.1:1"]])
def test_pool_options_without_an_executor_are_refused_before_any_work(extra, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli.main import main

    recipe = tiny_recipe("digits-cnn", tmp_path)
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = main(["search", str(recipe), "--target", "cpu-server", "--out", str(tmp_path / "o"), *extra])
    assert code == 2 and out.getvalue() == b""
    assert err.getvalue().decode().count("\n") == 1 and "add --executor local" in err.getvalue().decode()
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("pool,strategy", [
    (["--executor", "local", "--workers", "2"], []), (["--executor", "ray"], []),
    (["--executor", "local", "--workers", "2"], ["--sweep", "4"])], ids=["local", "ray", "local-sweep"])
def test_prune_search_on_two_workers_is_the_one_worker_search(pool, strategy, tmp_path):
    """The bisection (or a sweep) decides the same points on 2 workers as on 1 (both run torch on
    one thread), from candidates the workers prune and fine-tune; the kept files are byte-identical.
    On Ray (started by the search on this machine: its 2 CPUs) as on the process pool."""
    if pool[1] == "ray":
        from conftest import require_extra

        require_extra("ray", "ray")
    recipe = tiny_recipe("digits-cnn", tmp_path)
    one = _search(recipe, tmp_path / "one", "--prune-amount", *strategy, "--executor", "local", "--workers", "1")
    shutil.copytree(tmp_path / "one" / "cache", tmp_path / "two" / "cache",
                    ignore=shutil.ignore_patterns("search-variants"))
    two = _search(recipe, tmp_path / "two", "--prune-amount", *strategy, *pool)
    assert one["strategy"] == two["strategy"] == ("sweep" if strategy else "bisection")
    assert not strategy or [t["amount"] for t in one["tried"]] == [0.225, 0.45, 0.675, 0.9]

    def table(doc):
        return [(c["name"], c["accuracy"], c["bytes"], c["meets_budget"]) for c in doc["candidates"]]

    assert table(two) == table(one) and len(one["tried"]) >= 3
    assert (two["tried"], two["reverted"], two["best"], two["recipe_hint"]) == \
        (one["tried"], one["reverted"], one["best"], one["recipe_hint"])
    for cand in one["candidates"][1:]:  # every decided candidate, rebuilt by the pool's workers
        folder = Path(cand["path"]).parent
        for name in ("model.onnx", "plan.json"):
            assert _sha(tmp_path / "two" / "search" / "prune" / folder / name) == \
                _sha(tmp_path / "one" / "search" / "prune" / folder / name)
    built = [p for p in (tmp_path / "two" / "cache" / "search-variants").iterdir() if p.name.startswith("prune-")]
    assert len(built) >= len(one["tried"])  # the decided points, and any speculative one


@pytest.mark.parametrize("args,hint", [(["--iterations", "7"], "--prune-amount"), (["--sweep", "8"], "--prune-amount"),
                                       (["--prune-amount", "--sweep", "8", "--iterations", "3"], "pass one of them")])
def test_bisection_options_without_a_bisection_are_refused_before_any_work(args, hint, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli.main import main

    recipe = tiny_recipe("digits-cnn", tmp_path)
    with CliRunner().isolation() as (out, err, _):
        code = main(["search", str(recipe), "--target", "cpu-server", *args, "--out", str(tmp_path / "o")])
    assert code == 2 and out.getvalue() == b"" and not (tmp_path / "o").exists()
    assert err.getvalue().decode().count("\n") == 1 and hint in err.getvalue().decode()
