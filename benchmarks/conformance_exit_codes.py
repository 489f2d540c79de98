"""Exit codes of `edgeopt compress --data random` over the ONNX package's own conformance graphs.

Runs every model under onnx/backend/test/data/{pytorch-converted,pytorch-operator} for each
target, one fresh process at a time, and tallies exit codes (0 built, 1 a budget failed,
2 refused, other = crash/timeout) plus, for crashes, the last line of stderr. Nothing is downloaded.

    PYTHONPATH=$PWD python benchmarks/conformance_exit_codes.py --target cpu-server --target arm-mobile \
        --out /tmp/corpus --jsonl /tmp/corpus/results.jsonl [--root <other checkout>] [--offset K] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

SUITES = ("pytorch-converted", "pytorch-operator")


def corpus() -> list[Path]:
    import onnx

    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    return sorted(p for s in SUITES for p in (data / s).glob("*/model.onnx"))


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_one(model: Path, target: str, out: Path, root: Path, timeout: float) -> dict:
    run_dir = out / target / f"{model.parent.parent.name}-{model.parent.name}"
    cmd = [sys.executable, "-m", "toolchain.cli", "compress", str(model), "--target", target, "--data", "random",
           "--json", "--out", str(run_dir), "--name", model.parent.name.removeprefix("test_")]
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False, cwd=out)
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        code, err = "timeout", ""
    return {"model": f"{model.parent.parent.name}/{model.parent.name}", "target": target, "exit": code,
            "seconds": round(time.perf_counter() - start, 1), "last_stderr": last_line(err),
            "traceback": "Traceback (most recent call last)" in err, "failed_budgets": failed_budgets(run_dir, target)}


def failed_budgets(run_dir: Path, target: str) -> list[str] | None:
    """The budgets the run's report.json says failed (None: no report, the run did not finish)."""
    report = run_dir / "report.json"
    if not report.is_file():
        return None
    doc = json.loads(report.read_text(encoding="utf-8")).get("targets", {}).get(target, {})
    return sorted(k for k, v in doc.get("budgets", {}).items() if not v.get("pass"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jsonl", type=Path, required=True)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--offset", type=int, default=0, help="start at this model (to split the corpus over processes)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    models = corpus()[args.offset :][: args.limit or None]
    tally: Counter = Counter()
    with args.jsonl.open("a", encoding="utf-8") as log:
        for target in args.target:
            for model in models:
                row = run_one(model, target, args.out, args.root, args.timeout)
                log.write(json.dumps(row) + "\n")
                log.flush()
                tally[(target, str(row["exit"]))] += 1
    for (target, code), n in sorted(tally.items()):
        print(f"{target}\texit {code}\t{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
