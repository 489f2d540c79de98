"""App packages: one deterministic, optionally signed zip per target (format: docs/package-format.md).

Importing this package is cheap: onnx, onnxruntime and cryptography load inside the functions
that use them.
"""

from toolchain.package.build import PackageSpec, build_package, package_filename
from toolchain.package.describe import inspect_package, read_manifest
from toolchain.package.errors import (
    KeyFileError,
    PackageSpecError,
    PackageVerificationFailed,
    SignatureError,
    UnsafeArchive,
    UnsafeModel,
)
from toolchain.package.keys import generate_keypair
from toolchain.package.manifest import MANIFEST_SCHEMA_VERSION, Manifest, manifest_json_schema
from toolchain.package.metadata import metadata_props_for, read_onnx_metadata, stamp_onnx_metadata
from toolchain.package.safezip import DEFAULT_MAX_BYTES, check_external_data, safe_extract
from toolchain.package.signing import sign_package
from toolchain.package.verify import Check, VerifyReport, verify_package

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MANIFEST_SCHEMA_VERSION",
    "Check",
    "KeyFileError",
    "Manifest",
    "PackageSpec",
    "PackageSpecError",
    "PackageVerificationFailed",
    "SignatureError",
    "UnsafeArchive",
    "UnsafeModel",
    "VerifyReport",
    "build_package",
    "check_external_data",
    "generate_keypair",
    "inspect_package",
    "manifest_json_schema",
    "metadata_props_for",
    "package_filename",
    "read_manifest",
    "read_onnx_metadata",
    "safe_extract",
    "sign_package",
    "stamp_onnx_metadata",
    "verify_package",
]
