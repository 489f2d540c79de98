"""Errors raised by the package tools; each derives from a `toolchain.errors` class for its exit code.

  BadInput (exit 2):          PackageSpecError, UnsafeArchive, UnsafeModel, KeyFileError
  VerificationError (exit 3): SignatureError, PackageVerificationFailed

`verify_package` itself does not raise for a bad package: it returns a report whose failed
checks name the file, so `edgeopt verify` can exit 1. Only unusable arguments (no such
package, unreadable key) raise from it.
"""

from __future__ import annotations

from toolchain.errors import BadInput, VerificationError


class PackageSpecError(BadInput):
    """The PackageSpec handed to build_package is inconsistent (names, shapes, files)."""


class UnsafeArchive(BadInput):
    """A zip holds an entry we refuse to extract (absolute path, '..', symlink, duplicate, too big)."""


class UnsafeModel(BadInput):
    """An ONNX model references external data outside its own folder."""


class KeyFileError(BadInput):
    """A signing key file is missing, malformed, of the wrong type, or would be overwritten."""


class SignatureError(VerificationError):
    """A package signature is missing or does not match the public key."""


class PackageVerificationFailed(VerificationError):
    """Raised by VerifyReport.raise_for_failure(); the message names the first failed check."""
