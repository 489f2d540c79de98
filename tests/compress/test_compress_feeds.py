"""`edgeopt compress` on a model with several inputs of several dtypes: Feeds slicing, the batch
axis of state tensors, .npz data per input name and its bad-input messages, one npz run end to
end whose package verifies (its state output has no sample axis 0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.cli import cli, main
from toolchain.cli.compress import COMMANDS
from toolchain.data.feeds import Feeds, TensorSpec, batch_axes, fixed_batch_of

for _cmd in COMMANDS:  # until the lead registers them in cli.py; a no-op afterwards
    if _cmd.name not in cli.commands:
        cli.add_command(_cmd)

N = 40


def _multi_input_model() -> onnx.ModelProto:
    """x float [B, 4], state h float [1, B, 4], ids int64 [B, 3], mask bool [B, 3] ->
    y [B, 4] and the next state hn [1, B, 4]."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "table"),
        numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([0], np.int64), "ax0"),
        numpy_helper.from_array(np.array([2], np.int64), "ax2"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "ax2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "ax1"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Squeeze", ["h", "ax0"], ["h2"]),
        helper.make_node("Add", ["xw", "pooled"], ["s1"]),
        helper.make_node("Add", ["s1", "h2"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
        helper.make_node("MatMul", ["z", "w2"], ["zw"]),
        helper.make_node("Tanh", ["zw"], ["t"]),
        helper.make_node("Unsqueeze", ["t", "ax0"], ["hn"]),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "multi",
        [vi("x", TensorProto.FLOAT, ["B", 4]), vi("h", TensorProto.FLOAT, [1, "B", 4]),
         vi("ids", TensorProto.INT64, ["B", 3]), vi("mask", TensorProto.BOOL, ["B", 3])],
        [vi("y", TensorProto.FLOAT, ["B", 4]), vi("hn", TensorProto.FLOAT, [1, "B", 4])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _arrays(rng=None) -> dict[str, np.ndarray]:
    rng = rng or np.random.default_rng(1)
    return {"x": rng.standard_normal((N, 4)).astype(np.float32),
            "h": rng.standard_normal((1, N, 4)).astype(np.float32),
            "ids": rng.integers(0, 10, (N, 3)).astype(np.int64),
            "mask": rng.random((N, 3)) < 0.5}


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("multi") / "multi.onnx"
    onnx.save(_multi_input_model(), str(path))
    return path


def test_batch_axis_of_state_tensors_and_scalars():
    dyn = [TensorSpec("x", "float32", ("batch", "t", 8)), TensorSpec("h", "float32", (2, "batch", 32)),
           TensorSpec("sr", "int64", ())]
    assert batch_axes(dyn) == [0, 1, None]
    fixed = [TensorSpec("x", "float32", (1, 16, 8)), TensorSpec("h", "float32", (2, 1, 32)),
             TensorSpec("sr", "int64", ())]
    assert batch_axes(fixed) == [0, 1, None]
    specs = [TensorSpec(s.name, s.dtype, s.shape, a) for s, a in zip(fixed, batch_axes(fixed))]
    assert fixed_batch_of(specs) == 1
    unnamed = [TensorSpec("a", "float32", (None, 3)), TensorSpec("b", "float32", (5,))]
    assert batch_axes(unnamed) == [0, None]


def test_feeds_slice_every_input_on_its_own_axis():
    arrays = {"x": np.arange(5 * 2).reshape(5, 2), "h": np.arange(2 * 5 * 3).reshape(2, 5, 3),
              "sr": np.array(16000)}
    feeds = Feeds(arrays, {"x": 0, "h": 1, "sr": None})
    assert len(feeds) == 5
    chunks = list(feeds.batches(2))
    assert [real for _, real in chunks] == [2, 2, 1]
    first, _ = chunks[0]
    assert first["x"].shape == (2, 2) and first["h"].shape == (2, 2, 3) and first["sr"].shape == ()
    np.testing.assert_array_equal(first["h"], arrays["h"][:, :2])
    last, real = list(feeds.batches(2, pad=True))[-1]
    assert real == 1 and last["h"].shape == (2, 2, 3)
    np.testing.assert_array_equal(last["h"][:, 1], arrays["h"][:, 4])  # padded with the last sample
    eight = feeds.at_batch(8)
    assert eight["x"].shape == (8, 2) and eight["h"].shape == (2, 8, 3)
    np.testing.assert_array_equal(eight["x"][5:], arrays["x"][:3])  # tiled from the start
    picked = feeds.take(np.array([4, 0]))
    np.testing.assert_array_equal(picked.arrays["h"], arrays["h"][:, [4, 0]])
    assert picked.fingerprint() != feeds.fingerprint()


def _compress(args: list, capsys) -> tuple[int, str, str]:
    code = main(["compress", *[str(a) for a in args]])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _bad(arrays: dict, drop: str | None = None, **change) -> dict:
    out = {k: v for k, v in arrays.items() if k != drop}
    out.update(change)
    return out


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing", "no array for input 'mask'"),
        ("dtype", "input 'ids' is float32, the model takes int64"),
        ("rank", "input 'h' has shape [40, 4] (rank 2), the model takes [1, 'B', 4] (rank 3)"),
        ("dim", "input 'x' has shape [40, 5], the model takes ['B', 4] (dimension 1 must be 4)"),
        ("count", "inputs hold different numbers of samples"),
        ("output", "--output names 'logits', which is not an output of the model; the outputs are y, hn"),
        ("range", "--input-range applies to --data random only"),
        ("shape", "input 'x' dimension 1 is fixed at 4 by the model, not 5"),
    ],
)
def test_bad_npz_is_one_line_naming_the_input(case, fragment, multi, fast_targets_dir, tmp_path, capsys):
    a = _arrays()
    data = {"missing": _bad(a, "mask"), "dtype": _bad(a, ids=a["ids"].astype(np.float32)),
            "rank": _bad(a, h=a["h"][0]), "dim": _bad(a, x=np.zeros((N, 5), np.float32)),
            "count": _bad(a, x=a["x"][:30])}.get(case, a)
    np.savez(tmp_path / "d.npz", **data)
    extra = {"output": ["--output", "logits"], "range": ["--input-range", "ids=0,5"],
             "shape": ["--input-shape", "x=1,5"]}.get(case, [])
    out = tmp_path / "out"
    code, stdout, err = _compress([multi, "--target", "cpu-server", "--data", tmp_path / "d.npz", "--out", out,
                                   "--targets-dir", fast_targets_dir, *extra], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("edgeopt: error: "), err
    assert fragment in lines[0], lines[0]
    assert not out.exists() and stdout == ""


def test_npz_per_input_end_to_end_and_package_verifies(multi, fast_targets_dir, tmp_path, capsys):
    from toolchain.package.verify import verify_package

    np.savez(tmp_path / "d.npz", **_arrays())
    out = tmp_path / "out"
    code, stdout, err = _compress([multi, "--target", "cpu-server", "--data", tmp_path / "d.npz", "--out", out,
                                   "--targets-dir", fast_targets_dir, "--json"], capsys)
    assert code in (0, 1), err
    t = json.loads(stdout)["targets"]["cpu-server"]
    ev = t["evaluation"]
    assert set(ev["outputs"]) == {"y", "hn"} and ev["samples"] == 8  # 20% of 40 held out
    assert ev["outputs"]["hn"]["shape"] == [1, 8, 4]  # joined on its batch axis 1
    # None: the shipped file computes bit-identical outputs (int8-stored weights too small to store)
    assert ev["min_sqnr_db"] is None or ev["min_sqnr_db"] >= 20, ev
    report = verify_package(Path(t["package"]))
    assert report.ok, report.to_dict()


def test_minus_one_and_unknown_dims_are_dynamic(tmp_path):
    """[-1, 3, ?, ?] is dynamic on axes 0, 2, 3: random data needs --input-shape for H and W
    (and names the flag), -1 in --input-shape keeps the batch dynamic, the model stays symbolic."""
    from toolchain.compress.feeds_input import random_feeds
    from toolchain.compress.model_input import normalize_onnx, parse_input_shapes
    from toolchain.errors import BadInput

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, None, None])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3, None, None])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    src = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    model = normalize_onnx(src, tmp_path / "n.onnx", {})
    assert model.input.shape == ("batch", 3, "x_d2", "x_d3") and model.input.batch_axis == 0
    with pytest.raises(BadInput, match=r"dynamic dimension 2 \('x_d2'\); fix it with --input-shape x=1,3,N,N"):
        random_feeds(model.inputs, {}, {})
    shapes = parse_input_shapes(["x=-1,3,16,20"])
    model = normalize_onnx(src, tmp_path / "m.onnx", shapes)
    assert model.facts["parity_vs_original_max_abs_diff"] is None  # nothing changed: no probe needed
    feeds = random_feeds(model.inputs, shapes, {})
    assert feeds.arrays["x"].shape == (128, 3, 16, 20) and feeds.fixed_batch is None
    dims = onnx.load(str(model.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "x_d2", "x_d3"]  # still symbolic in the file


def test_random_ids_stay_inside_the_table_they_index():
    """Random int inputs feeding Gather on a weight table default to [0, min(10, rows))."""
    from toolchain.compress.shapes import index_ranges

    model = _multi_input_model()
    assert index_ranges(model) == {"ids": (0, 10)}
    table = next(t for t in model.graph.initializer if t.name == "table")
    table.CopyFrom(numpy_helper.from_array(np.zeros((4, 4), np.float32), "table"))
    assert index_ranges(model) == {"ids": (0, 4)}
