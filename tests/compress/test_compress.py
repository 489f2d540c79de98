"""`edgeopt compress`: user ONNX / torch factory / .pt2 models, user data, evaluators, bad input.

Fixtures are built here: an opset-9 MLP whose weights are also listed as graph inputs, the same
model with external data (inside and outside its folder), a torch factory module on sys.path
with its state dict, and a weights file whose pickle would create a file if it were run.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.cli import cli, main
from toolchain.cli.compress import COMMANDS
from toolchain.compress import evaluators
from toolchain.compress.feeds_input import random_feeds
from toolchain.compress.model_input import normalize_onnx, parse_input_shapes
from toolchain.config.base import to_toml
from toolchain.data import user as data_input
from toolchain.data.feeds import as_feeds
from toolchain.errors import BadInput
from toolchain.package.errors import UnsafeModel

N_IN, HIDDEN, N_OUT = 64, 256, 4

for _cmd in COMMANDS:  # until the lead registers them in cli.py; a no-op afterwards
    if _cmd.name not in cli.commands:
        cli.add_command(_cmd)


def _mlp_opset9(n_in=N_IN, hidden=HIDDEN, n_out=N_OUT, dims=("N", N_IN)) -> onnx.ModelProto:
    """Gemm-Relu-Gemm at opset 9 and IR 3, every initializer also declared as a graph input."""
    rng = np.random.default_rng(0)
    arrays = {
        "w1": rng.standard_normal((n_in, hidden)) / np.sqrt(n_in),
        "b1": rng.standard_normal(hidden) * 0.1,
        "w2": rng.standard_normal((hidden, n_out)) / np.sqrt(hidden),
        "b2": rng.standard_normal(n_out) * 0.1,
    }
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in arrays.items()]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_out])
    weight_inputs = [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "mlp", [x, *weight_inputs], [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)


def _run(path_or_bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> dict:
    """The opset-9 model, and data labelled by its own argmax (so fp32 accuracy is exactly 1)."""
    d = tmp_path_factory.mktemp("mlp")
    model = d / "mlp9.onnx"
    onnx.save(_mlp_opset9(), str(model))
    x = np.random.default_rng(1).standard_normal((300, N_IN)).astype(np.float32)
    y = _run(model.read_bytes(), x).argmax(1)
    np.savez(d / "data.npz", x=x, y=y)
    np.save(d / "inputs.npy", x)
    return {"dir": d, "model": model, "data": d / "data.npz", "npy": d / "inputs.npy", "x": x, "y": y}


@pytest.fixture(scope="module")
def targets(fast_targets_dir, tmp_path_factory) -> Path:
    """The fast bundled profiles with budgets a 20k-parameter MLP can meet (its scales and
    graph weigh more, relatively, than a real model's)."""
    d = tmp_path_factory.mktemp("compress-targets")
    for src in fast_targets_dir.glob("*.toml"):
        data = tomllib.loads(src.read_text())
        data["budgets"].update(max_size_ratio=0.5, max_accuracy_drop=0.05)
        (d / src.name).write_text(to_toml(data))
    return d


def _external(model: onnx.ModelProto, folder: Path, location: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ext.onnx"
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    if location != "weights.bin":  # move the data and point the model at its new place
        (folder / "weights.bin").rename((folder / location).resolve())
        proto = onnx.load(str(path), load_external_data=False)
        for t in proto.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(proto, str(path))
    return path


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["compress", *[str(a) for a in args]])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_refused(code: int, err: str, out_dir: Path, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("edgeopt: error: "), err
    assert "Traceback" not in err
    assert not out_dir.exists()
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- model normalization -------------------------------------------------------------------------


def test_parse_input_shapes():
    assert parse_input_shapes(["x=1,3,64,64"]) == {"x": (1, 3, 64, 64)}
    assert parse_input_shapes(["x=-1,3,?,64"]) == {"x": (None, 3, None, 64)}  # -1 / ? stay dynamic
    for bad in ("x", "x=", "x=1,a", "x=0,3", "=1,2"):
        with pytest.raises(BadInput):
            parse_input_shapes([bad])


def test_opset9_with_initializer_inputs_is_upgraded_and_unchanged(mlp, tmp_path):
    model = normalize_onnx(mlp["model"], tmp_path / "n.onnx", {})
    proto = onnx.load(str(model.path))
    assert model.facts["original_opset"] == 9 and model.facts["opset"] == 13
    assert model.facts["initializer_inputs_removed"] == 4
    assert [i.name for i in proto.graph.input] == ["x"]
    assert model.input.shape == ("N", N_IN) and model.outputs[0].shape == ("N", N_OUT)
    assert model.input.batch_axis == 0 and model.outputs[0].batch_axis == 0
    assert model.facts["parity_vs_original_max_abs_diff"] < 1e-5
    np.testing.assert_allclose(_run(str(model.path), mlp["x"]), _run(mlp["model"].read_bytes(), mlp["x"]), atol=1e-5)
    assert mlp["model"].read_bytes() == _mlp_opset9().SerializeToString()  # the user's file is untouched


def test_external_data_is_inlined(mlp, tmp_path):
    path = _external(_mlp_opset9(), tmp_path / "m", "weights.bin")
    model = normalize_onnx(path, tmp_path / "n.onnx", {})
    assert model.facts["external_data_inlined"] == ["weights.bin"]
    proto = onnx.load(str(model.path), load_external_data=False)
    assert all(t.data_location == TensorProto.DEFAULT for t in proto.graph.initializer)
    assert model.path.stat().st_size > 4 * (N_IN * HIDDEN)  # the weights now live in the file itself
    np.testing.assert_allclose(_run(str(model.path), mlp["x"]), _run(mlp["model"].read_bytes(), mlp["x"]), atol=1e-5)


def test_external_data_outside_the_folder_is_refused(tmp_path, targets, capsys):
    path = _external(_mlp_opset9(), tmp_path / "m", "../secret.bin")
    with pytest.raises(UnsafeModel):
        normalize_onnx(path, tmp_path / "n.onnx", {})
    out = tmp_path / "out"
    code, _, err = _cli(
        [path, "--target", "cpu-server", "--data", "random", "--out", out, "--targets-dir", targets], capsys
    )
    _assert_refused(code, err, out, "outside the model's folder")


def test_an_ort_optimized_artifact_is_refused_in_one_line(mlp, tmp_path, targets, capsys):
    """What `edgeopt run` writes for an .onnx target holds ORT's fused ops: refused up front, not an
    internal error from the quantizer's shape inference."""
    from toolchain.config.target import load_target
    from toolchain.pipeline.build_target import convert_config
    from toolchain.stages.convert import convert

    convert(mlp["model"], convert_config(load_target("cpu-server")), tmp_path, {})
    fused = {n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node if n.domain == "com.microsoft"}
    assert fused  # the offline optimizer fused something, or this test checks nothing
    code, _, err = _cli([tmp_path / "model.onnx", "--target", "cpu-server", "--targets-dir", targets,
                         "--data", mlp["data"], "--out", tmp_path / "run"], capsys)
    _assert_refused(code, err, tmp_path / "run", "optimized offline by ONNX Runtime", min(fused))


def test_symbolic_feature_dim_stays_dynamic_until_input_shape(tmp_path):
    src = tmp_path / "sym.onnx"
    onnx.save(_mlp_opset9(dims=("N", "F")), str(src))
    model = normalize_onnx(src, tmp_path / "a.onnx", {})
    assert model.input.shape == ("N", "F") and model.facts["parity_vs_original_max_abs_diff"] is None
    with pytest.raises(BadInput, match="dynamic dimension 1 .'F'.; fix it with --input-shape x=1,N"):
        random_feeds(model.inputs, {}, {})
    model = normalize_onnx(src, tmp_path / "b.onnx", {"x": (1, N_IN)})
    assert model.input.shape == ("N", "F")  # the model stays dynamic; the run shape is the override's
    assert model.facts["parity_vs_original_max_abs_diff"] < 1e-5
    assert random_feeds(model.inputs, {"x": (1, N_IN)}, {}).arrays["x"].shape == (128, N_IN)
    with pytest.raises(BadInput, match="has 3 dims"):
        normalize_onnx(src, tmp_path / "c.onnx", {"x": (1, 8, 8)})


# ---- data and evaluators -------------------------------------------------------------------------


def test_csv_labels_decide_the_task(tmp_path):
    (tmp_path / "c.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,1\n")
    (tmp_path / "r.csv").write_text("1,2,0.5\n3,4,1.5\n5,6,2.5\n")
    cls = data_input.check(data_input.load_raw(str(tmp_path / "c.csv"), None, "label"), (2,))
    reg = data_input.check(data_input.load_raw(str(tmp_path / "r.csv"), None, "2"), (2,))
    assert cls.y.dtype == np.int64 and cls.y.tolist() == [0, 1, 1] and cls.x.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert reg.y.dtype == np.float32 and reg.y.tolist() == [0.5, 1.5, 2.5]
    assert data_input.split(as_feeds(cls.x, "x"), cls.y, "c.csv", 0.34).task == "classify"
    assert data_input.split(as_feeds(reg.x, "x"), reg.y, "r.csv", 0.34).task == "regress"
    with pytest.raises(BadInput, match="row 2 column 1: 'oops'"):
        (tmp_path / "bad.csv").write_text("1,2\noops,3\n")
        data_input.load_raw(str(tmp_path / "bad.csv"), None, None)


def test_split_is_deterministic_and_disjoint(mlp):
    raw = data_input.check(data_input.load_raw(str(mlp["data"]), ["x"], None), (N_IN,))
    a, b = (data_input.split(as_feeds(raw.x, "x"), raw.y, "data.npz", 0.2) for _ in range(2))
    assert len(a.x_test) == 60 and len(a.x_train) == 240
    assert np.array_equal(a.x_test.arrays["x"], b.x_test.arrays["x"]) and a.fingerprint() == b.fingerprint()
    rows = {r.tobytes() for r in a.x_train.arrays["x"]}
    assert not any(r.tobytes() in rows for r in a.x_test.arrays["x"])


def test_evaluator_numbers():
    ref = np.ones((4, 1), np.float32)
    assert evaluators.sqnr_db(ref, ref * 1.1) == pytest.approx(20.0)  # signal 4 / noise 0.04 = 100
    assert evaluators.sqnr_db(ref, ref) is None
    m = evaluators.evaluate(evaluators.Evaluator("regress"), ref, ref * 1.5, np.full(4, 2.0, np.float32))
    assert (m["mse"], m["fp32_mse"], m["mae"], m["fp32_mae"]) == pytest.approx((0.25, 1.0, 0.5, 1.0))
    assert m["mse_increase"] == pytest.approx(-0.75)
    logits = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    agree = evaluators.evaluate(evaluators.Evaluator("agreement"), logits, logits[[0, 1, 1, 1]], None)
    assert agree["top1_agreement"] == 0.75 and agree["kind"] == "agreement"


TORCH_MODULE = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.fc = torch.nn.Linear(16 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))

def build():
    return Net()
"""


@pytest.fixture(scope="module")
def torch_model(tmp_path_factory):
    import sys

    import torch

    d = tmp_path_factory.mktemp("torchmod")
    (d / "compress_tiny_net.py").write_text(TORCH_MODULE)
    sys.path.insert(0, str(d))
    import compress_tiny_net

    torch.manual_seed(3)
    net = compress_tiny_net.build().eval()
    torch.save(net.state_dict(), d / "weights.pt")
    x = np.random.default_rng(0).standard_normal((200, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.as_tensor(x)).argmax(1).numpy()
    np.savez(d / "img.npz", x=x, y=y)

    class Payload:  # unpickling this would create `marker`
        def __reduce__(self):
            return (open, (str(d / "PWNED"), "w"))

    torch.save({"conv.weight": Payload()}, d / "evil.pt")
    yield {"dir": d, "net": net, "x": x}
    sys.path.remove(str(d))


def test_malicious_weights_never_run(torch_model, targets, tmp_path, capsys):
    d = torch_model["dir"]
    out = tmp_path / "out"
    code, _, err = _cli(
        [
            "compress_tiny_net:build",
            "--weights",
            d / "evil.pt",
            "--data",
            d / "img.npz",
            "--target",
            "cpu-server",
            "--out",
            out,
            "--targets-dir",
            targets,
        ],
        capsys,
    )
    _assert_refused(code, err, out, "refusing to run them")
    assert not (d / "PWNED").exists()


def test_pt2_needs_trust_and_then_matches_torch(torch_model, targets, tmp_path, capsys):
    import torch

    from toolchain.compress.torch_input import from_pt2

    x = torch_model["x"]
    program = torch.export.export(
        torch_model["net"],
        (torch.as_tensor(x[:2]),),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
    )
    pt2 = tmp_path / "net.pt2"
    torch.export.save(program, str(pt2))
    out = tmp_path / "out"
    code, _, err = _cli(
        [
            pt2,
            "--data",
            torch_model["dir"] / "img.npz",
            "--target",
            "cpu-server",
            "--out",
            out,
            "--targets-dir",
            targets,
        ],
        capsys,
    )
    _assert_refused(code, err, out, "--trust-pt2")
    exported = from_pt2(pt2, x[:64], tmp_path, trust=True)
    model = normalize_onnx(exported.onnx_path, tmp_path / "n.onnx", {}, exported.facts)
    with torch.no_grad():
        expected = torch_model["net"](torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(_run(str(model.path), x), expected, atol=1e-4)
    assert model.input.shape[1:] == (1, 8, 8) and isinstance(model.input.shape[0], str) and model.facts["source"] == "torch-export-pt2"


# ---- bad input: one line on stderr, exit 2, nothing left behind -----------------------------------


def _bad_cases(mlp, tmp: Path) -> dict[str, tuple[list, str]]:
    (tmp / "notes.onnx").write_text("these are not the weights you are looking for\n")
    np.savez(tmp / "wide.npz", x=np.zeros((10, N_IN + 1), np.float32))
    nan = mlp["x"][:20].copy()
    nan[7, 3] = np.nan
    np.savez(tmp / "nan.npz", x=nan)
    (tmp / "compress_bad_eval.py").write_text("def score(outputs, y):\n    raise ValueError('boom')\n")
    model, data = mlp["model"], mlp["data"]
    return {
        "not a model": ([tmp / "notes.onnx", "--data", data], "is not an ONNX model"),
        "shape mismatch": (
            [model, "--data", tmp / "wide.npz"],
            f"samples have shape ({N_IN + 1},), the model takes ({N_IN},)",
        ),
        "nan in data": ([model, "--data", tmp / "nan.npz"], "1 NaN/inf input value(s), first in sample 7"),
        "evaluator raises": (
            [model, "--data", data, "--evaluator", "compress_bad_eval:score"],
            "raised ValueError: boom",
        ),
        "unknown target": ([model, "--data", data, "--target", "toaster"], "unknown target 'toaster'"),
        "weights for onnx": (
            [model, "--data", data, "--weights", tmp / "w.pt"],
            "--weights applies to module:factory",
        ),
        "no data": ([model], "no --data given"),
        "weights as model": ([tmp / "w.pt", "--data", data], "looks like a weights file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "not a model",
        "shape mismatch",
        "nan in data",
        "evaluator raises",
        "unknown target",
        "weights for onnx",
        "no data",
        "weights as model",
    ],
)
def test_bad_input_is_one_line_exit_2(case, mlp, targets, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "w.pt").write_bytes(b"\0")
    args, fragment = _bad_cases(mlp, tmp_path)[case]
    if "--target" not in args:
        args = [*args, "--target", "cpu-server"]
    out = tmp_path / "out"
    code, stdout, err = _cli([*args, "--out", out, "--targets-dir", targets], capsys)
    _assert_refused(code, err, out, fragment)
    assert stdout == ""
