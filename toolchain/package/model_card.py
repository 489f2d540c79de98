"""model_card.md: the page an app developer reads before integrating the package.

Generated from the manifest alone, so it can never disagree with it, and deterministic
(no dates) so the zip stays byte-identical across builds.
"""

from __future__ import annotations

import json
from typing import Any

from toolchain.package.manifest import Manifest

# Metrics shown first, in this order, when present; the rest follow sorted by name.
_KEY_METRICS = ("bytes", "accuracy", "accuracy_drop", "latency_ms", "peak_memory_mb")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(value.items()))
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def _shape(shape: list) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _tensor_rows(tensors) -> list[str]:
    rows = ["| name | dtype | shape |", "|---|---|---|"]
    rows += [f"| `{t.name}` | {t.dtype} | {_shape(t.shape)} |" for t in tensors]
    return rows


def _metric_rows(metrics: dict[str, Any]) -> list[str]:
    order = [k for k in _KEY_METRICS if k in metrics] + sorted(k for k in metrics if k not in _KEY_METRICS)
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {k} | {_fmt(metrics[k])} |" for k in order]
    return rows


def _budget_rows(budgets: dict[str, Any]) -> list[str]:
    if not budgets:
        return ["No budgets were set for this target."]
    rows = ["| budget | limit | value | verdict |", "|---|---|---|---|"]
    for name in sorted(budgets):
        b = budgets[name] if isinstance(budgets[name], dict) else {"value": budgets[name]}
        verdict = {True: "PASS", False: "FAIL"}.get(b.get("pass"), "n/a")
        rows.append(f"| {name} | {_fmt(b.get('limit'))} | {_fmt(b.get('value'))} | {verdict} |")
    return rows


def _session_lines(m: Manifest) -> tuple[list[str], str]:
    """SessionOptions lines for the snippet (from `session`), and the argument that passes them."""
    from toolchain.runtime.ort_runtime import ORT_LEVELS

    s = m.session
    if s is None:  # schema-1 manifest: it recorded no session options
        return [], ""
    if s.threads_from == "thread_sweep":
        by_batch = ", ".join(f"batch {b}: {n}" for b, n in sorted(s.intra_op_threads_by_batch.items(), key=lambda kv: int(kv[0])))
        why = f"  # measured fastest at the smallest batch ({by_batch})"
    else:
        why = "  # the target profile's count (not measured)"
    return [
        "opts = ort.SessionOptions()  # the options the metrics below were measured with",
        f"opts.graph_optimization_level = ort.GraphOptimizationLevel.{ORT_LEVELS[s.graph_optimization_level]}",
        f"opts.intra_op_num_threads = {s.intra_op_threads}{why}",
        f"opts.inter_op_num_threads = {s.inter_op_threads}",
        f"opts.enable_cpu_mem_arena = {s.enable_cpu_mem_arena}",
        f"opts.enable_mem_pattern = {s.enable_mem_pattern}",
        *([f'opts.add_session_config_entry("optimization.disable_specified_optimizers", "{",".join(s.disabled_optimizers)}")']
          if s.disabled_optimizers else []),
    ], ", opts"


def _openvino_lines(m: Manifest) -> list[str]:
    """Compile with the recorded properties (manifest `runtime.settings`) and run like ORT's `sess.run`."""
    return [
        "import openvino as ov",
        'settings = dict(manifest["runtime"]["settings"])  # the compile properties the metrics were measured with',
        "core = ov.Core()",
        f'compiled = core.compile_model(core.read_model(pkg.read("{m.artifact}"), b""), settings.pop("device"), settings)',
        "run = lambda feeds: [compiled(feeds)[0]]",
    ]


def _engine(m: Manifest) -> str:
    return m.session.engine if m.session is not None else "onnxruntime"


def _load_snippet(m: Manifest) -> list[str]:
    x = m.inputs[0]
    p = m.preprocessing
    if _engine(m) == "openvino":
        load = _openvino_lines(m)
        call = f'out = run({{"{x.name}": x}})[0]'
    else:
        opts_lines, opts_arg = _session_lines(m)
        load = ["import onnxruntime as ort", *opts_lines,
                f'sess = ort.InferenceSession(pkg.read("{m.artifact}"){opts_arg}, providers=["CPUExecutionProvider"])']
        call = f'out = sess.run(["{m.outputs[0].name}"], {{"{x.name}": x}})[0]'
    return [
        "```python",
        "import json, zipfile, numpy as np",
        f'pkg = zipfile.ZipFile("{m.name}-{m.target}.zip")',
        'manifest = json.loads(pkg.read("manifest.json"))',
        *load,
        'pre = manifest["preprocessing"]',
        f"raw = np.zeros({_example_shape(x.shape)}, dtype=np.float32)  # your {p.layout} data here",
        'x = (raw * pre["scale"] + pre["offset"]).astype(pre["dtype"])',
        call,
        'print(manifest["labels"][int(out[0].argmax())] if manifest["labels"] else out)',
        "```",
    ]


def _example_shape(shape: list) -> str:
    return (
        "("
        + ", ".join(str(d) if isinstance(d, int) else "1" for d in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


# What the app must know about the shipped form, keyed by metrics["shipped"] (build_target's labels).
_FORM_NOTES = {
    "int8_weights": ("Weights are stored as int8 with one scale per output channel and rebuilt by Cast -> Mul "
                     "nodes, which ONNX Runtime folds into fp32 weights when it loads the model: keep graph "
                     "optimization on (any level but ORT_DISABLE_ALL), or every run pays for the rebuild."),
}


# What golden.npz holds, by manifest golden.source (None: a manifest older than schema 3 did not say).
_GOLDEN_NOTES = {
    "synthetic": ("synthetic inputs drawn (seeded) from per-channel statistics of the training data "
                  "(mean, std, min, max), with this model's outputs on them: no data rows"),
    "random": "seeded random inputs (no data was known when packaging), with this model's outputs on them",
    "samples": ("REAL samples of the evaluation data with this model's outputs on them (opted in with "
                '[package] golden = "samples"): do not ship this package where that data is personal'),
    None: "sample inputs with the expected outputs (their origin is not recorded: a manifest before schema 3)",
}


def _data_lines(m: Manifest) -> list[str]:
    return [
        "## Data in this package",
        f"`{m.golden.file}`: {m.golden.samples} {_GOLDEN_NOTES[m.golden.source]}.",
        ("`drift_reference.json` (when present): aggregate statistics only (per channel mean, std, quantiles, "
         "histograms whose bins each hold at least `min_bin_count` samples)."),
        "`edgeopt inspect --privacy` lists every member that can carry data and checks them against a data set.",
    ]


def _privacy_lines(m: Manifest) -> list[str]:
    p = m.privacy
    if p is None:
        return []
    return [
        "## Differential privacy",
        (f"Trained with {p.mechanism}: (epsilon = {p.epsilon:.4g}, delta = {p.delta:g})-differentially private "
        f"with respect to the training rows (budget epsilon = {p.target_epsilon:g}), over training and every "
        f"fine-tune after pruning: {p.steps} noisy steps, noise multiplier {p.noise_multiplier:.4g}, per-sample "
        f"clipping norm {p.max_grad_norm:g}, sample rate {p.sample_rate:.4g}, {p.accountant.upper()} accountant."),
        "",
    ]


def render_model_card(m: Manifest) -> str:
    p = m.preprocessing
    failed = [k for k, b in m.budgets.items() if isinstance(b, dict) and b.get("pass") is False]
    verdict = "all budgets met" if not failed else f"FAILED budgets: {', '.join(sorted(failed))}"
    labels = ", ".join(f"{i}: {label}" for i, label in enumerate(m.labels)) or "(none: raw outputs)"
    lines = [
        f"# {m.name} for {m.target}",
        "",
        f"`{m.artifact}` ({m.artifact_format} format), built by {m.created_by} from recipe `{m.recipe_hash}`.",
        f"Target: {m.target_profile.get('description') or m.target}. Verdict: {verdict}.",
        *([_FORM_NOTES[m.metrics.get("shipped")]] if m.metrics.get("shipped") in _FORM_NOTES else []),
        "",
        "## Inputs",
        *_tensor_rows(m.inputs),
        "",
        "## Outputs",
        *_tensor_rows(m.outputs),
        "",
        "## Preprocessing",
        f"`input = (raw * {p.scale!r} + {p.offset!r}).astype({p.dtype})`, layout {p.layout}.",
        *([p.description] if p.description else []),
        "",
        "## Labels",
        labels,
        "",
        "## Metrics (fp32 baselines where given)",
        *_metric_rows(m.metrics),
        "",
        "## Budgets",
        *_budget_rows(m.budgets),
        "",
        *_data_lines(m),
        "",
        *_privacy_lines(m),
        f"## Load it with {_engine(m)}",
        *_load_snippet(m),
        "",
        (
            f"Check first: every file's sha256 is in manifest.json; `{m.golden.file}` holds "
            f"{m.golden.samples} inputs with the expected outputs (atol {m.golden.atol:g}) for a smoke run."
        ),
        "",
    ]
    return "\n".join(lines)
