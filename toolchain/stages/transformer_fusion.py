"""Transformer fusion before quantization: ONNX Runtime's transformer optimizer
(`onnxruntime.transformers.optimizer`, model type "bert") rewrites each attention block into one
Attention op and GELU + its bias into BiasGelu, which the dynamic quantizer then turns into
QAttention and int8 MatMuls (DynamicQuantizeMatMul once ORT loads it).

Residual Add + LayerNormalization is deliberately *not* left as SkipLayerNormalization:
onnxruntime 1.32's CPU SkipLayerNormalization kernel measured 5.5x slower than Add +
LayerNormalization at BERT-mini's shape (128 tokens x 256: 168 vs 30 us, 1 thread), 4.6x at
64 x 128 and 2.2x at 32 x 64; in ORT's fully fused dynamic-int8 BERT-mini it was 30% of the kernel time
(benchmarks/results/transformer.md). ORT's own session optimizer fuses the same pattern
(SkipLayerNormFusion), so profiles that run transformers list it in [runtime] disabled_optimizers.
Without it the optimizer does not fuse the embeddings either (its EmbedLayerNormalization fusion
starts from a SkipLayerNormalization): measured, fusing them and splitting every
SkipLayerNormalization back into Add + LayerNormalization was no faster (dynamic int8, 1 thread,
interleaved, measured once with a scratch script: tiny-bert 1.34x vs 1.41x, BERT-mini 2.51x vs 2.45x over ORT fp32), so the simpler
graph is the one built.

The optimizer matches patterns; a graph it does not recognise (measured: torch's dynamo exporter
writes attention it does not match, the TorchScript exporter's it does) gets no Attention op,
and then the model is left unfused as a whole and the record says why: a half-fused graph mixes
contrib ops into a model whose attention still runs op by op, for no measured gain.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

ATTENTION_OPS = ("Attention", "MultiHeadAttention", "QAttention")
# metadata_props the export stage writes from a zoo model's `num_heads` / `hidden_size`
# attributes: the optimizer cannot always read them from the graph ("Failed to detect num_heads").
HEADS_KEY, HIDDEN_KEY = "edgeopt.num_heads", "edgeopt.hidden_size"


def attention_count(model) -> int:
    """Attention blocks in `model`: fused attention ops, plus, where a Softmax exists, half the
    MatMuls whose two inputs are both activations (Q.K^T and attention.V)."""
    graph = model.graph
    consts = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    fused = sum(n.op_type in ATTENTION_OPS for n in graph.node)
    if not any(n.op_type == "Softmax" for n in graph.node):
        return fused
    pairs = sum(1 for n in graph.node if n.op_type == "MatMul" and not set(n.input[:2]) & consts)
    return fused + pairs // 2


def _dims(model) -> tuple[int, int]:
    props = {p.key: p.value for p in model.metadata_props}
    return int(props.get(HEADS_KEY, 0)), int(props.get(HIDDEN_KEY, 0))  # 0: the optimizer detects them


def fuse_transformer(src: Path, dest: Path, mode: bool | str) -> dict[str, Any]:
    """Write `src` fused (or unchanged) to `dest`; returns what was done and why. `mode`: True
    fuses, False never, "auto" fuses when the graph has attention."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    found = attention_count(model)
    if mode is False or (mode == "auto" and not found):
        shutil.copyfile(src, dest)
        why = "[quantize] fuse_transformer = false" if mode is False else "no attention in the graph"
        return {"applied": False, "reason": why, "attention_patterns": found}
    heads, hidden = _dims(model)
    fused = _optimize(src, heads, hidden)
    stats = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
    facts = {
        "attention_patterns": found,
        "num_heads": heads or "detected",
        "hidden_size": hidden or "detected",
    }
    if not any(stats.get(op) for op in ATTENTION_OPS):
        shutil.copyfile(src, dest)
        return {
            "applied": False,
            "reason": (
                "ONNX Runtime's transformer optimizer (bert) recognised no attention "
                f"in this graph (it would have fused only {stats or 'nothing'}): left unfused"
            ),
            **facts,
        }
    fused.save_model_to_file(str(dest), use_external_data_format=False)
    return {"applied": True, "fused_ops": stats, **facts}


def fusion_options():
    """The optimizer's "bert" fusions without SkipLayerNormalization (see the module docstring)."""
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = options.enable_bias_skip_layer_norm = False
    return options


def _optimize(src: Path, heads: int, hidden: int):
    from onnxruntime.transformers.optimizer import optimize_model

    # opt_level 0: only the optimizer's own pattern fusions; ORT's graph optimizations would bake
    # the build host's kernels into the file (the convert stage applies the profile's level).
    with contextlib.redirect_stdout(sys.stderr):
        return optimize_model(
            str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0,
            optimization_options=fusion_options(),
        )
