"""Consume an edgeopt package the way an app would, with only the standard library, numpy and the
runtime the manifest names (onnxruntime, or openvino for an OpenVINO target).

    python examples/consume_package.py tiny-cpu-server.zip

It opens the zip without extracting it, checks every file against the manifest's sha256,
applies the manifest's preprocessing, runs the model on golden.npz, checks the outputs, and
prints the top-1 label of each sample. Exit 0 on success, 1 when the package fails a check.

Not done here: the signature. manifest.sig is an Ed25519 signature over manifest.json's
bytes; check it with your platform's crypto library (libsodium, CryptoKit, Tink, or Python's
`cryptography`) before trusting anything below. The format is in docs/package-format.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile

import numpy as np

SUPPORTED_SCHEMAS = (1, 2, 3)  # 2 added `session` (the measured session options), 3 `golden.source`
UNHASHED = {"manifest.json", "manifest.sig"}  # the manifest cannot list its own hash


class PackageError(Exception):
    pass


def read_checked(path: str) -> tuple[dict, dict[str, bytes]]:
    """The manifest and every listed file, each checked against its sha256 and size."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            raise PackageError("duplicate entries in the zip")
        manifest = json.loads(zf.read("manifest.json"))
        if manifest.get("schema_version") not in SUPPORTED_SCHEMAS:
            raise PackageError(
                f"manifest.json: schema_version {manifest.get('schema_version')} is not supported"
            )
        listed = manifest["files"]
        unlisted = sorted(set(names) - set(listed) - UNHASHED)
        if unlisted:
            raise PackageError(f"files not listed in manifest.json: {unlisted}")
        files = {}
        for name, want in listed.items():
            if name not in names:
                raise PackageError(f"{name}: listed in manifest.json but missing")
            data = zf.read(name)  # reading in memory: no path from the zip ever touches the disk
            if hashlib.sha256(data).hexdigest() != want["sha256"] or len(data) != want["bytes"]:
                raise PackageError(f"{name}: sha256 does not match manifest.json")
            files[name] = data
    return manifest, files


def _per_axis1(values, ndim: int) -> np.ndarray:
    """Shape per-channel/feature statistics to broadcast along axis 1."""
    return np.asarray(values, np.float64).reshape([1, -1] + [1] * (ndim - 2))


def preprocess(raw: np.ndarray, pre: dict) -> np.ndarray:
    """The manifest's contract: model input = ((raw * scale + offset) - mean) / std as dtype,
    already in `layout` order; mean/std are optional and apply along axis 1."""
    x = raw.astype(np.float64) * pre["scale"] + pre["offset"]
    if pre.get("mean") is not None:
        x = x - _per_axis1(pre["mean"], x.ndim)
    if pre.get("std") is not None:
        x = x / _per_axis1(pre["std"], x.ndim)
    return x.astype(pre["dtype"])


def unpreprocess(x: np.ndarray, pre: dict) -> np.ndarray:
    """Inverse of preprocess, to recover raw values from the golden (already preprocessed) inputs."""
    x = x.astype(np.float64)
    if pre.get("std") is not None:
        x = x * _per_axis1(pre["std"], x.ndim)
    if pre.get("mean") is not None:
        x = x + _per_axis1(pre["mean"], x.ndim)
    return (x - pre["offset"]) / pre["scale"]


_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def session_options(manifest: dict):
    """The options the package was measured with (`session`, manifest schema 2); ORT defaults for schema 1."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    s = manifest.get("session")
    if s:
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[s["graph_optimization_level"]])
        opts.intra_op_num_threads = s["intra_op_threads"]  # per batch size: s["intra_op_threads_by_batch"]
        opts.inter_op_num_threads = s["inter_op_threads"]
        opts.enable_cpu_mem_arena = s["enable_cpu_mem_arena"]
        opts.enable_mem_pattern = s["enable_mem_pattern"]
    return opts


def open_model(manifest: dict, model: bytes):
    """A session on the engine the package was measured with (`runtime`, absent in older packages:
    onnxruntime), with its recorded settings; `.run(output_names, feeds)` like onnxruntime's."""
    runtime = manifest.get("runtime") or {"name": "onnxruntime"}
    if runtime["name"] != "openvino":
        import onnxruntime as ort

        return ort.InferenceSession(model, session_options(manifest), providers=["CPUExecutionProvider"])
    import openvino as ov

    settings = dict(runtime["settings"])  # compile_model properties: LATENCY hint, threads, precision
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model, b""), settings.pop("device"), settings)

    class Session:
        def run(self, names, feeds):
            result = compiled(feeds)
            ports = {port.any_name: port for port in compiled.outputs}
            return [result[ports[name]] for name in names]

    return Session()


def main(path: str) -> int:
    try:
        manifest, files = read_checked(path)
    except (PackageError, KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        print(f"refusing {path}: {err}", file=sys.stderr)
        return 1
    pre, golden = manifest["preprocessing"], manifest["golden"]
    with np.load(io.BytesIO(files[golden["file"]]), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}

    # golden.npz stores model-ready inputs; an app starts from raw values, so recover those
    # and run them through the documented preprocessing to show the full path.
    feeds = {}
    for name, key in golden["input_keys"].items():
        raw = unpreprocess(arrays[key], pre)
        feeds[name] = preprocess(raw, pre)
        if not np.allclose(feeds[name], arrays[key], atol=1e-6):
            print(f"preprocessing does not reproduce golden input '{name}'", file=sys.stderr)
            return 1

    session = open_model(manifest, files[manifest["artifact"]])
    out_names = list(golden["output_keys"])
    # A fixed batch dimension (e.g. 1 in a mobile .ort) means feeding the samples in chunks.
    first_dim = manifest["inputs"][0]["shape"][0]
    step = first_dim if isinstance(first_dim, int) else golden["samples"]
    chunks = [
        session.run(out_names, {k: v[i : i + step] for k, v in feeds.items()})
        for i in range(0, golden["samples"], step)
    ]
    outputs = {name: np.concatenate([c[j] for c in chunks]) for j, name in enumerate(out_names)}
    for name, key in golden["output_keys"].items():
        if not np.allclose(outputs[name], arrays[key], atol=golden["atol"], rtol=golden["rtol"]):
            print(f"{manifest['artifact']}: output '{name}' does not match golden.npz", file=sys.stderr)
            return 1

    print(
        f"{manifest['name']} for {manifest['target']}: {len(files)} files verified, golden outputs reproduced"
    )
    scores = outputs[manifest["outputs"][0]["name"]]
    labels = manifest["labels"]
    for i, row in enumerate(scores):
        best = int(np.argmax(row))
        print(f"sample {i}: {labels[best] if labels else best}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
