"""`edgeopt verify-arm`: run an ARM artifact on the official aarch64 onnxruntime under
qemu-user and compare with the x86 run. Exit 0 parity holds, 1 it does not, 2 bad input."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import click

from toolchain.cli.options import PATH, emit_json, json_option
from toolchain.errors import EXIT_OK, EXIT_VERIFICATION_FAILED_CMD, missing_file


def _golden_from_package(pkg: Path, workdir: Path) -> tuple[Path, dict]:
    """Extract the artifact (safely) and the golden inputs a package ships."""
    import numpy as np

    from toolchain.package import read_manifest, safe_extract

    safe_extract(pkg, workdir)
    manifest, _signed = read_manifest(pkg)
    with np.load(workdir / manifest.golden.file) as golden:
        inputs = {name: golden[key] for name, key in manifest.golden.input_keys.items()}
    return workdir / manifest.artifact, inputs


def _random_inputs(path: Path) -> dict:
    import numpy as np

    from toolchain.bench.session import input_spec
    from toolchain.config.target import RuntimeOptions
    from toolchain.runtime import load_session

    sess = load_session(path, RuntimeOptions())
    rng = np.random.default_rng(0)
    return {name: rng.random([1 if d is None else d for d in shape]).astype(dtype)
            for name, shape, dtype in input_spec(sess)}


@click.command("verify-arm")
@click.argument("package_or_artifact", type=PATH)
@json_option
def verify_arm_cmd(package_or_artifact, as_json):
    """Check an ARM package/artifact on a real aarch64 ONNX Runtime (emulated; never timed).

    Packages are checked on their golden inputs; a bare .ort/.onnx on seeded random inputs.
    The emulated environment is built once (needs root, qemu-user-static and debootstrap) and
    cached under ~/.cache/edgeopt/arm (EDGEOPT_CACHE_DIR overrides).
    """
    import tempfile

    from toolchain.arm import check_arm_parity

    path = package_or_artifact
    if not path.is_file():
        raise missing_file(path, "file", "give a package .zip or an .ort/.onnx artifact")
    with tempfile.TemporaryDirectory() as tmp:
        if zipfile.is_zipfile(path):
            artifact, inputs = _golden_from_package(path, Path(tmp))
        else:
            artifact, inputs = path, _random_inputs(path)
        report = check_arm_parity(artifact, inputs, reference_outputs=None)
    if as_json:
        emit_json(report.to_dict())
    else:
        click.echo(report.render())
    sys.exit(EXIT_OK if report.passed else EXIT_VERIFICATION_FAILED_CMD)


COMMANDS = [verify_arm_cmd]
