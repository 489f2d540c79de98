"""Each stage alone: numbers it must hit, and that it never mutates its input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from toolchain.config.target import QuantizeScheme, load_target
from toolchain.config.zoo import ModelConfig, build_model
from toolchain.data import DataConfig, load_dataset
from toolchain.errors import ToleranceExceeded
from toolchain.fsio import sha256_file
from toolchain.pipeline.build_target import convert_config
from toolchain.stages.convert import convert
from toolchain.stages.export import ExportConfig, check_parity, export_onnx
from toolchain.stages.prune import PruneConfig, prune
from toolchain.stages.quantize import QuantizeConfig, quantize
from toolchain.stages.train import TrainConfig, train

FAST = TrainConfig(epochs=4)


def _weights(model) -> dict[str, np.ndarray]:
    return {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig())


@pytest.fixture(scope="module")
def trained(data):
    model, metrics = train(build_model(ModelConfig()), data, FAST)
    return model, metrics


@pytest.fixture(scope="module")
def fp32_onnx(trained, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    export_onnx(trained[0], data.x_test, ExportConfig(), path)
    return path


def test_digits_split_is_stratified_and_held_out(data):
    assert data.x_train.shape[1:] == (1, 8, 8) and data.x_train.dtype == np.float32
    assert len(data.x_test) == 360 and len(data.x_train) == 1437
    assert set(np.unique(data.y_test)) == set(range(10))
    assert load_dataset(DataConfig()).fingerprint() == data.fingerprint()
    assert load_dataset(DataConfig(seed=1)).fingerprint() != data.fingerprint()


def test_train_is_deterministic_and_leaves_input_untouched(data, trained):
    fresh = build_model(ModelConfig())
    before = _weights(fresh)
    again, metrics = train(fresh, data, FAST)
    assert all(np.array_equal(before[k], v) for k, v in _weights(fresh).items())
    assert all(np.array_equal(_weights(trained[0])[k], v) for k, v in _weights(again).items())
    assert metrics["accuracy"] == trained[1]["accuracy"] >= 0.93


def test_magnitude_prune_hits_amount_and_keeps_accuracy(data, trained):
    model, metrics = trained
    before = _weights(model)
    pruned, pm = prune(model, data, PruneConfig(amount=0.5, finetune_epochs=1), FAST)
    assert all(np.array_equal(before[k], v) for k, v in _weights(model).items())
    assert pm["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert pm["accuracy"] >= metrics["accuracy"] - 0.03
    weights = [m.weight for m in pruned.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(pm["sparsity"])


@pytest.mark.parametrize("opset", [17, 18])
def test_export_is_one_file_with_the_requested_opset_and_dynamic_batch(trained, data, tmp_path, opset):
    path = tmp_path / "m.onnx"
    facts = export_onnx(trained[0], data.x_test, ExportConfig(opset=opset), path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no side .data file
    proto = onnx.load(str(path))
    assert facts["opset"] == opset == next(o.version for o in proto.opset_import if o.domain == "")
    assert not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")
    parity = check_parity(path, trained[0], data.x_test, ExportConfig())
    assert parity["max_abs_diff"] < 1e-4 and parity["samples"] == 128
    out = ort.InferenceSession(str(path)).run(None, {proto.graph.input[0].name: data.x_test[:7]})[0]
    assert out.shape == (7, 10)


def test_parity_failure_is_typed_with_the_difference(trained, data, fp32_onnx):
    other = build_model(ModelConfig())  # untrained weights: outputs must disagree
    with pytest.raises(ToleranceExceeded) as exc:
        check_parity(fp32_onnx, other, data.x_test, ExportConfig())
    assert exc.value.max_abs_diff > 1e-2
    assert exc.value.exit_code == 3


def _accuracy(path, x, y) -> float:
    sess = ort.InferenceSession(str(path))
    name = sess.get_inputs()[0].name
    preds = np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))]).argmax(1)
    return float((preds == y).mean())


def test_quantize_static_qdq_shrinks_keeps_accuracy_and_stamps(fp32_onnx, data, tmp_path):
    src_hash = sha256_file(fp32_onnx)
    dest = tmp_path / "q.onnx"
    quantize(fp32_onnx, data.x_train, QuantizeConfig(calibration_samples=128), dest, {"target": "t"})
    assert sha256_file(fp32_onnx) == src_hash
    assert dest.stat().st_size / fp32_onnx.stat().st_size < 0.30
    proto = onnx.load(str(dest))
    assert proto.producer_name == "edgeopt"
    assert {p.key: p.value for p in proto.metadata_props}["target"] == "t"
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    drop = _accuracy(fp32_onnx, data.x_test, data.y_test) - _accuracy(dest, data.x_test, data.y_test)
    assert drop <= 0.01


def test_quantize_dynamic_and_none(fp32_onnx, data, tmp_path):
    dyn = tmp_path / "d.onnx"
    quantize(fp32_onnx, data.x_train, QuantizeConfig(scheme=QuantizeScheme(format="dynamic")), dyn, {})
    assert "DynamicQuantizeLinear" in {n.op_type for n in onnx.load(str(dyn)).graph.node}
    same = tmp_path / "n.onnx"
    quantize(fp32_onnx, data.x_train, QuantizeConfig(scheme=QuantizeScheme(format="none")), same, {})
    assert abs(same.stat().st_size - fp32_onnx.stat().st_size) < 200  # only the provenance stamp differs


def test_convert_arm_gives_fixed_shape_ort_and_operator_config(fp32_onnx, data, tmp_path):
    profile = load_target("arm-mobile")
    cfg = convert_config(profile)
    facts = convert(fp32_onnx, cfg, tmp_path)
    ort_file = tmp_path / facts["artifact"]
    assert ort_file.suffix == ".ort"
    sess = ort.InferenceSession(str(ort_file))
    assert sess.get_inputs()[0].shape == [1, 1, 8, 8]
    expected = ort.InferenceSession(str(fp32_onnx)).run(None, {"x": data.x_test[:1]})[0]
    got = sess.run(None, {sess.get_inputs()[0].name: data.x_test[:1]})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    config = (tmp_path / "required_operators.config").read_text()
    assert "ai.onnx;" in config and "#" not in config and "/" not in config


def test_convert_server_keeps_dynamic_batch(fp32_onnx, tmp_path):
    profile = load_target("cpu-server")
    facts = convert(fp32_onnx, convert_config(profile), tmp_path)
    sess = ort.InferenceSession(str(tmp_path / facts["artifact"]))
    assert not isinstance(sess.get_inputs()[0].shape[0], int)


@pytest.mark.parametrize("target", sorted(__import__("toolchain.config.target", fromlist=["x"]).available_targets()))
def test_every_target_profile_builds_a_loadable_accurate_artifact(target, fp32_onnx, data, tmp_path):
    """Conformance over every bundled profile: a new file in targets/ is covered automatically."""
    from toolchain.bench.session import predict
    from toolchain.runtime import load_session

    profile = load_target(target)
    q = tmp_path / "q.onnx"
    quantize(fp32_onnx, data.x_train, QuantizeConfig(scheme=profile.quantize, calibration_samples=64), q, {})
    out = tmp_path / "art"
    out.mkdir()
    facts = convert(q, convert_config(profile), out)
    assert facts["artifact"].endswith("." + profile.artifact.format)
    sess = load_session(out / facts["artifact"], profile.runtime)
    fp32 = predict(load_session(fp32_onnx, profile.runtime), data.x_test[:100]).argmax(1)
    agreement = float((predict(sess, data.x_test[:100]).argmax(1) == fp32).mean())
    assert agreement >= 0.95


def test_export_down_conversion_drops_attributes_the_older_opset_lacks(tmp_path):
    """Exporting x.mean() at opset 17: the exporter writes 18; converting must strip ReduceMean's
    `noop_with_empty_axes` (new in 18) or the checker and ORT reject the file."""

    class GlobalPool(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    model = GlobalPool().eval()
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    path = tmp_path / "pool.onnx"
    facts = export_onnx(model, x, ExportConfig(opset=17), path)
    assert facts["opset"] == 17
    reduce = [n for n in onnx.load(str(path)).graph.node if n.op_type == "ReduceMean"]
    assert reduce and all(a.name != "noop_with_empty_axes" for n in reduce for a in n.attribute)
    assert check_parity(path, model, x, ExportConfig())["max_abs_diff"] < 1e-5


def test_unreachable_opset_is_a_typed_error_naming_the_fix(trained, data, tmp_path):
    from toolchain.errors import VerificationError

    with pytest.raises(VerificationError, match=r"exporter emitted opset 18.*set \[export\] opset = 18"):
        export_onnx(trained[0], data.x_test, ExportConfig(opset=13), tmp_path / "m.onnx")


def test_optimized_graph_counts_show_full_int8_fusion(fp32_onnx, data, tmp_path):
    from toolchain.runtime import runtime_for

    runtime = load_target("cpu-server").runtime
    q = tmp_path / "q.onnx"
    scheme = load_target("cpu-server").quantize.model_copy(update={"fp32_stem": False})
    quantize(fp32_onnx, data.x_train, QuantizeConfig(scheme=scheme, calibration_samples=64), q, {})
    fp32_ops, int8_ops = runtime_for(runtime).optimized_op_counts(fp32_onnx), runtime_for(runtime).optimized_op_counts(q)
    assert fp32_ops["int8_kernels"] == 0 and fp32_ops["fp32_compute"] >= 4
    # 2 convs + 2 linears all became int8 kernels; only the boundary Q/DQ pair remains
    assert int8_ops["fp32_compute"] == 0 and int8_ops["int8_kernels"] == 4
    assert int8_ops["quantize_dequantize"] == 2
    # The profile's default keeps the 1-channel stem conv fp32: exactly one fp32 op, the rest int8.
    stem = tmp_path / "stem.onnx"
    facts = quantize(fp32_onnx, data.x_train, QuantizeConfig(scheme=load_target("cpu-server").quantize,
                                                            calibration_samples=64), stem, {})
    stem_ops = runtime_for(runtime).optimized_op_counts(stem)
    assert len(facts["fp32_stem_nodes"]) == 1
    assert stem_ops["fp32_compute"] == 1 and stem_ops["int8_kernels"] == 3


def test_ort_conversion_is_byte_reproducible(fp32_onnx, tmp_path):
    """Two conversions (two child processes, two temp dirs) give the same .ort bytes."""
    profile = load_target("arm-mobile")
    cfg = convert_config(profile)
    hashes = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        out.mkdir()
        convert(fp32_onnx, cfg, out)
        hashes.append(sha256_file(out / "model.ort"))
    assert hashes[0] == hashes[1]
