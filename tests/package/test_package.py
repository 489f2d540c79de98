"""App packages: deterministic build, manifest hashes, signing, tamper detection, smoke run."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolchain.errors import EXIT_BAD_INPUT, EXIT_VERIFICATION_FAILED, BadInput
from toolchain.package import (
    KeyFileError,
    PackageSpec,
    PackageSpecError,
    PackageVerificationFailed,
    build_package,
    generate_keypair,
    inspect_package,
    read_onnx_metadata,
    sign_package,
    stamp_onnx_metadata,
    verify_package,
)
from toolchain.package.manifest import MANIFEST_SCHEMA_VERSION, manifest_json_schema, parse_manifest
from toolchain.package.session_config import session_config
from toolchain.package.zipwrite import write_zip

REPO = Path(__file__).resolve().parents[2]


def _tiny_model(path: Path, batch: int | str = "batch") -> Path:
    """x[batch,1,8,8] -> Flatten -> MatMul(64x10) -> y[batch,10]; a stand-in digits classifier."""
    w = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("MatMul", ["f", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    model.producer_name = "quantizer"
    onnx.save(model, str(path))
    return path


def _run(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _spec(tmp: Path, **changes) -> PackageSpec:
    model = _tiny_model(tmp / "model.onnx") if not (tmp / "model.onnx").exists() else tmp / "model.onnx"
    raw = np.random.default_rng(1).integers(0, 17, (5, 1, 8, 8))
    x = (raw * 0.0625).astype(np.float32)
    spec = PackageSpec(
        name="tiny",
        target="cpu-server",
        artifact=model,
        artifact_format="onnx",
        inputs=[{"name": "x", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": ["batch", 10]}],
        preprocessing={
            "layout": "NCHW",
            "dtype": "float32",
            "scale": 0.0625,
            "offset": 0.0,
            "description": "8x8 grey digits, raw values 0..16",
        },
        labels=[f"digit {i}" for i in range(10)],
        metrics={
            "bytes": 2700,
            "accuracy": np.float64(0.95),
            "fp32_accuracy": 0.96,
            "latency_ms": {"p50": 0.01, "p90": 0.02, "p99": float("nan")},
        },
        budgets={"max_bytes": {"limit": 10000, "value": 2700, "pass": True}},
        target_profile={
            "name": "cpu-server",
            "runtime": {"graph_optimization_level": "all", "intra_op_threads": 1},
        },
        versions={"edgeopt": "0.1.0", "onnx": onnx.__version__},
        recipe_hash="ab" * 32,
        golden_inputs={"x": x},
        golden_outputs=[_run(model, x)],
    )
    return replace(spec, **changes)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    return generate_keypair(d / "signing.pem", d / "signing.pub")


@pytest.fixture()
def signed_pkg(tmp_path, keys) -> Path:
    return build_package(_spec(tmp_path), tmp_path / "out", signing_key=keys[0])


def _entries(pkg: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(pkg) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _failed_reasons(report) -> str:
    return " | ".join(f"{c.name}: {c.reason}" for c in report.failures)


# --- build ---------------------------------------------------------------------------------------


def test_same_spec_gives_byte_identical_zip(tmp_path):
    spec = _spec(tmp_path)
    a = build_package(spec, tmp_path / "a")
    # Same data with dict keys in another order: canonical JSON must hide the difference.
    b = build_package(replace(spec, metrics=dict(reversed(list(spec.metrics.items())))), tmp_path / "b.zip")
    assert a.name == "tiny-cpu-server.zip"
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    assert not list((tmp_path / "a").glob(".*.tmp"))  # atomic write left no temp file


def test_manifest_lists_every_other_file_with_its_hash(tmp_path, signed_pkg):
    entries = _entries(signed_pkg)
    m = parse_manifest(entries["manifest.json"])
    assert set(m.files) == set(entries) - {"manifest.json", "manifest.sig"}
    assert set(m.files) == {"model.onnx", "golden.npz", "model_card.md", "manifest.schema.json"}
    for name, entry in m.files.items():
        assert entry.sha256 == hashlib.sha256(entries[name]).hexdigest()
        assert entry.bytes == len(entries[name])
    assert m.schema_version == MANIFEST_SCHEMA_VERSION and m.created_by.startswith("edgeopt ")
    assert m.metrics["latency_ms"]["p99"] is None  # NaN is not JSON
    assert m.golden.samples == 5 and m.golden.input_keys == {"x": "input_0"}
    # the shipped schema is the model's schema and the manifest is canonical JSON
    assert json.loads(entries["manifest.schema.json"]) == manifest_json_schema()
    assert (
        entries["manifest.json"]
        == (json.dumps(json.loads(entries["manifest.json"]), sort_keys=True, indent=2) + "\n").encode()
    )
    with np.load(io.BytesIO(entries["golden.npz"]), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["input_0", "output_0"] and npz["input_0"].shape == (5, 1, 8, 8)


def test_onnx_metadata_is_stamped_and_source_untouched(tmp_path):
    spec = _spec(tmp_path)
    before = hashlib.sha256(spec.artifact.read_bytes()).hexdigest()
    pkg = build_package(spec, tmp_path / "out")
    assert hashlib.sha256(spec.artifact.read_bytes()).hexdigest() == before
    model = onnx.load_from_string(_entries(pkg)["model.onnx"])
    props = {p.key: p.value for p in model.metadata_props}
    assert model.producer_name == "edgeopt"
    assert props["name"] == "tiny" and props["target"] == "cpu-server" and props["recipe_hash"] == "ab" * 32
    assert json.loads(props["labels"])[3] == "digit 3"
    assert json.loads(props["preprocessing"])["scale"] == 0.0625


def test_stamp_twice_is_idempotent_and_refuses_in_place(tmp_path):
    src = _tiny_model(tmp_path / "m.onnx")
    props = {"name": "tiny", "k": "v"}
    one = stamp_onnx_metadata(src, tmp_path / "one.onnx", props)
    two = stamp_onnx_metadata(one, tmp_path / "two.onnx", props)
    assert one.read_bytes() == two.read_bytes()
    assert read_onnx_metadata(two) == props
    with pytest.raises(PackageSpecError):
        stamp_onnx_metadata(src, src, props)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"golden_inputs": {"x": np.zeros((2, 1, 8, 8), np.float64)}}, "float64"),
        ({"golden_inputs": {"x": np.zeros((2, 1, 8, 9), np.float32)}}, "shape"),
        ({"golden_inputs": {"z": np.zeros((2, 1, 8, 8), np.float32)}}, "golden_inputs"),
        ({"preprocessing": {"scale": 1.0, "mean_rgb": [0.5]}}, "unknown key"),
        ({"labels": ["a", "b"]}, "2 labels"),
        ({"artifact_format": "ort"}, "does not match"),
        ({"inputs": [{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]}, "model.onnx has"),
        ({"extra_files": {"manifest.json": Path(__file__)}}, "not allowed"),
        ({"extra_files": {"../evil": Path(__file__)}}, "not allowed"),
        ({"target_profile": {"name": "arm-mobile"}}, "target_profile"),
    ],
)
def test_inconsistent_spec_is_bad_input(tmp_path, change, words):
    with pytest.raises(PackageSpecError, match=words) as err:
        build_package(_spec(tmp_path, **change), tmp_path / "out")
    assert err.value.exit_code == EXIT_BAD_INPUT
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_spec_names_must_match_the_model(tmp_path):
    x = np.zeros((5, 1, 8, 8), np.float32)
    spec = _spec(
        tmp_path,
        inputs=[{"name": "input", "dtype": "float32", "shape": ["batch", 1, 8, 8]}],
        golden_inputs={"input": x},
    )
    with pytest.raises(PackageSpecError, match="has \\['x'\\]"):
        build_package(spec, tmp_path / "out")


def test_fixed_batch_ort_artifact_with_extra_file(tmp_path):
    import onnxruntime as ort

    spec = _spec(tmp_path)
    fixed = _tiny_model(tmp_path / "fixed.onnx", batch=1)  # like arm-mobile: fixed shapes, batch 1
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "model.ort")
    opts.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(fixed), opts, providers=["CPUExecutionProvider"])
    x = spec.golden_inputs["x"]
    y = np.concatenate([_run(tmp_path / "model.ort", x[i : i + 1]) for i in range(len(x))])
    ops = tmp_path / "required_operators.config"
    ops.write_text("ai.onnx;17;Flatten,MatMul\n")
    spec = replace(
        spec,
        artifact=tmp_path / "model.ort",
        artifact_format="ort",
        target="arm-mobile",
        inputs=[{"name": "x", "dtype": "float32", "shape": [1, 1, 8, 8]}],
        outputs=[{"name": "y", "dtype": "float32", "shape": [1, 10]}],
        golden_outputs=[y],
        target_profile={"name": "arm-mobile"},
        extra_files={"required_operators.config": ops},
    )
    pkg = build_package(spec, tmp_path / "out")
    assert sorted(_entries(pkg)) == [
        "golden.npz",
        "manifest.json",
        "manifest.schema.json",
        "model.ort",
        "model_card.md",
        "required_operators.config",
    ]
    report = verify_package(pkg)
    assert report.ok, _failed_reasons(report)
    assert {c.name: c.status for c in report.checks}["smoke run"] == "pass"
    proc = subprocess.run(
        [sys.executable, "-I", str(REPO / "examples" / "consume_package.py"), str(pkg)],
        capture_output=True,
        check=False,  # the return code is asserted below
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


# --- verify, sign, tamper --------------------------------------------------------------------------


def test_signed_package_verifies(signed_pkg, keys):
    report = verify_package(signed_pkg, public_key=keys[1])
    assert report.ok, _failed_reasons(report)
    status = {c.name: c.status for c in report.checks}
    assert status["signature"] == status["smoke run"] == status["onnx metadata"] == "pass"
    assert report.to_dict()["ok"] is True
    report.raise_for_failure()  # no exception


def _tampered(pkg: Path, name: str) -> Path:
    entries = _entries(pkg)
    data = bytearray(entries[name])
    data[len(data) // 2] ^= 0x01
    entries[name] = bytes(data)
    return write_zip(pkg.with_name(f"tampered-{name}.zip"), entries)


@pytest.mark.parametrize(
    "name",
    ["model.onnx", "golden.npz", "model_card.md", "manifest.schema.json", "manifest.json", "manifest.sig"],
)
def test_one_flipped_byte_in_any_file_fails_naming_it(signed_pkg, keys, name):
    report = verify_package(_tampered(signed_pkg, name), public_key=keys[1])
    assert not report.ok
    assert name in _failed_reasons(report)
    with pytest.raises(PackageVerificationFailed) as err:
        report.raise_for_failure()
    assert err.value.exit_code == EXIT_VERIFICATION_FAILED


def test_flipped_byte_in_compressed_zip_data_fails_naming_the_entry(signed_pkg, keys):
    raw = bytearray(signed_pkg.read_bytes())
    with zipfile.ZipFile(signed_pkg) as zf:
        info = zf.getinfo("model.onnx")
    # local header: 30 bytes + name + extra, then the compressed data
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    bad = signed_pkg.with_name("flipped.zip")
    bad.write_bytes(bytes(raw))
    report = verify_package(bad, public_key=keys[1])
    assert not report.ok and "model.onnx" in _failed_reasons(report)


def test_unlisted_file_fails(signed_pkg, keys):
    entries = _entries(signed_pkg)
    entries["payload.so"] = b"\x7fELF"
    report = verify_package(write_zip(signed_pkg.with_name("extra.zip"), entries), public_key=keys[1])
    assert not report.ok and "payload.so" in _failed_reasons(report)


def test_wrong_key_and_unsigned_with_key_fail(tmp_path, signed_pkg):
    _, other_pub = generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    wrong = verify_package(signed_pkg, public_key=other_pub)
    assert [c.name for c in wrong.failures] == ["signature"]
    assert "does not match" in wrong.failures[0].reason

    unsigned = build_package(_spec(tmp_path), tmp_path / "unsigned")
    assert verify_package(unsigned).ok  # no key: signature skipped
    report = verify_package(unsigned, public_key=other_pub)
    assert [c.name for c in report.failures] == ["signature"]
    assert "unsigned" in report.failures[0].reason


def test_bad_arguments_raise_bad_input(tmp_path, signed_pkg, keys):
    with pytest.raises(KeyFileError) as err:
        verify_package(signed_pkg, public_key=keys[0])  # the private key, not the .pub
    assert err.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(BadInput):
        verify_package(tmp_path / "missing.zip")
    not_zip = tmp_path / "model.zip"
    not_zip.write_bytes(b"not a zip at all")
    report = verify_package(not_zip)
    assert [c.name for c in report.failures] == ["archive"] and "model.zip" in report.failures[0].reason


def test_sign_package_matches_signing_at_build(tmp_path, signed_pkg, keys):
    unsigned = build_package(_spec(tmp_path), tmp_path / "unsigned")
    signed = sign_package(unsigned, keys[0], dest=tmp_path / "signed.zip")
    assert signed.read_bytes() == signed_pkg.read_bytes()
    assert (
        sign_package(signed, keys[0]).read_bytes() == signed_pkg.read_bytes()
    )  # re-sign in place: same bytes
    with pytest.raises(PackageVerificationFailed, match="model.onnx"):
        sign_package(_tampered(unsigned, "model.onnx"), keys[0])


def test_bad_signing_key_fails_before_writing(tmp_path, keys):
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        build_package(_spec(tmp_path), tmp_path / "out", signing_key=keys[1])  # the public key
    assert not (tmp_path / "out").exists()


def test_keygen_modes_and_no_overwrite(tmp_path):
    priv, pub = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert stat.S_IMODE(os.stat(priv).st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"PUBLIC KEY" in pub.read_bytes()
    before = priv.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(priv, tmp_path / "k2.pub")
    assert priv.read_bytes() == before and not (tmp_path / "k2.pub").exists()


def test_smoke_run_catches_wrong_golden_outputs(tmp_path):
    spec = _spec(tmp_path)
    pkg = build_package(replace(spec, golden_outputs=[spec.golden_outputs[0] + 1e-2]), tmp_path / "out")
    report = verify_package(pkg)
    assert [c.name for c in report.failures] == ["smoke run"]
    assert "max abs diff 0.01" in report.failures[0].reason


def test_inspect_shows_the_manifest(signed_pkg):
    text = inspect_package(signed_pkg)
    for needle in (
        "tiny",
        "cpu-server",
        "model.onnx",
        "x: float32 [batch, 1, 8, 8]",
        "max_bytes: PASS",
        "digit 9",
        "signed",
        "accuracy: 0.95",
    ):
        assert needle in text


def test_example_consumer_runs_without_edgeopt(signed_pkg):
    example = REPO / "examples" / "consume_package.py"
    imported = set()
    for node in ast.walk(ast.parse(example.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy", "onnxruntime", "openvino"}  # openvino only for its packages

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-I", str(example), str(signed_pkg)],
        capture_output=True,
        check=False,  # the return code is asserted below
        text=True,
        timeout=60,
        env=env,
        cwd=signed_pkg.parent,
    )
    assert proc.returncode == 0, proc.stderr
    entries = _entries(signed_pkg)
    labels = parse_manifest(entries["manifest.json"]).labels
    with np.load(io.BytesIO(entries["golden.npz"]), allow_pickle=False) as npz:
        top1 = [labels[int(i)] for i in npz["output_0"].argmax(axis=1)]
    lines = proc.stdout.strip().splitlines()
    assert lines[-len(top1) :] == [f"sample {i}: {label}" for i, label in enumerate(top1)]


def test_example_consumer_refuses_a_tampered_package(signed_pkg):
    bad = _tampered(signed_pkg, "model.onnx")
    proc = subprocess.run(
        [sys.executable, "-I", str(REPO / "examples" / "consume_package.py"), str(bad)],
        capture_output=True,
        check=False,  # the return code is asserted below
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "model.onnx" in proc.stderr


def test_standardized_tabular_preprocessing_round_trips_through_the_consumer_contract():
    """mean/std per feature (axis 1): the example consumer's preprocess inverts unpreprocess."""
    import importlib.util
    from pathlib import Path as _P

    spec = importlib.util.spec_from_file_location("consumer", _P(__file__).parents[2] / "examples" / "consume_package.py")
    consumer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(consumer)
    pre = {"scale": 1.0, "offset": 0.0, "mean": [1.0, -2.0, 3.0], "std": [2.0, 0.5, 4.0], "dtype": "float32"}
    raw = np.array([[3.0, -1.0, 11.0]])
    x = consumer.preprocess(raw, pre)
    np.testing.assert_allclose(x, [[1.0, 2.0, 2.0]])
    np.testing.assert_allclose(consumer.unpreprocess(x, pre), raw)


# --- session options ---------------------------------------------------------------------------


def _sweep_spec(tmp: Path) -> PackageSpec:
    spec = _spec(tmp)
    sweep = {"fastest": {"8": 2, "1": 1}, "profile_threads": 2}
    return replace(spec, metrics={**spec.metrics, "thread_sweep": sweep},
                   target_profile={"name": "cpu-server", "runtime": {"intra_op_threads": 2, "enable_mem_pattern": False}})


def test_session_block_carries_the_measured_thread_counts(tmp_path):
    from toolchain.package.verify import _runtime_options

    pkg = build_package(_sweep_spec(tmp_path), tmp_path / "out")
    m = parse_manifest(_entries(pkg)["manifest.json"])
    assert m.session.intra_op_threads == 1  # batch 1's fastest, not the profile's 2
    assert m.session.intra_op_threads_by_batch == {"1": 1, "8": 2}
    assert m.session.threads_from == "thread_sweep"
    assert (m.session.graph_optimization_level, m.session.enable_mem_pattern) == ("all", False)  # profile + defaults
    opts = _runtime_options(m)  # verify runs the golden check with exactly these
    assert (opts.intra_op_threads, opts.enable_mem_pattern, opts.engine) == (1, False, "onnxruntime")
    assert verify_package(pkg).ok


def test_without_a_sweep_the_profile_threads_are_used():
    s = session_config({"intra_op_threads": 2}, None)
    assert (s["intra_op_threads"], s["intra_op_threads_by_batch"], s["threads_from"]) == (2, {}, "target_profile")
    assert session_config(None, {"fastest": {}})["intra_op_threads"] == 1  # RuntimeOptions default


def test_model_card_snippet_runs_with_the_session_options(tmp_path):
    pkg = build_package(_sweep_spec(tmp_path), tmp_path / "out")
    card = _entries(pkg)["model_card.md"].decode()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert "opts.intra_op_num_threads = 1  # measured fastest" in code and ", opts, providers=" in code
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=pkg.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in [f"digit {i}" for i in range(10)]


def test_schema_1_manifests_still_load_and_2_requires_session(signed_pkg):
    data = json.loads(_entries(signed_pkg)["manifest.json"])
    old = {k: v for k, v in data.items() if k != "session"}
    assert parse_manifest(json.dumps({**old, "schema_version": 1}).encode()).session is None
    with pytest.raises(ValueError, match="session"):
        parse_manifest(json.dumps(old).encode())


def test_an_int8_weights_package_verifies_and_its_card_says_to_keep_optimization_on(tmp_path):
    from toolchain.stages.int8_weights import Int8WeightsConfig, int8_weights

    spec = _spec(tmp_path)
    stored = tmp_path / "w8" / "model.onnx"
    stored.parent.mkdir()
    facts = int8_weights(spec.artifact, Int8WeightsConfig(min_saved_bytes=0), stored)
    assert facts["weights_int8"] >= 1
    golden = [_run(stored, spec.golden_inputs["x"])]  # package_inputs takes them from the shipped artifact
    pkg = build_package(replace(spec, artifact=stored, golden_outputs=golden,
                                metrics={**spec.metrics, "shipped": "int8_weights"}), tmp_path / "out")
    card = _entries(pkg)["model_card.md"].decode()
    assert "rebuilt by Cast -> Mul" in card and "ORT_DISABLE_ALL" in card
    assert verify_package(pkg).ok  # golden check under the manifest's session options (optimization on)
    plain = build_package(spec, tmp_path / "plain")
    assert "Cast -> Mul" not in _entries(plain)["model_card.md"].decode()


def test_an_openvino_package_records_its_runtime_and_verifies_and_runs_from_its_card(tmp_path):
    from conftest import require_extra

    require_extra("openvino", "openvino")
    runtime = {"engine": "openvino", "intra_op_threads": 1}
    pkg = build_package(_spec(tmp_path, target="x86-server-openvino",
                              target_profile={"name": "x86-server-openvino", "runtime": runtime}),
                        tmp_path / "out")
    m = parse_manifest(_entries(pkg)["manifest.json"])
    assert (m.runtime.name, m.session.engine, m.session.inference_precision) == ("openvino", "openvino", "f32")
    assert m.runtime.settings == {"device": "CPU", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                  "INFERENCE_NUM_THREADS": 1}
    assert m.runtime.version == __import__("openvino").__version__.split("-")[0]
    report = verify_package(pkg)
    assert report.ok and "openvino" not in [c.reason for c in report.checks if c.status == "fail"]
    card = _entries(pkg)["model_card.md"].decode()
    assert "## Load it with openvino" in card
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=pkg.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in [f"digit {i}" for i in range(10)]
    ort_pkg = parse_manifest(_entries(build_package(_spec(tmp_path), tmp_path / "ort"))["manifest.json"])
    assert ort_pkg.runtime.name == "onnxruntime" and ort_pkg.runtime.settings["graph_optimization_level"] == "all"
