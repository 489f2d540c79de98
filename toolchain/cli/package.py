"""CLI commands for app packages: package, keygen, sign, verify, inspect. Thin wrappers over
toolchain.package; exit codes: 0 good, 1 verification failed, 2 bad input."""

from __future__ import annotations

import sys

import click

from toolchain.cli.options import (
    PATH,
    emit,
    emit_json,
    golden_option,
    json_mode,
    json_option,
    targets_dir_option,
)
from toolchain.errors import EXIT_OK, EXIT_VERIFICATION_FAILED_CMD

_path = PATH


@click.command("package")
@click.argument("artifact", type=_path)
@click.option("--target", required=True, help="Target profile recorded in the manifest.")
@click.option("--name", default=None, help="Package name (default: the artifact's file stem).")
@click.option("--out", "out", type=_path, default=None, help="Zip file or directory (default: beside the artifact).")
@click.option("--sign-key", type=_path, default=None, help="Ed25519 private key (edgeopt keygen) to sign with.")
@click.option("--data", "data", default=None, metavar="FILE",
              help="Calibration samples (.npz with one array per input, .npy or .csv): the package then carries a "
              "drift reference of them for `edgeopt drift` (docs/drift.md); golden inputs follow --golden.")
@golden_option
@targets_dir_option
def package_cmd(artifact, target, name, out, sign_key, data, golden, targets_dir):
    """Package a bare .onnx/.ort file (golden inputs drawn at random, seeded; no metrics).

    `edgeopt run` packages its own artifacts with measured metrics and synthetic golden inputs.
    With --data, the package carries a drift reference of those samples, and its golden inputs are
    drawn from their statistics (--golden synthetic, the default) or are the first samples.
    """
    from toolchain.config.target import load_target
    from toolchain.errors import ModelLoadError, missing_file
    from toolchain.package import build_package
    from toolchain.package.inputs import reference_from_file, spec_for_artifact

    if not artifact.is_file():
        raise missing_file(artifact, "artifact", "check the path", ModelLoadError)
    profile = load_target(target, targets_dir)
    reference = None if data is None else reference_from_file(data, artifact, profile)
    spec = spec_for_artifact(artifact, profile, name=name or artifact.stem, recipe_hash="", labels=[],
                             preprocessing={}, metrics={}, verdicts={}, samples=reference, golden=golden,
                             reference=reference)
    dest = build_package(spec, out or artifact.parent, signing_key=sign_key)
    click.echo(str(dest.resolve()))


@click.command("keygen")
@click.argument("private_key", type=_path)
@click.option("--public-key", type=_path, default=None, help="Default: PRIVATE_KEY with .pub appended.")
def keygen_cmd(private_key, public_key):
    """Create an Ed25519 key pair for signing packages (never overwrites existing files)."""
    from toolchain.package import generate_keypair

    public_key = public_key or private_key.with_name(private_key.name + ".pub")
    generate_keypair(private_key, public_key)
    click.echo(f"private key: {private_key}\npublic key:  {public_key}")


@click.command("sign")
@click.argument("package", type=_path)
@click.option("--key", "key", type=_path, required=True, help="Ed25519 private key file.")
def sign_cmd(package, key):
    """Sign a package in place (adds manifest.sig)."""
    from toolchain.package import sign_package

    click.echo(str(sign_package(package, key)))


@click.command("verify")
@click.argument("package", type=_path)
@click.option("--public-key", type=_path, default=None, help="Require a valid signature by this key.")
@json_option
def verify_cmd(package, public_key, as_json):
    """Check every hash, the signature (with --public-key) and smoke-run the golden input."""
    from toolchain.errors import BadInput
    from toolchain.package import verify_package
    from toolchain.package.safezip import looks_like_zip

    if package.is_file() and not looks_like_zip(package):  # not a package at all: bad input, not tampering
        raise BadInput(f"{package} is not a zip package", "pass the .zip that `edgeopt run` or `edgeopt package` wrote")
    report = verify_package(package, public_key=public_key)
    if as_json:
        emit_json(report.to_dict())
    else:
        for check in report.checks:
            click.echo(f"{check.status.upper():<5} {check.name}: {check.reason}")
        click.echo("package verified" if report.ok else "VERIFICATION FAILED")
    sys.exit(EXIT_OK if report.ok else EXIT_VERIFICATION_FAILED_CMD)


@click.command("inspect")
@click.argument("package", type=_path)
@click.option("--privacy", is_flag=True, help="List every member that can carry data, its origin and size.")
@click.option("--data", "data", type=_path, default=None,
              help="With --privacy: an .npz whose rows must not be in the package (exit 1 if one is).")
@click.option("--recipe", type=_path, default=None,
              help="With --privacy: rebuild this recipe's dataset and check that none of its rows is in the package.")
@json_option
def inspect_cmd(package, privacy, data, recipe, as_json):
    """Print a package's manifest for a person (does not verify it); --privacy: its data audit.

    Exit codes with --privacy: 0 no row of the given data found, 1 a row found, 2 bad input.
    """
    from toolchain.errors import BadInput
    from toolchain.package import inspect_package, read_manifest

    if not privacy:
        if data is not None or recipe is not None:
            raise BadInput("--data and --recipe apply to --privacy only", "add --privacy")
        if as_json:
            manifest, signed = read_manifest(package)
            emit_json({"manifest": manifest.model_dump(mode="json"), "signed": signed})
        else:
            click.echo(inspect_package(package))
        return
    from toolchain.package.privacy import load_check_data, privacy_report, render_privacy

    read_manifest(package)  # a missing or broken package fails before any data is loaded
    with json_mode(as_json):  # rebuilding a recipe's dataset may print
        report = privacy_report(package, load_check_data(data, recipe))
    emit(report, as_json, render_privacy)
    sys.exit(EXIT_VERIFICATION_FAILED_CMD if report["rows_found"] else EXIT_OK)


COMMANDS = [package_cmd, keygen_cmd, sign_cmd, verify_cmd, inspect_cmd]
