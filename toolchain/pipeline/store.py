"""Where stage-cache entries live: a directory, or any fsspec URL (s3://, gs://, sftp://...).

Both stores hold immutable entries under `<stage>/<key>` and answer two questions for
StageCache: `find(rel)`, a local directory holding the complete entry (or None), and
`publish(rel)`, a context yielding an empty local directory to build the entry in; when it
exits the entry is published and `find(rel)` returns it.

- LocalStore: a directory on this machine or one every node mounts (NFS...). Entries are built
  in a temp sibling and renamed into place; the first rename wins (fsio.publish_dir).
- FsspecStore: an object store or remote filesystem, where rename is neither atomic nor cheap.
  A writer builds the entry locally, uploads every file under its own prefix
  `<stage>/<key>/<writer>/`, then creates the marker `<stage>/<key>/COMPLETE` holding its writer
  id, exclusively where the backend has an exclusive create (fsspec's 'x' mode; tested on local
  files and SFTP). A reader trusts only the payload the marker names, and every
  payload is whole before its marker is written, so a killed writer leaves at most an orphan
  prefix no reader looks at. Two writers of one key: the loser drops its prefix and uses the
  winner's entry. Entries are read through a local copy (`staging`, under --out): stages load
  ONNX and torch files from local paths, and a copy is downloaded once per node.

`file://` URLs and plain paths are LocalStore and need nothing extra; other schemes import
fsspec (extra `.[fsspec]`) only when given. fsspec's own configuration (the FSSPEC_<PROTOCOL>
environment variable holding JSON options, or ~/.config/fsspec/) carries credentials and
options such as an SSH key.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from toolchain.errors import BadInput
from toolchain.fsio import publish_dir

RECORD = "record.json"  # written last into every entry: a local entry with it is whole
MARKER = "COMPLETE"  # an fsspec entry's completion marker: the id of the writer whose payload is whole
_WRITER = re.compile(r"[0-9a-f]{32}")
_FIX = "pass a writable --cache: a directory every node mounts, or a URL such as s3://bucket/cache"
# fsspec's mode for "create exclusively, then write"; paramiko reads 'x' without 'w' as no write access
_EXCLUSIVE_MODE = {"sftp": "wxb", "ssh": "wxb"}
# Object stores have no directories; their makedirs creates a missing *bucket*, which a cache
# must never do on its own (cost, region and access are the owner's choice): a missing bucket
# is an unwritable cache.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"}
MARKER_WAIT_SECONDS = 10.0  # a marker being written by a racing writer: how long its readers wait


STAGING = "cache-staging"  # under --out: local copies of a URL cache's entries


def check_cache(location: str | os.PathLike, out_dir: Path) -> None:
    """Refuse a --cache that cannot be written (or reached) before any work, naming it."""
    open_store(location, Path(out_dir) / STAGING).check_writable()


def is_url(location: str | os.PathLike) -> bool:
    text = str(location)
    return "://" in text or "::" in text  # "::": fsspec's chained URLs (simplecache::s3://...)


class LocalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def find(self, rel: str) -> Path | None:
        entry = self.root / rel
        return entry if (entry / RECORD).is_file() else None

    @contextlib.contextmanager
    def publish(self, rel: str) -> Iterator[Path]:
        with publish_dir(self.root / rel, lambda d: (d / RECORD).is_file()) as tmp:
            yield tmp

    def check_writable(self, what: str = "cache directory") -> None:
        """Refuse a directory that cannot be written, without creating anything: the nearest
        existing folder on the way must be a writable directory."""
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problem = "is not a directory" if not existing.is_dir() else "is not writable"
            raise BadInput(f"{what} {self.root} is not writable ({existing} {problem})", _FIX)


class FsspecStore:
    def __init__(self, fs: Any, root: str, staging: LocalStore, url: str | None = None):
        self.fs, self.root, self.staging = fs, root.rstrip("/"), staging
        self.protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.url = url or f"{self.protocol}://{root}"

    def __str__(self) -> str:
        return self.url

    def _dir(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def find(self, rel: str) -> Path | None:
        local = self.staging.find(rel)
        if local is not None:
            return local
        winner = self._winner(rel)
        if winner is None:
            return None
        with self.staging.publish(rel) as tmp:
            self._download(f"{self._dir(rel)}/{winner}", tmp)
        return self.staging.find(rel)

    @contextlib.contextmanager
    def publish(self, rel: str) -> Iterator[Path]:
        with self.staging.publish(rel) as tmp:
            yield tmp
            writer = uuid.uuid4().hex
            try:
                self._upload(tmp, f"{self._dir(rel)}/{writer}")
            except OSError:
                # a writer that won meanwhile deletes prefixes it takes for orphans, this one's too
                if self._winner(rel) is None:
                    raise
            winner = self._mark(rel, writer)
            if winner == writer:
                self._drop_orphans(rel, writer)
            else:  # another writer of this key finished first: use theirs, drop ours
                with contextlib.suppress(OSError):
                    self.fs.rm(f"{self._dir(rel)}/{writer}", recursive=True)
                shutil.rmtree(tmp)
                tmp.mkdir()
                self._download(f"{self._dir(rel)}/{winner}", tmp)

    def _drop_orphans(self, rel: str, winner: str) -> None:
        """Delete the other writers' prefixes of a key this writer just won: payloads of writers
        killed before their marker (nobody reads them), or of a racing writer, which lost and
        then deletes its own prefix anyway."""
        self.fs.invalidate_cache(self._dir(rel))  # s3fs lists from a cache of earlier listings
        for path in self.fs.ls(self._dir(rel), detail=False):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name not in (winner, MARKER) and _WRITER.fullmatch(name):
                with contextlib.suppress(OSError):
                    self.fs.rm(path, recursive=True)

    def _winner(self, rel: str) -> str | None:
        try:
            text = self.fs.cat_file(f"{self._dir(rel)}/{MARKER}").decode("ascii", "replace").strip()
        except FileNotFoundError:
            return None
        return text if _WRITER.fullmatch(text) else None  # a marker still being written: not yet

    def _mark(self, rel: str, writer: str) -> str:
        """Create the marker naming `writer` unless one exists; return the writer it names."""
        marker = f"{self._dir(rel)}/{MARKER}"
        if self._winner(rel) is None and self._create_exclusive(marker, writer.encode()):
            return self._winner(rel) or writer  # a backend without exclusive create: the marker's last writer
        deadline = time.monotonic() + MARKER_WAIT_SECONDS
        while (winner := self._winner(rel)) is None:
            if time.monotonic() > deadline:
                raise OSError(f"{marker} exists but names no writer")
            time.sleep(0.05)
        return winner

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        """Write `path` only if it does not exist: True if this call created it. Backends
        without an exclusive create fall back to check-then-write (the last marker wins; both
        name whole payloads)."""
        try:
            with self.fs.open(path, _EXCLUSIVE_MODE.get(self.protocol, "xb")) as f:
                f.write(data)
            return True
        except (ValueError, NotImplementedError):  # no 'x' mode here
            self.fs.pipe_file(path, data)
            return True
        except OSError:  # FileExistsError, or SFTP's generic "Failure" for an existing file
            if not self.fs.exists(path):
                raise
            return False

    def _makedirs(self, path: str) -> None:
        if self.protocol in _OBJECT_STORES:
            return
        try:
            self.fs.makedirs(path, exist_ok=True)
        except OSError:
            # Two writers of one key create its parent folders at once: the slower mkdir fails
            # (SFTP says only "Failure"). Again, the folders that now exist are skipped.
            self.fs.makedirs(path, exist_ok=True)

    def _upload(self, local: Path, prefix: str) -> None:
        files = sorted(p for p in local.rglob("*") if p.is_file())
        for parent in sorted({p.parent.relative_to(local).as_posix() for p in files}):
            self._makedirs(prefix if parent == "." else f"{prefix}/{parent}")
        for path in files:
            self.fs.put_file(str(path), f"{prefix}/{path.relative_to(local).as_posix()}")

    def _download(self, prefix: str, dest: Path) -> None:
        base = self.fs._strip_protocol(prefix).rstrip("/") + "/"
        for remote in self.fs.find(prefix):
            if not remote.startswith(base):
                raise OSError(f"{remote} listed under {base}")
            target = dest / remote[len(base):]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(remote, str(target))
        if not (dest / RECORD).is_file():
            raise OSError(f"{prefix} is marked complete but has no {RECORD}")

    def check_writable(self) -> None:
        """Write and delete a probe file under the root: refused before any work, naming the URL."""
        self.staging.check_writable("local copy folder of the cache")
        probe = f"{self.root}/.edgeopt-probe-{uuid.uuid4().hex}"
        try:
            self._makedirs(self.root)
            self.fs.pipe_file(probe, b"probe")
            self.fs.rm(probe)
        except Exception as err:  # noqa: BLE001 - each backend raises its own kinds
            raise BadInput(f"cache {self.url} is not writable ({type(err).__name__}: {err})", _FIX) from None


def open_store(location: str | os.PathLike, staging: Path | None) -> LocalStore | FsspecStore:
    """The store for a cache location: a path or file:// URL (no extra), or any fsspec URL."""
    text = str(location)
    if not is_url(text):
        return LocalStore(Path(text))
    parsed = urlparse(text)
    if parsed.scheme == "file" and "::" not in text:
        if parsed.netloc not in ("", "localhost"):
            raise BadInput(f"cache {text} names host {parsed.netloc!r}", "write file:///absolute/path")
        return LocalStore(Path(unquote(parsed.path)))
    if staging is None:
        raise ValueError(f"a cache at {text} needs a local staging folder")
    fs, root = _fsspec(text)
    return FsspecStore(fs, root, LocalStore(staging), text)


def _fsspec(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise BadInput(f"cache {url} needs fsspec", "pip install 'edgeopt[fsspec]', or use a directory every node mounts") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as err:  # fsspec knows the scheme; the package behind it is missing
        raise BadInput(f"cache {url}: {err}", "install that package (sftp:// comes with 'edgeopt[fsspec]')") from None
    except ValueError as err:
        raise BadInput(f"cache {url}: {err}", "use a directory, file:// or a scheme fsspec knows (s3, gcs, sftp...)") from None
    except Exception as err:  # noqa: BLE001 - e.g. SFTP connects here: refused, unknown host, bad key
        raise BadInput(f"cache {url} cannot be reached ({type(err).__name__}: {err})", _FIX) from None
