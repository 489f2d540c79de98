"""Atomic file writes and content hashes.

Every file edgeopt produces is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written artifact where a later run would trust it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None, recursively: bare `NaN` is not JSON,
    and a reader must not mistake an unmeasurable number for a measured one."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(obj: Any) -> str:
    """The one human-readable JSON rendering: sorted keys, non-finite numbers as null."""
    return json.dumps(finite(obj), indent=2, sort_keys=True, default=str, allow_nan=False)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create 0600/0700 whatever the umask: give the file the mode a plain
    open() or mkdir() would, so other users and later CI steps can read the outputs."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same data always hashes the same."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `dest`; on success rename it onto `dest`, on error delete it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _honour_umask(tmp_path, directory=False)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def write_text_atomic(dest: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(dest, text.encode())


def write_json_atomic(dest: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(dest, json_text(obj) + "\n")


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)


def _temp_sibling_dir(dest: Path) -> Path:
    """An empty directory beside `dest` (same filesystem, so a rename into place is atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    _honour_umask(tmp, directory=True)
    return tmp


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp directory; on success it replaces `dest` as a whole."""
    dest = Path(dest)
    tmp = _temp_sibling_dir(dest)
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def publish_dir(dest: str | os.PathLike, complete: Callable[[Path], bool]) -> Iterator[Path]:
    """Like atomic_dir, for immutable entries that several processes (or nodes sharing a
    directory) may build at once: build in a temp sibling, then rename it into place. When a
    complete `dest` is already there another writer published the same content first: keep
    theirs, drop ours; a reader of `dest` never sees it removed or half-written. A `dest` that
    is not `complete` (left by an older, non-atomic writer) is replaced."""
    dest = Path(dest)
    tmp = _temp_sibling_dir(dest)
    try:
        yield tmp
        try:
            os.rename(tmp, dest)  # atomic; fails, rather than replaces, when dest is a non-empty directory
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not complete(dest):
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold `out_dir/.edgeopt.lock` for a whole run: a second run on the same directory stops
    at once with a clear message instead of racing the first one's cache writes. Temp folders
    of killed runs (`.<name>.<random>.tmp`) are removed once the lock is held: nobody else
    can be writing them."""
    import fcntl

    from toolchain.errors import BadInput

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir / ".edgeopt.lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(f"another edgeopt run is using {out_dir}",
                           "wait for it to finish, or pass another --out") from None
        for stale in (*out_dir.glob("cache/*/.*.tmp"), *out_dir.glob("cache-staging/*/.*.tmp")):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            yield out_dir
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
