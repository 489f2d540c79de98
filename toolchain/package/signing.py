"""Signing a package: a signature vouches for the content, so the content is checked first."""

from __future__ import annotations

from pathlib import Path

from toolchain.package.keys import load_private_key
from toolchain.package.verify import integrity_checks


def sign_package(pkg: Path, private_key: Path, dest: Path | None = None) -> Path:
    """Add (or replace) manifest.sig; writes `dest` (default: `pkg` itself) atomically.

    Refuses to sign a package whose files do not match its manifest: a signature vouches for
    the content, so it must not be put on content we have not checked.
    """
    from toolchain.package.manifest import MANIFEST_NAME, SIGNATURE_NAME
    from toolchain.package.safezip import open_zip, read_member
    from toolchain.package.zipwrite import write_zip

    key = load_private_key(private_key)  # fail on a bad key before reading anything else
    zf, infos = open_zip(Path(pkg))
    with zf:
        entries = {i.filename: read_member(zf, i.filename) for i in infos if not i.is_dir()}
    entries.pop(SIGNATURE_NAME, None)
    failed = [c for c in integrity_checks(entries) if c.status == "fail"]
    if failed:
        from toolchain.package.errors import PackageVerificationFailed

        raise PackageVerificationFailed(
            f"refusing to sign {Path(pkg).name}: {failed[0].name}: {failed[0].reason}", "rebuild the package"
        )
    entries[SIGNATURE_NAME] = key.sign(entries[MANIFEST_NAME])
    return write_zip(Path(dest) if dest is not None else Path(pkg), entries)
