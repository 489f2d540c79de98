"""The compact stage: fewer bytes, the same output values, the same ORT kernels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.errors import VerificationError
from toolchain.stages.compact import CompactConfig, compact, optimized_ops
from toolchain.stages.convert import ConvertConfig, convert, optimize_offline

RNG = np.random.default_rng(0)
X = RNG.random((16, 3, 8, 8), dtype=np.float32)


def _init(name, shape, scale=0.3):
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def _tiny_net() -> onnx.ModelProto:
    """conv -> relu -> depthwise conv -> relu -> + residual -> 1x1 conv -> pool -> gemm."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="stem/conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="stem/relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="block/dw", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"], name="block/relu"),
        helper.make_node("Add", ["r1", "r2"], ["s"], name="block/add"),
        helper.make_node("Conv", ["s", "w3", "b3"], ["c3"], name="head/pw"),
        helper.make_node("GlobalAveragePool", ["c3"], ["p"], name="head/pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="head/flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="head/fc", transB=1),
    ]
    inits = [_init("w1", (8, 3, 3, 3)), _init("b1", (8,), 0.1), _init("w2", (8, 1, 3, 3)), _init("b2", (8,), 0.1),
             _init("w3", (8, 8, 1, 1)), _init("b3", (8,), 0.1), _init("wf", (4, 8)), _init("bf", (4,), 0.1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)  # gives it value_info to strip


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """fp32, QDQ (U8S8 per-channel, like cpu-server) and its offline-optimized QLinearConv form."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    d = tmp_path_factory.mktemp("compact")
    fp32 = d / "fp32.onnx"
    model = _tiny_net()
    model.doc_string = "tiny test net"
    helper.set_model_props(model, {"name": "tiny", "labels": "[0,1,2,3]"})
    onnx.save(model, str(fp32))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": X[i : i + 4]} for i in range(0, len(X), 4)])

        def get_next(self):
            return next(self.it, None)

    qdq = d / "qdq.onnx"
    quantize_static(str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    qlinear = d / "qlinear.onnx"
    optimize_offline(qdq, qlinear, "extended")
    return {"fp32": fp32, "qdq": qdq, "qlinear": qlinear}


def _run(path: Path, x: np.ndarray = X) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _ops(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_qlinear_model_is_smaller_and_bit_identical(models, tmp_path):
    src = models["qlinear"]
    assert _ops(src)["QLinearConv"] == 3  # the fixture really is the fused int8 form
    facts = compact(src, CompactConfig(), tmp_path / "c.onnx")
    out = tmp_path / "c.onnx"
    assert facts["bytes_before"] == src.stat().st_size and facts["bytes_after"] == out.stat().st_size
    assert facts["bytes_after"] < facts["bytes_before"]
    assert facts["verified"]["outputs"] == "bit-identical"
    for x in (X, X[:1], RNG.random((5, 3, 8, 8), dtype=np.float32) * 4 - 2):  # dynamic batch, out-of-range values
        assert all(np.array_equal(a, b) for a, b in zip(_run(src, x), _run(out, x)))
    for int8_allowed in (False, True):  # ORT still fuses to the same int8 kernels at load time
        assert optimized_ops(src, int8_allowed) == optimized_ops(out, int8_allowed)
    before, after = onnx.load(str(src)), onnx.load(str(out))
    assert [i.name for i in after.graph.input] == ["x"] and [o.name for o in after.graph.output] == ["logits"]
    assert after.opset_import == before.opset_import
    assert after.metadata_props == before.metadata_props and after.doc_string == before.doc_string == "tiny test net"
    assert _ops(out) == _ops(src)
    # every tensor but the graph's own input and output got a name of at most 2 characters
    names = {n for node in after.graph.node for n in [*node.input, *node.output]} - {"x", "logits", ""}
    assert names and max(len(n) for n in names) <= 2


def test_names_json_maps_every_short_name_back(models, tmp_path):
    src = models["qlinear"]
    facts = compact(src, CompactConfig(), tmp_path / "c.onnx", names=tmp_path / "names.json")
    mapping = json.loads((tmp_path / "names.json").read_text())
    before, after = onnx.load(str(src)).graph, onnx.load(str(tmp_path / "c.onnx")).graph
    short = {n for node in after.node for n in [*node.input, *node.output]} | {t.name for t in after.initializer}
    short -= {"x", "logits", ""}
    assert short == set(mapping["tensors"]) and facts["names_renamed"] == len(short)
    old = {n for node in before.node for n in [*node.input, *node.output]} | {t.name for t in before.initializer}
    synthesized = {"zero_int8"}  # the one shared scalar zero point
    assert set(mapping["tensors"].values()) <= old | synthesized
    # node by node, the short names resolve to the original wiring
    for b, a in zip(before.node, after.node):
        assert mapping["nodes"][a.name] == b.name and a.op_type == b.op_type
        assert [mapping["tensors"].get(n, n) for n in a.output] == list(b.output)


def test_same_input_gives_same_bytes(models, tmp_path):
    for i in range(2):
        compact(models["qlinear"], CompactConfig(), tmp_path / f"{i}" / "m.onnx")
    assert (tmp_path / "0" / "m.onnx").read_bytes() == (tmp_path / "1" / "m.onnx").read_bytes()
    assert (tmp_path / "0" / "m.names.json").read_bytes() == (tmp_path / "1" / "m.names.json").read_bytes()


def test_value_info_is_stripped_only_when_asked(models, tmp_path):
    src = models["fp32"]
    n = len(onnx.load(str(src)).graph.value_info)
    assert n >= 8
    facts = compact(src, CompactConfig(), tmp_path / "a.onnx")
    assert facts["value_info_removed"] == n and len(onnx.load(str(tmp_path / "a.onnx")).graph.value_info) == 0
    compact(src, CompactConfig(strip_value_info=False, short_names=False), tmp_path / "b.onnx")
    assert len(onnx.load(str(tmp_path / "b.onnx")).graph.value_info) == n


def test_weight_zero_points_become_scalar_only_where_all_zero(models, tmp_path):
    model = onnx.load(str(models["qlinear"]))
    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "QLinearConv"]
    assert all(len(inits[c.input[5]].dims) == 1 for c in convs)  # per-channel zeros before
    # give one conv its own non-zero zero point (structure check only: ORT rejects it for int8)
    zp = inits[convs[1].input[5]]
    zp.CopyFrom(numpy_helper.from_array(np.array([0, 1, 0, 0, 0, 0, 0, 2], np.int8), zp.name))
    src = tmp_path / "src.onnx"
    onnx.save(model, str(src))
    cfg = CompactConfig(short_names=False, dedupe_initializers=False, verify=False)
    facts = compact(src, cfg, tmp_path / "c.onnx")
    assert facts["zero_points_scalarized"] == len(convs) - 1
    after = onnx.load(str(tmp_path / "c.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in after.initializer}
    zps = [inits[n.input[5]] for n in after.node if n.op_type == "QLinearConv"]
    assert [z.shape for z in zps] == [(), (8,), ()]
    assert zps[0].dtype == zps[2].dtype == np.int8 and not zps[0].any()
    assert list(zps[1]) == [0, 1, 0, 0, 0, 0, 0, 2]
    # the per-channel zero tensors that no node reads any more are gone
    assert sum(1 for a in inits.values() if a.shape == (8,) and a.dtype == np.int8 and not a.any()) == 0


def test_qdq_graph_keeps_dequantize_zero_points_and_fusions(models, tmp_path):
    src = models["qdq"]
    facts = compact(src, CompactConfig(), tmp_path / "c.onnx")
    assert facts["zero_points_scalarized"] == 0 and facts["verified"]["outputs"] == "bit-identical"
    assert facts["bytes_after"] < facts["bytes_before"]
    assert all(np.array_equal(a, b) for a, b in zip(_run(src), _run(tmp_path / "c.onnx")))

    def dq_zero_point_shapes(path):
        g = onnx.load(str(path)).graph
        dims = {t.name: tuple(t.dims) for t in g.initializer}
        return sorted((dims[n.input[1]], dims[n.input[2]]) for n in g.node if n.op_type == "DequantizeLinear")

    # Omitting a DequantizeLinear zero point was measured to lose ORT's QGemm fusion: never done.
    assert dq_zero_point_shapes(src) == dq_zero_point_shapes(tmp_path / "c.onnx")
    assert optimized_ops(src, False)["QLinearConv"] == 3


def test_identical_initializers_are_shared(tmp_path):
    c = numpy_helper.from_array(np.arange(4, dtype=np.float32), "c1")
    nodes = [helper.make_node("Add", ["x", "c1"], ["a"]), helper.make_node("Mul", ["a", "c2"], ["b"]),
             helper.make_node("Sub", ["b", "c3"], ["y"])]
    inits = [c, numpy_helper.from_array(np.arange(4, dtype=np.float32), "c2"),
             numpy_helper.from_array(np.arange(4, dtype=np.int64).astype(np.float64).astype(np.float32)[::-1].copy(), "c3")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], inits)
    src = tmp_path / "dup.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    facts = compact(src, CompactConfig(), tmp_path / "c.onnx")
    assert facts["initializers_deduped"] == 1  # c2 == c1; c3 has the same values reversed: kept
    after = onnx.load(str(tmp_path / "c.onnx")).graph
    assert len(after.initializer) == 2 and after.node[0].input[1] == after.node[1].input[1]
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.array_equal(run(src), run(tmp_path / "c.onnx"))


def test_models_with_subgraphs_only_lose_value_info(tmp_path):
    branch = lambda name, v: helper.make_graph(
        [helper.make_node("Add", ["x", f"k_{name}"], [f"out_{name}"])], name, [],
        [helper.make_tensor_value_info(f"out_{name}", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.full(2, v, np.float32), f"k_{name}")])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 1.0), else_branch=branch("else", -1.0))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                              [numpy_helper.from_array(np.zeros((), np.float32), "zero")],
                              value_info=[helper.make_tensor_value_info("s", TensorProto.FLOAT, [])])
    src = tmp_path / "if.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    facts = compact(src, CompactConfig(), tmp_path / "c.onnx")
    assert facts["subgraphs"] and facts["names_renamed"] == 0 and facts["names_file"] is None
    assert facts["value_info_removed"] == 1 and facts["verified"]["outputs"] == "bit-identical"
    assert [n.output[0] for n in onnx.load(str(tmp_path / "c.onnx")).graph.node] == ["s", "cond", "y"]


def test_verification_catches_a_changed_value(models, tmp_path, monkeypatch):
    """The guard is real: a pass that changed one weight would be refused, not shipped."""
    import toolchain.stages.compact as mod

    real = mod.dedupe_initializers

    def corrupting(graph):
        t = next(t for t in graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 4)
        t.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(t), t.name))
        return real(graph)

    monkeypatch.setattr(mod, "dedupe_initializers", corrupting)
    with pytest.raises(VerificationError, match="changed output values"):
        compact(models["qlinear"], CompactConfig(), tmp_path / "c.onnx")
    assert list(tmp_path.iterdir()) == []  # neither the refused model nor its name map was written


def test_convert_compacts_onnx_targets_and_ships_the_name_map(models, tmp_path):
    base = {"platform": "amd64", "format": "onnx", "shapes": "dynamic-batch"}
    stamp = {"name": "tiny", "target": "cpu-server"}
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = convert(models["qdq"], ConvertConfig(**base), tmp_path / "on", stamp)
    off = convert(models["qdq"], ConvertConfig(**base, compact=False), tmp_path / "off", stamp)
    assert on["extra_files"] == {"names.json": "names.json"} and off["extra_files"] == {}
    assert (tmp_path / "on" / "names.json").is_file() and not (tmp_path / "off" / "names.json").exists()
    small, big = tmp_path / "on" / "model.onnx", tmp_path / "off" / "model.onnx"
    assert small.stat().st_size < big.stat().st_size
    assert on["compact"]["bytes_after"] < on["compact"]["bytes_before"]
    props = {p.key: p.value for p in onnx.load(str(small)).metadata_props}
    assert props.items() >= stamp.items()  # the stamp is applied after compact
    assert onnx.load(str(small)).metadata_props == onnx.load(str(big)).metadata_props
    assert all(np.array_equal(a, b) for a, b in zip(_run(small), _run(big)))
