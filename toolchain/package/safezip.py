"""Read and extract zips that may come from anyone, and check ONNX external-data paths.

Every check runs on the central directory *before* a byte is written: entry names (no
absolute paths, drive letters, backslashes, '..' or empty components), no symlinks, no
duplicates (also case-insensitively, for macOS/Windows file systems), no encryption, only
stored/deflated entries, and size limits on both the archive and the declared uncompressed
total. zipfile never inflates an entry beyond its declared size, so the declared total bounds
what extraction can write. Extraction goes to a temporary sibling that is renamed into place
only when everything succeeded: a refused or corrupt archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from toolchain.package.errors import UnsafeArchive, UnsafeModel

# Edge packages are megabytes; 2 GiB also stays under protobuf's 2 GiB single-model limit.
DEFAULT_MAX_BYTES = 2 << 30
DEFAULT_MAX_ENTRIES = 1000  # a package has a handful of files; thousands means a zip bomb of names
_ALLOWED_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


def _check_name(name: str) -> None:
    if not name or "\x00" in name:
        raise UnsafeArchive(f"entry {name!r}: empty name or NUL byte", "rebuild the package")
    if "\\" in name:
        raise UnsafeArchive(f"entry {name!r}: backslash in path", "zip entries must use '/' separators")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"entry {name!r}: absolute path", "zip entries must be relative")
    if any(part in ("", ".", "..") for part in name.rstrip("/").split("/")):
        raise UnsafeArchive(
            f"entry {name!r}: '..', '.' or empty path component", "zip entries must be plain paths"
        )


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def check_archive(
    zf: zipfile.ZipFile,
    archive_bytes: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> list[zipfile.ZipInfo]:
    """Raise UnsafeArchive naming the first bad entry; return the entries when all are safe."""
    if archive_bytes > max_bytes:
        raise UnsafeArchive(
            f"archive is {archive_bytes} bytes, over the {max_bytes}-byte limit",
            "raise the size limit if the package is trusted",
        )
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise UnsafeArchive(
            f"archive has {len(infos)} entries, over the limit of {max_entries}",
            "a package holds a handful of files; rebuild it",
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        for name in {info.filename, info.orig_filename}:
            _check_name(name)
        if _is_symlink(info):
            raise UnsafeArchive(f"entry {info.filename!r}: symbolic link", "packages hold regular files only")
        if info.flag_bits & 0x1:
            raise UnsafeArchive(
                f"entry {info.filename!r}: encrypted", "packages are not encrypted; rebuild it"
            )
        if info.compress_type not in _ALLOWED_COMPRESSION:
            raise UnsafeArchive(
                f"entry {info.filename!r}: compression method {info.compress_type}",
                "use stored or deflated entries",
            )
        key = info.filename.rstrip("/").casefold()
        if key in seen:
            raise UnsafeArchive(f"entry {info.filename!r}: duplicate name", "each file may appear once")
        seen.add(key)
        total += info.file_size
        if total > max_bytes:
            raise UnsafeArchive(
                f"entries expand to over {max_bytes} bytes (at {info.filename!r})",
                "raise the size limit if the package is trusted",
            )
    return infos


def open_zip(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open `path` and run check_archive. Raises UnsafeArchive also for 'not a zip'."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UnsafeArchive(
            f"{path.name}: not a readable zip ({err})", "rebuild or re-download the package"
        ) from None
    try:
        return zf, check_archive(zf, path.stat().st_size, max_bytes)
    except BaseException:
        zf.close()
        raise


def safe_extract(archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Path]:
    """Extract `archive` into `dest` (which must not exist or be empty); return the files written."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UnsafeArchive(f"extraction folder {dest} exists and is not empty", "pass a new folder")
    zf, infos = open_zip(archive, max_bytes)
    with zf:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
        try:
            root = tmp.resolve()
            for info in infos:
                target = (tmp / info.filename).resolve()
                if root not in target.parents:  # belt and braces after _check_name
                    raise UnsafeArchive(f"entry {info.filename!r}: escapes the folder", "rebuild the package")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as fin, open(target, "xb") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
                    raise UnsafeArchive(
                        f"entry {info.filename!r}: corrupt ({err})", "re-download the package"
                    ) from None
            if dest.exists():
                dest.rmdir()  # empty, checked above
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return [dest / i.filename for i in infos if not i.is_dir()]


def looks_like_zip(path: Path) -> bool:
    """A zip, or a file that starts like one. A package with a damaged directory is still a
    package (verification fails, exit 1); a file that never was a zip is bad input (exit 2)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def read_member(zf: zipfile.ZipFile, name: str) -> bytes:
    """Read one entry of an already checked zip; corruption raises UnsafeArchive naming it."""
    try:
        return zf.read(name)
    except KeyError:
        raise UnsafeArchive(f"{name} is missing from the package", "rebuild the package") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise UnsafeArchive(f"entry {name!r}: corrupt ({err})", "re-download the package") from None


def external_data_locations(model_path: Path) -> list[str]:
    """The 'location' of every tensor stored outside the .onnx file (graphs, subgraphs, attributes)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as err:  # DecodeError and friends: the file is not a model
        raise UnsafeModel(
            f"{Path(model_path).name}: not a readable ONNX model ({err})", "pass a .onnx file"
        ) from None
    return model_external_locations(model)


def model_external_locations(model) -> list[str]:
    """As external_data_locations, for an already loaded ModelProto."""
    import onnx

    found = []
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in tensor.external_data}
            found.append(info.get("location", ""))
    return found


def _all_tensors(graph):
    """Initializers and tensor attributes of `graph` and of every subgraph (If/Loop/Scan bodies)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def check_external_data(model_path: Path) -> list[str]:
    """Refuse external-data locations that are absolute or leave the model's folder; return them."""
    model_path = Path(model_path)
    root = model_path.parent.resolve()
    locations = external_data_locations(model_path)
    for loc in locations:
        p = PurePosixPath(loc.replace("\\", "/"))
        escapes = (
            not loc
            or p.is_absolute()
            or (len(loc) > 1 and loc[1] == ":")
            or ".." in p.parts
            or root not in (root / loc).resolve().parents
        )
        if escapes:
            raise UnsafeModel(
                f"{model_path.name}: external data location {loc!r} is outside the model's folder",
                "only load models whose external data sits beside them",
            )
    return locations
