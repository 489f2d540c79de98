"""`edgeopt registry ...`: packages in MLflow's model registry (docs/tracking.md).

Thin wrappers over toolchain.tracking.registry. Exit codes: 0 done, 1 a package failed
verification or its gate, or an alias has nothing to roll back to (the alias is unchanged),
2 bad input (unknown model, version or alias; no registry; server unreachable).
"""

from __future__ import annotations

import click

from toolchain.cli.options import DIR, PATH, emit, json_mode, json_option

_registry_option = click.option(
    "--registry", "uri", default=None, metavar="URI",
    help="MLflow tracking/registry URI (default: MLFLOW_TRACKING_URI, else sqlite:///runs/mlruns.db).",
)
_public_key_option = click.option(
    "--public-key", type=PATH, default=None, help="Ed25519 public key: the package's signature must match it.",
)


def _uri(uri: str | None) -> str:
    from toolchain.tracking.store import resolve_uri

    return resolve_uri(uri)


def _say(doc, as_json: bool, text: str) -> None:
    emit(doc, as_json, lambda _doc: text)


@click.group()
def registry() -> None:
    """Register, promote, roll back and pull packages in MLflow's model registry."""


@registry.command("register")
@click.argument("package", type=PATH)
@click.option("--name", required=True, help="Registered model name (letters, digits, '.', '_', '-').")
@click.option("--allow-failed", is_flag=True, help="Register a package whose gate failed (tagged gate=fail).")
@_public_key_option
@_registry_option
@json_option
def register_cmd(package, name, allow_failed, public_key, uri, as_json):
    """Verify PACKAGE (hashes, signature with --public-key, smoke run), then add it as a new version."""
    from toolchain.tracking.registry import register

    with json_mode(as_json):
        doc = register(package, name, _uri(uri), allow_failed=allow_failed, public_key=public_key)
    _say(doc, as_json, f"registered {package} as {doc['name']} version {doc['version']} (gate {doc['gate']})")


@registry.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.option("--alias", required=True, help="Alias to point at VERSION, e.g. production.")
@_registry_option
@json_option
def promote_cmd(name, version, alias, uri, as_json):
    """Point ALIAS of NAME at VERSION; the alias's history is kept for rollback."""
    from toolchain.tracking.registry import promote

    with json_mode(as_json):
        doc = promote(name, version, alias, _uri(uri))
    was = f" (was version {doc['previous']})" if doc["previous"] else ""
    _say(doc, as_json, f"{name}@{alias} -> version {version}{was}")


@registry.command("rollback")
@click.argument("name")
@click.option("--alias", required=True, help="Alias to move back, e.g. production.")
@_registry_option
@json_option
def rollback_cmd(name, alias, uri, as_json):
    """Move ALIAS of NAME back to the version that held it before."""
    from toolchain.tracking.registry import rollback

    with json_mode(as_json):
        doc = rollback(name, alias, _uri(uri))
    _say(doc, as_json, f"{name}@{alias} -> version {doc['version']} (rolled back from version {doc['rolled_back']})")


@registry.command("pull")
@click.argument("ref", metavar="NAME@ALIAS")
@click.option("--out", "out_dir", type=DIR,
              required=True, help="Directory to put the verified package in.")
@_public_key_option
@_registry_option
@json_option
def pull_cmd(ref, out_dir, public_key, uri, as_json):
    """Download the package NAME@ALIAS names, verify it, and write it to --out."""
    from toolchain.tracking.registry import pull

    with json_mode(as_json):
        doc = pull(ref, out_dir, _uri(uri), public_key=public_key)
    _say(doc, as_json, f"{ref} is version {doc['version']}: {doc['path']} (sha256 {doc['sha256'][:12]}.., verified)")


@registry.command("list")
@click.argument("name", required=False)
@_registry_option
@json_option
def list_cmd(name, uri, as_json):
    """The versions of NAME (every registered model without NAME), with aliases and gate."""
    from toolchain.tracking.registry import list_versions

    with json_mode(as_json):
        rows = list_versions(name, _uri(uri))
    lines = [f"{r['name']} v{r['version']}  {r['target'] or '-'}  gate {r['gate'] or '-'}  "
             f"{','.join(r['aliases']) or '-'}  {(r['sha256'] or '')[:12]}" for r in rows]
    _say({"versions": rows}, as_json, "\n".join(lines) or "no versions")


COMMANDS = [registry]
