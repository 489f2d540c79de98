"""Ed25519 keys and package signatures.

manifest.sig is the raw 64-byte Ed25519 signature over the exact bytes of manifest.json.
The manifest lists the sha256 of every other file and verification refuses unlisted files,
so this one signature covers the whole package. Ed25519 signatures are deterministic
(RFC 8032), so signing keeps the zip byte-identical across runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from toolchain.errors import missing_file
from toolchain.package.errors import KeyFileError, SignatureError

SIGNATURE_BYTES = 64


def _write_new(dest: Path, data: bytes, mode: int) -> None:
    """Write atomically, refusing to replace an existing file (os.link fails if dest exists)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            raise KeyFileError(
                f"{dest} already exists", "choose another path or delete the old key"
            ) from None
    finally:
        os.unlink(tmp)


def generate_keypair(private_path: Path, public_path: Path) -> tuple[Path, Path]:
    """Create an Ed25519 key pair as PEM files: the private one mode 0600, never overwriting."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise KeyFileError(f"{p} already exists", "choose another path or delete the old key")
    if private_path.resolve() == public_path.resolve():
        raise KeyFileError("private and public key paths are the same", "give two different paths")
    key = Ed25519PrivateKey.generate()
    # Unencrypted PKCS#8: CI signs unattended; protect the file with its 0600 mode and a secret store.
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(private_path, private_pem, 0o600)
    try:
        _write_new(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink()  # never leave half a key pair
        raise
    return private_path, public_path


def _read_pem(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, f"{what} key file", "check the path (edgeopt keygen creates one)", KeyFileError)
    return path.read_bytes()


def load_private_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(_read_pem(path, "private"), password=None)
    except (ValueError, TypeError) as err:
        raise KeyFileError(
            f"{Path(path).name}: not an unencrypted PEM private key ({err})",
            "pass the private key written by edgeopt keygen",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{Path(path).name}: not an Ed25519 key", "create one with edgeopt keygen")
    return key


def load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(_read_pem(path, "public"))
    except (ValueError, TypeError) as err:
        raise KeyFileError(
            f"{Path(path).name}: not a PEM public key ({err})",
            "pass the .pub file written by edgeopt keygen, not the private key",
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{Path(path).name}: not an Ed25519 key", "create one with edgeopt keygen")
    return key


def check_signature(data: bytes, signature: bytes, public_key: Path) -> None:
    """Raise SignatureError unless `signature` is `public_key`'s Ed25519 signature over `data`."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key)
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(
            f"manifest.sig is {len(signature)} bytes, not {SIGNATURE_BYTES}", "re-sign the package"
        )
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            "manifest.sig does not match manifest.json for this public key",
            "use the publisher's public key, or the package was modified after signing",
        ) from None
