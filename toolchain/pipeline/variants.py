"""Scheme candidates: [quantize] choices whose winner depends on the model, built both ways.

A profile's `[quantize]` is the starting point; `[artifact] scheme_candidates` names keys whose
other value is built too (its own cached quantize + convert, its own stage config) and weighed by
`ship = "fastest"` like every other candidate. Measured why: cpu-server's fp32 stem made
MobileNetV2 (width 0.5, 224 px) faster but cost ResNet-18 at 224 px a third of its int8 speedup
(2.31x vs 3.20x over fp32), so no profile default is right for every model.

A flip is built only when it changes the graph: `fp32_stem` only for a model with a stem conv
the scheme would keep fp32 (the quantize stage records them), `format` (QDQ vs dynamic) only for
a model with attention. A key the recipe's `[quantize]` sets is the recipe's decision: not flipped.

`ort_uint8_qdq` is not a key but a peer: the scheme ONNX Runtime's own `quantize_static` writes
with uint8 activations and its other defaults (QDQ, int8 weights, per-tensor, MinMax, nothing kept
fp32, no transformer fusion). edgeopt must never ship slower than it (issue 14: ResNet-18 at 224
px, 2.31x over fp32 for cpu-server's scheme vs 3.22x for this one), so it is built (once, cached)
unless an int8 candidate already has exactly that scheme, and weighed like every other candidate.
"""

from __future__ import annotations

from typing import Any

from toolchain.config.target import QuantizeScheme, TargetProfile

INT8 = "int8"  # the profile's own scheme: the starting point, first of the int8 forms in the ship order


# The peer's scheme: quantize_static(..., quant_format=QDQ, activation_type=QUInt8) with every other
# argument at onnxruntime's default (weight_type QInt8, per_channel False, reduce_range False, MinMax).
ORT_UINT8_QDQ = "ort_uint8_qdq"
PEER_SCHEME = {"format": "qdq", "activation_type": "uint8", "weight_type": "int8", "per_channel": False,
               "reduce_range": False, "calibration_method": "minmax", "fp32_stem": False, "fuse_transformer": False}
PEER_LABEL = f"{INT8}[{ORT_UINT8_QDQ}]"


def variant_label(key: str, value: Any) -> str:
    """The benchmark label of the scheme with `key` set to `value`, e.g. "int8[fp32_stem=false]"."""
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{INT8}[{key}={shown}]"


def is_scheme_variant(label: str) -> bool:
    return label.startswith(f"{INT8}[")


def _flipped(key: str, scheme: QuantizeScheme) -> Any:
    if key == "format":  # dynamic quantizes MatMul weights ahead and activations per run; no calibration
        return "qdq" if scheme.format == "dynamic" else "dynamic"
    return not getattr(scheme, key)


def _changes_graph(key: str, quantized: dict[str, Any]) -> bool:
    if key == "fp32_stem":  # no stem conv: both schemes write the same graph, which must not be built twice
        return bool(quantized.get("stem_convs"))
    if key == "format":  # dynamic MatMul quantization is the transformer form; a CNN's ConvInteger is slow
        return bool(quantized.get("attention_nodes"))
    return True


def scheme_variants(
    profile: TargetProfile, scheme: QuantizeScheme, pinned: set[str], quantized: dict[str, Any]
) -> dict[str, QuantizeScheme]:
    """label -> scheme for each flip of `profile`'s scheme_candidates worth building. `scheme` is
    the scheme in force (profile + recipe), `pinned` the keys the recipe set, `quantized` the
    record of the quantize stage that ran `scheme`."""
    if profile.artifact.ship != "fastest" or scheme.format == "none":
        return {}
    out = {}
    for key in profile.artifact.scheme_candidates:
        if key == ORT_UINT8_QDQ or key in pinned or not _changes_graph(key, quantized):
            continue
        value = _flipped(key, scheme)
        out[variant_label(key, value)] = scheme.model_copy(update={key: value})
    if ORT_UINT8_QDQ in profile.artifact.scheme_candidates:
        peer = scheme.model_copy(update=PEER_SCHEME)
        changed = {key for key, value in PEER_SCHEME.items() if getattr(scheme, key) != value}
        # The stem and fusion keys change nothing on a graph without a stem or attention: then a
        # candidate differing only there already is the peer, and it is not built twice.
        if not (changed & pinned) and not any(_same_graph(peer, s, quantized) for s in [scheme, *out.values()]):
            out[PEER_LABEL] = peer
    return out


def _same_graph(a: QuantizeScheme, b: QuantizeScheme, quantized: dict[str, Any]) -> bool:
    """Whether schemes `a` and `b` write the same graph for the model `quantized` recorded."""
    ignored = set()
    if not quantized.get("stem_convs"):
        ignored.add("fp32_stem")
    if not quantized.get("attention_nodes"):
        ignored.add("fuse_transformer")
    return a.model_dump(exclude=ignored) == b.model_dump(exclude=ignored)


def peer_equivalent(schemes: dict[str, QuantizeScheme], quantized: dict[str, Any]) -> str | None:
    """The label of the int8 candidate that is ORT's own uint8 QDQ (PEER_SCHEME), if one is."""
    if PEER_LABEL in schemes:
        return PEER_LABEL
    return next((label for label, s in schemes.items()
                 if _same_graph(s, s.model_copy(update=PEER_SCHEME), quantized)), None)


def describe_scheme(scheme: QuantizeScheme, record: dict[str, Any]) -> dict[str, Any]:
    """What the report says of an int8 candidate's scheme: the keys that can differ between
    candidates, the nodes kept fp32 by design, and the transformer fusion applied."""
    out = {
        "format": scheme.format,
        "activation_type": scheme.activation_type,
        "weight_type": scheme.weight_type,
        "per_channel": scheme.per_channel,
        "fp32_stem": scheme.fp32_stem,
        "fp32_stem_nodes": list(record.get("fp32_stem_nodes", [])),
    }
    if record.get("transformer_fusion"):
        out["fused"] = record["transformer_fusion"].get("applied", False)
    return out


# Labels of the forms that are not int8 schemes, as the report names their scheme.
FORM_SCHEMES = {
    "fp32": "fp32 (the baseline)",
    "pruned_fp32": "fp32 (pruned)",
    "int8_weights": "int8-stored weights, fp32 compute",
}
