"""Quantization under an accuracy budget: int8 everywhere, then fp32 fallback for the parts that
hurt most, one at a time, until the budget holds.

The unit of fallback is an activation tensor, not a node: in a QDQ graph a tensor is quantized
whenever its producer *or any consumer* is int8, so excluding one node rarely removes the harmful
rounding (measured: a Gemm with a 1000x outlier channel, excluded alone, lifted accuracy only from
0.21 to 0.23). A unit is the tensor's producer plus every node that reads it, followed through
value-preserving ops (Relu, MaxPool, Reshape...) that would otherwise re-quantize it.

Ranking is leave-one-out: quantize everything except unit u and measure how much the logit error
(mean squared difference to the fp32 model) falls. That measures each unit in the context of the
rest of the quantized graph, which per-tensor SQNR does not (error there grows downstream, so
late tensors always look worst). It costs one calibration per unit, fine for edge-sized graphs;
`max_probe` caps it for large ones.

Last, when the model has a stem conv (see toolchain.stages.quantize.stem_convs), the final variant
is built again with the stem's precision flipped relative to the scheme: whether an int8 stem pays
is a kernel question, so the interleaved latency measurement picks between the two.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from toolchain.config.target import QuantizeScheme
from toolchain.search import tasks as T
from toolchain.search.budget import Candidate, SearchBudget, SearchReport, pick_best
from toolchain.search.measure import latency_p50, onnx_logits

# Ops that compute a new value range: their outputs get a freshly calibrated scale, so they start units.
PROBED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "Concat")
# Ops that pass their input's range through (or clip it); QDQ re-quantizes their outputs with the
# same bad scale, so a unit follows the tensor through them to the next computing op.
TRANSPARENT_OPS = ("Relu", "Clip", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                   "Identity", "Resize", "Split", "Slice", "AveragePool", "GlobalAveragePool")


def fallback_units(pre: Path) -> list[dict]:
    """One unit per output of a computing op: [producer, readers..., readers through transparent ops]."""
    import onnx

    nodes = list(onnx.load(str(pre)).graph.node)
    readers: dict[str, list] = {}
    for n in nodes:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    units = []
    for n in nodes:
        if n.op_type not in PROBED_OPS or not n.name:
            continue
        members, frontier = [n.name], list(n.output)
        while frontier:
            for reader in readers.get(frontier.pop(), []):
                if reader.name and reader.name not in members:
                    members.append(reader.name)
                    if reader.op_type in TRANSPARENT_OPS:
                        frontier.extend(reader.output)
        units.append({"unit": n.output[0], "op": n.op_type, "nodes": members})
    return units


class _Trials:
    """The search's learned state (candidates kept, every step tried, what fell back to fp32) and
    what every variant is built from. Variants are built and scored by toolchain.search.tasks,
    on the executor when there is one; a candidate's model is copied out of the cache into
    out_dir/candidates/ only once the sequential order of decisions has kept it."""

    def __init__(self, out_dir: Path, runner: T.Runner, cache_dir: Path, pre: Path, calib_x, scheme: QuantizeScheme,
                 eval_x, eval_y, ref_probe, floor: float):
        self.out_dir, self.runner, self.cache_dir, self.pre = out_dir, runner, cache_dir, pre
        self.ranges = T.calibration_ranges(pre, calib_x, scheme, cache_dir)  # once, here: every variant reads it
        self.calib_x, self.scheme, self.eval_x, self.eval_y, self.ref_probe = calib_x, scheme, eval_x, eval_y, ref_probe
        self.floor = floor
        self.candidates: list[Candidate] = []
        self.tried: list[dict] = []
        self.reverted: list[dict] = []
        self.scored: dict[str, dict] = {}  # variant key -> its scores, including speculative ones never kept
        self._stems: list[str] | None = None

    def qdq(self, exclude: list[str], scheme: QuantizeScheme | None = None) -> tuple:
        """The task call that builds and scores one QDQ variant."""
        return (T.evaluate_qdq, (self.cache_dir, self.pre, self.calib_x, list(exclude), scheme or self.scheme,
                                 self.eval_x, self.eval_y, self.ref_probe, self.ranges))

    def stem_flip(self, exclude: list[str]) -> tuple[QuantizeScheme, list[str]] | None:
        """The scheme with the stem conv's precision flipped and the stem nodes it changes; None when
        flipping changes nothing (no stem conv, or the exclusions already keep it fp32)."""
        import onnx

        from toolchain.stages.quantize import stem_convs

        if self._stems is None:
            self._stems = stem_convs(onnx.load(str(self.pre), load_external_data=False))
        stems = [n for n in self._stems if n not in exclude]
        return (self.scheme.model_copy(update={"fp32_stem": not self.scheme.fp32_stem}), stems) if stems else None

    @staticmethod
    def key(exclude: list[str], scheme: QuantizeScheme) -> str:
        return f"qdq:{'fp32' if scheme.fp32_stem else 'int8'}-stem:{'|'.join(exclude)}"

    def score(self, variants: list[tuple[list[str], QuantizeScheme]], extra: dict | None = None) -> dict[str, dict]:
        """Score every variant not scored yet as one round of tasks (with `extra` calls beside them)."""
        calls = {self.key(ex, sc): self.qdq(ex, sc) for ex, sc in variants if self.key(ex, sc) not in self.scored}
        results = self.runner.map({**calls, **(extra or {})})
        self.scored.update({k: results[k] for k in calls})
        return results

    def result(self, exclude: list[str], scheme: QuantizeScheme | None = None) -> dict:
        scheme = scheme or self.scheme
        self.score([(exclude, scheme)])
        return self.scored[self.key(exclude, scheme)]

    def with_flip(self, trials: list[list[str]]) -> list[tuple[list[str], QuantizeScheme]]:
        """A round's variants: `trials` at the scheme, and with several workers the first trial with
        its stem flipped in place of the last (it is the search's final variant's twin if that
        trial ends the search, which saves the round _flip_stem would otherwise need)."""
        variants = [(t, self.scheme) for t in trials]
        flip = self.stem_flip(trials[0]) if self.runner.width > 1 else None
        if flip is not None:
            variants = variants[:self.runner.width - 1] + [(trials[0], flip[0])]
        return variants

    def record(self, name: str, result: dict, exclude: list[str], **extra) -> tuple[Candidate, float]:
        """Keep a scored variant as candidate `name`; `extra` (e.g. the stem setting) goes into its detail."""
        path = Path(shutil.copyfile(result["model"], self.out_dir / "candidates" / f"{name}.onnx"))
        acc, err = result["accuracy"], result["logit_mse"]
        cand = Candidate(name, str(path.relative_to(self.out_dir)), acc, path.stat().st_size,
                         meets_budget=acc >= self.floor,
                         detail={"excluded_nodes": list(exclude), "logit_mse": err, **extra})
        self.candidates.append(cand)
        self.tried.append({"step": name, "excluded_nodes": list(exclude), "accuracy": acc, "logit_mse": err,
                           "meets_budget": cand.meets_budget, **extra})
        return cand, err

    def discard(self, cand: Candidate, why: str) -> None:
        """Drop a trial's artifact; the trial itself stays in `tried` with the reason."""
        (self.out_dir / cand.path).unlink()
        self.candidates.remove(cand)
        self.tried[-1]["discarded"] = why


def search_quantization(fp32_onnx: Path, calib_x: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray,
                        budget: SearchBudget, out_dir: Path, *, scheme: QuantizeScheme | None = None, max_fallback: int = 8,
                        max_probe: int = 64, probe_samples: int = 512, measure_latency: bool = True,
                        int8_weights: bool = False, executor=None, cache_dir: Path | None = None) -> SearchReport:
    """Find the smallest/fastest QDQ int8 variant of `fp32_onnx` within `budget`; see module doc.
    With `int8_weights` the fp32-compute model with int8-stored weights competes too (what a
    target with `ship = "fastest"` weighs; stages/int8_weights.py): where no int8 kernel pays, it
    is fp32's speed at int8's bytes.

    With an `executor` (toolchain.executor) variants are built and scored as tasks, several at
    once; the candidates, their numbers and the chosen one are those of the sequential search.
    Variants go through `cache_dir` (a stage cache every worker mounts; default a temp folder).

    Always writes out_dir/best.onnx (the most accurate quantized variant, report.met = False, when
    none meets the budget), out_dir/candidates/*.onnx, out_dir/search_quant.json and Pareto PNGs. `eval_x/y`
    decide the budget; pass a validation split if the test split must stay untouched.
    """
    scheme = scheme or QuantizeScheme()
    runner = T.Runner(executor)
    runner.warm_up()  # overlaps the workers' start with the fp32 reference and pre-processing below
    out_dir = Path(out_dir)
    cand_dir = out_dir / "candidates"
    cand_dir.mkdir(parents=True, exist_ok=True)
    fp32_copy = Path(shutil.copyfile(fp32_onnx, cand_dir / "fp32.onnx"))
    ref = onnx_logits(fp32_copy, eval_x)
    baseline = float((ref.argmax(1) == eval_y).mean())
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        if cache_dir is None:
            cache_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeopt-search-")))
        run = _Trials(out_dir, runner, Path(cache_dir),
                      T.preprocessed(Path(fp32_onnx), Path(cache_dir)), calib_x, scheme, eval_x, eval_y,
                      ref[:probe_samples], budget.allowed(baseline))
        run.candidates.append(Candidate("fp32", "candidates/fp32.onnx", baseline, fp32_copy.stat().st_size,
                                        meets_budget=True, baseline=True, detail={"excluded_nodes": "all"}))
        extra = {}
        if int8_weights:  # independent of everything else: scored beside int8, recorded last as before
            extra["fp32-int8weights"] = (T.evaluate_int8_weights, (run.cache_dir, Path(fp32_onnx), eval_x, eval_y,
                                                                   run.ref_probe))
        first = run.score(run.with_flip([[]]), extra)
        full, full_err = run.record("int8", run.result([]), [], fp32_stem=scheme.fp32_stem)
        base, excluded = full, []
        if not full.meets_budget:
            ranking = _rank(run, full_err, max_probe)
            base, excluded = _fallback(run, ranking, max_fallback, full_err, full)
        _flip_stem(run, base, excluded)
        if int8_weights:
            w8 = first["fp32-int8weights"]
            run.record("fp32-int8weights", w8, [], fp32_compute=True, weights_int8=w8["weights_int8"])
    return _finish(run, budget, baseline, measure_latency)


def _rank(run: _Trials, full_err: float, max_probe: int) -> list[dict]:
    """Leave-one-out: how much does keeping unit u alone in fp32 cut the logit error? Every
    probe is independent of the others: one task each."""
    t0 = time.perf_counter()
    units = fallback_units(run.pre)[:max_probe]
    probe_x = run.eval_x[:len(run.ref_probe)]
    errors = run.runner.map({f"probe:{i}": (T.probe_error, (run.pre, run.calib_x, unit["nodes"], run.scheme, probe_x,
                                                            run.ref_probe, run.ranges)) for i, unit in enumerate(units)})
    ranking = [{**unit, "logit_mse_without": errors[f"probe:{i}"], "gain": full_err - errors[f"probe:{i}"]}
               for i, unit in enumerate(units)]
    ranking.sort(key=lambda r: -r["gain"])
    run.tried.append({"step": "rank", "method": "leave-one-out logit MSE", "seconds": time.perf_counter() - t0,
                      "ranking": ranking})
    return ranking


def _extend(excluded: list[str], rank: dict) -> list[str]:
    return excluded + [n for n in rank["nodes"] if n not in excluded]


def _speculate(rest: list[dict], excluded: list[str], kept: int, max_fallback: int, width: int) -> list[list[str]]:
    """The next `width` trials of the fallback loop if each were kept: the first one is the trial
    the loop needs now, the others are its likeliest successors, scored in the same round."""
    trials: list[list[str]] = []
    for rank in rest:
        if len(trials) == width or kept == max_fallback or rank["gain"] <= 0:
            break
        trial = _extend(excluded, rank)
        if trial != excluded:
            trials.append(trial)
            excluded, kept = trial, kept + 1
    return trials


def _fallback(run: _Trials, ranking, max_fallback, full_err, full: Candidate) -> tuple[Candidate, list[str]]:
    """Fall back units to fp32 in ranked order; keep a fallback only if it lowers the error.
    Returns the last kept candidate and its excluded nodes. The decisions are sequential; with
    several workers the trials ahead are scored speculatively, and only the ones this loop
    reaches become candidates."""
    excluded: list[str] = []
    best_err = full_err
    kept, last = 0, full
    for i, rank in enumerate(ranking):
        if kept == max_fallback or rank["gain"] <= 0:
            break  # the remaining units do not hurt on their own; fp32 for them buys nothing
        trial = _extend(excluded, rank)
        if trial == excluded:
            continue  # already fp32 through overlapping units
        if run.key(trial, run.scheme) not in run.scored:
            run.score(run.with_flip(_speculate(ranking[i:], excluded, kept, max_fallback, run.runner.width)))
        name = f"int8-fp32u{kept + 1}"
        cand, err = run.record(name, run.result(trial), trial, fp32_stem=run.scheme.fp32_stem)
        if err >= best_err:
            # Fallback changes neighbours' quantization too; when it does not help, stay int8 there.
            run.discard(cand, f"logit MSE {err:.3g} not below {best_err:.3g}: unit '{rank['unit']}' stays int8")
            continue
        excluded, best_err, kept, last = trial, err, kept + 1, cand
        run.reverted.append({"unit": rank["unit"], "op": rank["op"], "nodes": rank["nodes"], "to": "fp32",
                             "reason": f"largest remaining error contribution (leave-one-out logit MSE gain "
                                       f"{rank['gain']:.3g}); accuracy with it in fp32: {cand.accuracy:.4f}"})
        if cand.meets_budget:
            break
    return last, excluded


def _flip_stem(run: _Trials, base: Candidate, excluded: list[str]) -> None:
    """The search's final variant again with the stem conv's precision flipped: whether an int8 stem
    pays depends on the CPU's kernels (x86 ORT pads its K = 27 GEMM; fp32 has a stem kernel), so
    the interleaved latency measurement decides, not a rule. With several workers it was usually
    scored already, beside the final variant (_Trials.with_flip)."""
    flip = run.stem_flip(excluded)
    if flip is None:
        return
    flipped, stems = flip
    name = f"{base.name}-{'fp32' if flipped.fp32_stem else 'int8'}stem"
    run.record(name, run.result(excluded, flipped), excluded, fp32_stem=flipped.fp32_stem, stem_nodes=stems,
               stem_flipped=True)


def _finish(run: _Trials, budget: SearchBudget, baseline: float, measure_latency: bool) -> SearchReport:
    from toolchain.search.pareto import plot_pareto

    if measure_latency:
        lat = latency_p50({c.name: run.out_dir / c.path for c in run.candidates}, run.eval_x)
        for c in run.candidates:
            c.latency_ms = lat[c.name]
    best, met = pick_best(run.candidates, budget.objective)
    shutil.copyfile(run.out_dir / best.path, run.out_dir / "best.onnx")
    report = SearchReport("quantization", budget.model_dump(), baseline, run.floor, met, best.name, "best.onnx",
                          run.candidates, run.tried, run.reverted)
    if measure_latency:
        _compare_with_fp32(report, best, budget.objective)
    report.plots = plot_pareto(run.candidates, run.floor, best.name, run.out_dir, "pareto_quant")
    report.save(run.out_dir / "search_quant.json")
    return report


def _compare_with_fp32(report: SearchReport, best: Candidate, objective: str) -> None:
    """Flag a target where int8 does not pay: every int8 variant within budget is slower than fp32
    timed in the same rounds. The search still keeps its best; the fix is the target's format (or
    the fp32-compute candidate with int8-stored weights, when it was weighed)."""
    fp32 = next(c for c in report.candidates if c.baseline)
    report.speedup_vs_fp32 = fp32.latency_ms / best.latency_ms
    feasible = [c for c in report.candidates if c.meets_budget and not c.baseline and not c.detail.get("fp32_compute")]
    if objective != "latency" or not feasible or any(c.latency_ms <= fp32.latency_ms for c in feasible):
        return
    report.int8_slower_than_fp32 = True
    report.tried.append({"step": "int8-vs-fp32", "fp32_ms": fp32.latency_ms, "best_ms": best.latency_ms,
                         "speedup": report.speedup_vs_fp32,
                         "finding": f"all {len(feasible)} int8 variants within budget are slower than fp32 "
                                    f"(best '{best.name}' {report.speedup_vs_fp32:.2f}x); int8 buys bytes, not "
                                    f"speed, here: consider [quantize] format = \"none\" for this target"})
