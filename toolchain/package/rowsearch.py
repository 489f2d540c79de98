"""Does a package hold a row of some data? A byte search of every row's encodings through every
file in the zip, decompressed (nested zips such as golden.npz included).

A row is one sample: an array's entry along axis 0, flattened. Each row is searched as float32
and float64 and, for integer (or bool) data, as int64 and in its own dtype, at every byte offset,
so a copy survives any alignment or container (npy, a raw tensor in an ONNX initializer, ...).
Rows that no search can tell from padding are skipped and counted: shorter than MIN_ROW_BYTES,
or one value repeated (an all-zero row matches any run of zeros).

Speed: every row gets one 8-byte key (the window with the most non-zero bytes among its first
ones); each haystack is read as uint64 at the 8 byte offsets, keys are looked up with one sorted
search, and only key hits are compared in full.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

MIN_ROW_BYTES = 16  # shorter byte strings occur by chance in any few-MB model
KEY_BYTES = 8
KEY_WINDOWS = 64  # candidate key offsets tried per row (element-aligned, from the start)
CHUNK_BYTES = 64 << 20  # encoded rows held at once: bounds memory on large image sets
MAX_HITS = 100  # hits listed (the count keeps going)
MAX_NESTED_BYTES = 1 << 30  # a nested zip expanding past this is not unpacked (a bomb, not a package)


@dataclass(frozen=True)
class Hit:
    member: str  # "golden.npz/input_0.npy" for a file inside a nested zip
    offset: int
    array: str
    row: int
    encoding: str

    def to_dict(self) -> dict:
        return {
            "member": self.member,
            "offset": self.offset,
            "array": self.array,
            "row": self.row,
            "encoding": self.encoding,
        }


@dataclass
class SearchResult:
    rows_searched: int = 0
    rows_skipped: int = 0  # too short or constant: see the module doc
    rows_found: int = 0
    hits: list[Hit] = field(default_factory=list)
    hit_count: int = 0

    @property
    def found(self) -> bool:
        return self.rows_found > 0

    def to_dict(self) -> dict:
        return {
            "rows_searched": self.rows_searched,
            "rows_skipped": self.rows_skipped,
            "rows_found": self.rows_found,
            "hit_count": self.hit_count,
            "hits": [h.to_dict() for h in self.hits],
        }


def flatten_zip(raw: bytes, prefix: str = "") -> dict[str, bytes]:
    """name -> decompressed bytes of every file in the zip `raw`, and of the files inside any
    member that is itself a zip (as "member/inner"); the nested zip's own bytes are kept too."""
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if sum(i.file_size for i in infos) > MAX_NESTED_BYTES:
            return out
        for info in infos:
            data = zf.read(info)
            name = prefix + info.filename
            out[name] = data
            if data[:4] == b"PK\x03\x04":
                try:
                    out.update(flatten_zip(data, name + "/"))
                except zipfile.BadZipFile:
                    pass  # starts like a zip but is not one: searched as plain bytes above
    return out


def _encodings(arr: np.ndarray) -> list[str]:
    names = ["float32", "float64"]
    if arr.dtype.kind in "iub":
        names += ["int64"] + ([arr.dtype.name] if arr.dtype.name not in ("int64", "bool") else [])
    return names


def _keys(rows: np.ndarray, itemsize: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 key, its byte offset in the row) for each row of `rows` (uint8 [n, row_bytes])."""
    offsets = np.arange(0, rows.shape[1] - KEY_BYTES + 1, itemsize)[:KEY_WINDOWS]
    nonzero = np.stack([np.count_nonzero(rows[:, o : o + KEY_BYTES], axis=1) for o in offsets], axis=1)
    best = offsets[np.argmax(nonzero, axis=1)]
    windows = rows[np.arange(len(rows))[:, None], best[:, None] + np.arange(KEY_BYTES)]
    return np.ascontiguousarray(windows).view("<u8").ravel(), best


def _candidates(hay: bytes, sorted_keys: np.ndarray) -> Iterator[tuple[int, int]]:
    """(position in hay, key) wherever an 8-byte window of hay equals one of the keys."""
    for o in range(KEY_BYTES):
        count = (len(hay) - o) // KEY_BYTES
        if count <= 0:
            continue
        view = np.frombuffer(hay, dtype="<u8", count=count, offset=o)
        idx = np.minimum(np.searchsorted(sorted_keys, view), len(sorted_keys) - 1)
        for i in np.flatnonzero(sorted_keys[idx] == view):
            yield o + KEY_BYTES * int(i), int(view[i])


def _searchable(flat: np.ndarray) -> np.ndarray:
    """Rows worth searching: long enough, and not one repeated value."""
    if flat.shape[1] == 0:
        return np.zeros(len(flat), bool)
    return (flat != flat[:, :1]).any(axis=1)


def _search_chunk(
    members: Mapping[str, bytes],
    name: str,
    rows: np.ndarray,
    index: np.ndarray,
    encoding: str,
    result: SearchResult,
    found: set[tuple[str, int]],
) -> None:
    encoded = np.ascontiguousarray(rows.astype(encoding, copy=False))
    raw = encoded.view(np.uint8).reshape(len(encoded), -1)
    if raw.shape[1] < MIN_ROW_BYTES:  # e.g. 4 uint8 values: found by chance anywhere
        return
    keys, key_offsets = _keys(raw, encoded.dtype.itemsize)
    by_key: dict[int, list[int]] = {}
    for i, k in enumerate(keys.tolist()):
        by_key.setdefault(k, []).append(i)
    sorted_keys = np.unique(keys)
    width = raw.shape[1]
    for member, hay in members.items():
        for pos, key in _candidates(hay, sorted_keys):
            for i in by_key[key]:
                start = pos - int(key_offsets[i])
                if start < 0 or hay[start : start + width] != raw[i].tobytes():
                    continue
                result.hit_count += 1
                found.add((name, int(index[i])))
                if len(result.hits) < MAX_HITS:
                    result.hits.append(Hit(member, start, name, int(index[i]), encoding))


def find_rows(members: Mapping[str, bytes], arrays: Mapping[str, np.ndarray]) -> SearchResult:
    """Search every row of every array (rows along axis 0) through every member's bytes."""
    result = SearchResult()
    found: set[tuple[str, int]] = set()
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.ndim == 0 or arr.dtype.kind not in "iufb" or len(arr) == 0:
            continue
        flat = arr.reshape(len(arr), -1)
        # float32 is the narrowest encoding searched: a row shorter than the minimum there is skipped.
        ok = _searchable(flat) & (flat.shape[1] * 4 >= MIN_ROW_BYTES)
        index = np.flatnonzero(ok)
        result.rows_searched += len(index)
        result.rows_skipped += len(flat) - len(index)
        for encoding in _encodings(arr):
            step = max(1, CHUNK_BYTES // max(1, flat.shape[1] * np.dtype(encoding).itemsize))
            for start in range(0, len(index), step):
                part = index[start : start + step]
                _search_chunk(members, name, flat[part], part, encoding, result, found)
    result.rows_found = len(found)
    result.hits.sort(key=lambda h: (h.array, h.row, h.member, h.offset, h.encoding))
    return result
