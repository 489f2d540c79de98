"""Deterministic zip writing: the same entries always give byte-identical archives.

A zip normally records each file's mtime, the writer's OS and permissions, and the order in
which files were added; any of those makes two builds of the same package hash differently.
We pin all of them. Bytes are still tied to zlib's version (deflate output may change across
zlib releases), which is recorded nowhere in the zip, so determinism holds per environment.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from toolchain.fsio import atomic_path

# The earliest timestamp a zip can hold (DOS epoch); any fixed value works, this one is conventional.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# Regular file, rw-r--r--: apps extract with sane permissions and nothing is executable.
FILE_MODE = 0o100644
_UNIX = 3  # ZipInfo.create_system: otherwise it is the writer's OS, which leaks into the bytes
_ZIP64_LIMIT = (1 << 31) - 1

Source = bytes | Path


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = FILE_MODE << 16
    info.create_system = _UNIX
    # Compression level stays zlib's default (6) for every entry: a ZipInfo we build carries no
    # level, and setting one on streamed entries needs a private attribute.
    return info


def write_zip(dest: Path, entries: Mapping[str, Source]) -> Path:
    """Write `entries` (name -> bytes or file path) to `dest` atomically, sorted by name."""
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            src = entries[name]
            info = _info(name)
            if isinstance(src, (bytes, bytearray)):
                zf.writestr(info, bytes(src))
            else:
                size = Path(src).stat().st_size
                info.file_size = size
                with open(src, "rb") as fin, zf.open(info, "w", force_zip64=size > _ZIP64_LIMIT) as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
    return dest


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A .npz (readable by np.load) with fixed timestamps, unlike np.savez which stamps 'now'."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            if arr.dtype.hasobject:
                raise TypeError(f"{key}: object arrays need pickle, which apps must never load")
            body = io.BytesIO()
            np.lib.format.write_array(body, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(_info(f"{key}.npy"), body.getvalue())
    return buf.getvalue()
