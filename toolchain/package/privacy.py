"""`edgeopt inspect --privacy`: every package member that can carry data, where it came from, its
size, and (given data to check against) whether any member holds one of its rows (rowsearch.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from toolchain.errors import BadInput, missing_file
from toolchain.package.manifest import (
    DRIFT_REFERENCE_NAME,
    GOLDEN_NAME,
    MANIFEST_NAME,
    MODEL_CARD_NAME,
    SCHEMA_NAME,
    SIGNATURE_NAME,
    Manifest,
)
from toolchain.package.rowsearch import find_rows, flatten_zip

# What each kind of member holds, and so where its content came from.
_FIXED = {
    MANIFEST_NAME: (
        "metadata",
        "names (inputs, outputs, labels, features) and aggregate preprocessing statistics",
    ),
    MODEL_CARD_NAME: ("metadata", "names and metrics rendered from the manifest"),
    SCHEMA_NAME: ("schema", "no data: the manifest's JSON Schema"),
    SIGNATURE_NAME: ("signature", "no data: an Ed25519 signature"),
    DRIFT_REFERENCE_NAME: (
        "statistics",
        "aggregate statistics of the training data (histogram bins merged to min_bin_count)",
    ),
}
_GOLDEN_ORIGIN = {
    "synthetic": "synthetic: drawn from per-channel statistics of the training data",
    "random": "random: seeded, no data",
    "samples": "samples: REAL rows of the evaluation data",
    None: "samples (origin not recorded: manifest before schema 3)",
}


def _golden_members(m: Manifest, flat: dict[str, bytes]) -> list[dict[str, Any]]:
    inputs = {key: name for name, key in m.golden.input_keys.items()}
    outputs = {key: name for name, key in m.golden.output_keys.items()}
    rows = []
    for member in sorted(k for k in flat if k.startswith(GOLDEN_NAME + "/")):
        key = member.split("/", 1)[1].removesuffix(".npy")
        if key in inputs:
            origin = _GOLDEN_ORIGIN[m.golden.source]
            what = f"golden input '{inputs[key]}'"
        else:
            origin = "model outputs on the golden inputs"
            what = f"golden output '{outputs.get(key, key)}'"
        rows.append(
            {
                "member": member,
                "kind": "golden array",
                "what": what,
                "origin": origin,
                "bytes": len(flat[member]),
            }
        )
    return rows


def data_members(m: Manifest, flat: dict[str, bytes]) -> list[dict[str, Any]]:
    """Every member that can carry data, with its origin and (decompressed) size."""
    rows = []
    for name in sorted(k for k in flat if "/" not in k):
        if name in _FIXED:
            kind, origin = _FIXED[name]
        elif name == m.artifact:
            kind, origin = (
                "model",
                "weights learned from the training data (parameters, not rows); node and metadata names",
            )
        elif name == GOLDEN_NAME:
            kind, origin = "golden archive", "the golden arrays listed below"
        elif name == "names.json":
            kind, origin = "names", "compacted node name -> original node name (graph names, no data)"
        elif name == "mobile_report.json":
            kind, origin = "metadata", "graph analysis: node and operator names"
        else:
            kind, origin = "extra file", "supplied by the builder: origin unknown"
        rows.append({"member": name, "kind": kind, "what": name, "origin": origin, "bytes": len(flat[name])})
        if name == GOLDEN_NAME:
            rows += _golden_members(m, flat)
    return rows


def package_members(pkg: Path) -> dict[str, bytes]:
    """Every file of the package, decompressed, nested zips unpacked (rowsearch.flatten_zip)."""
    from toolchain.package.safezip import open_zip

    zf, _ = open_zip(Path(pkg))  # size and entry limits first: a bomb is refused, not unpacked
    zf.close()
    return flatten_zip(Path(pkg).read_bytes())


def load_check_data(data: Path | None, recipe: Path | None) -> tuple[str, dict[str, np.ndarray]] | None:
    """(description, name -> array) to search for, from an .npz or a recipe's dataset; None for neither."""
    if data is not None and recipe is not None:
        raise BadInput("both --data and --recipe given", "pass one of them")
    if data is not None:
        return str(data), _npz_arrays(Path(data))
    if recipe is not None:
        from toolchain.config.recipe import load_recipe
        from toolchain.data import load_dataset

        ds = load_dataset(load_recipe(recipe).data)
        return f"{recipe} (dataset '{ds.name}', train and test splits)", {
            "x_train": ds.x_train,
            "x_test": ds.x_test,
        }
    return None


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise missing_file(path, "data file", "pass an .npz of the data to check against")
    fix = "save the arrays with numpy.savez (no pickled objects)"
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise BadInput(f"{path}: not a readable .npz (a single array, not an archive)", fix)
        with loaded as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as err:
        raise BadInput(f"{path}: not a readable .npz ({str(err).strip()[:120]})", fix) from None


def privacy_report(pkg: Path, check: tuple[str, dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
    from toolchain.package.describe import read_manifest

    m, _ = read_manifest(pkg)
    flat = package_members(pkg)
    doc: dict[str, Any] = {
        "package": Path(pkg).name,
        "schema_version": m.schema_version,
        "golden_source": m.golden.source,
        "members": data_members(m, flat),
        "checked_against": None,
    }
    if check is not None:
        source, arrays = check
        result = find_rows(flat, arrays)
        doc["checked_against"] = {
            "data": source,
            "arrays": {k: list(np.shape(v)) for k, v in arrays.items()},
            **result.to_dict(),
        }
    doc["rows_found"] = None if check is None else doc["checked_against"]["rows_found"] > 0
    return doc


def render_privacy(doc: dict[str, Any]) -> str:
    head = (
        f"package {doc['package']} (manifest schema {doc['schema_version']}); golden inputs: "
        f"{doc['golden_source'] or 'not recorded'}"
    )
    lines = [head, "members that can carry data:"]
    width = max(len(r["member"]) for r in doc["members"])
    lines += [
        f"  {r['member']:<{width}}  {r['bytes']:>10,} B  {r['kind']}: {r['origin']}" for r in doc["members"]
    ]
    check = doc["checked_against"]
    if check is None:
        lines.append("not checked against data: pass --data FILE.npz or --recipe RECIPE.toml")
        return "\n".join(lines)
    lines.append(
        f"checked against {check['data']}: {check['rows_searched']} rows searched "
        f"({check['rows_skipped']} too short or constant, skipped)"
    )
    if not check["rows_found"]:
        lines.append("no row of the data found in any member")
        return "\n".join(lines)
    lines.append(f"DATA ROWS FOUND: {check['rows_found']} rows, {check['hit_count']} copies")
    lines += [
        f"  {h['array']}[{h['row']}] as {h['encoding']} in {h['member']} at byte {h['offset']}"
        for h in check["hits"][:20]
    ]
    return "\n".join(lines)
