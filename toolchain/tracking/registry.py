"""Packages in MLflow's model registry: register, promote, roll back, pull and list.

A registered version is the package zip logged as an artifact of a small "register" run, with
its sha256 and gate verdict as version tags. An alias (e.g. production) names the version in
use; promote keeps the alias's history as a registered-model tag (a stack of versions, newest
last) and stamps each version it touches, so rollback can move the alias back to the version
that held it before without a store of our own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from toolchain.errors import EXIT_VERIFICATION_FAILED_CMD, BadInput, EdgeoptError
from toolchain.tracking import store

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# MLflow reserves "latest" and v<number> (they name versions); the rest is ours to check early.
_ALIAS = re.compile(r"^(?!latest$)(?![vV]\d+$)[A-Za-z0-9_-]{1,100}$")
_HISTORY_KEEP = 200  # versions kept per alias history: a tag value is capped at 5000 characters


class RegistryCheckFailed(EdgeoptError):
    """A package failed verification or its gate, or an alias has no earlier holder: exit 1."""

    exit_code = EXIT_VERIFICATION_FAILED_CMD


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise BadInput(f"model name {name!r} is not usable", "use letters, digits, '.', '_' or '-' (at most 128)")
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias or ""):
        raise BadInput(f"alias {alias!r} is not usable",
                       "use letters, digits, '_' or '-', not 'latest' nor v<number> (MLflow keeps those for versions)")
    return alias


def _history_tag(alias: str) -> str:
    return f"edgeopt.alias_history.{alias}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def _store_errors(uri: str, what: str):
    """MLflow's 'no such model/version/alias' is the user's bad input; any other store failure
    is the environment's: both exit 2 with one line."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as err:
        text = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise BadInput(f"{what}: {text}", "`edgeopt registry list` shows the registered models and versions") from None
        raise store.TrackingUnavailable(f"registry {uri}: {text}", "check --registry / MLFLOW_TRACKING_URI") from None


def existing_client(uri: str):
    """A client on a store that is already there: reading commands must not create one."""
    db = store.sqlite_path(uri)
    if db is not None and not db.is_file():
        raise BadInput(f"no registry at {db}",
                       "register a package first (`edgeopt registry register`), or pass --registry URI / set MLFLOW_TRACKING_URI")
    why = store.unreachable(uri)
    if why is not None:
        raise store.TrackingUnavailable(why, "start the server or fix --registry / MLFLOW_TRACKING_URI")
    return store.open_client(uri)


def _verified(pkg: Path, public_key: Path | None):
    """The package's manifest once every check passed; exit 1 naming the first failed check."""
    from toolchain.package.describe import read_manifest
    from toolchain.package.verify import verify_package

    report = verify_package(pkg, public_key)
    if not report.ok:
        first = report.failures[0]
        raise RegistryCheckFailed(f"{pkg}: check '{first.name}' failed: {first.reason}",
                                  "rebuild the package, or get it again from its publisher")
    return read_manifest(pkg)[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register(package: Path, name: str, uri: str, allow_failed: bool = False,
             public_key: Path | None = None) -> dict[str, Any]:
    """Verify `package`, then add it as a new version of registered model `name`."""
    package = Path(package)
    check_name(name)
    manifest = _verified(package, public_key)
    failed = sorted(b for b, v in manifest.budgets.items() if isinstance(v, dict) and not v.get("pass", True))
    if failed and not allow_failed:
        raise RegistryCheckFailed(f"{package} failed its gate (budgets: {', '.join(failed)})",
                                  "meet the budgets and rebuild, or pass --allow-failed to register it anyway")
    why = store.unreachable(uri)
    if why is not None:
        raise store.TrackingUnavailable(why, "start the server or fix --registry / MLFLOW_TRACKING_URI")
    client = store.open_client(uri)
    sha = _sha256(package)
    tags = {"edgeopt.sha256": sha, "edgeopt.package": package.name, "edgeopt.target": manifest.target,
            "edgeopt.gate": "fail" if failed else "pass", "edgeopt.recipe_hash": manifest.recipe_hash}
    with _store_errors(uri, f"register {name}"):
        run = client.create_run(store.experiment_id(client, uri), run_name=f"register {name}",
                                tags={"edgeopt.kind": "register", **tags})
        client.log_artifact(run.info.run_id, str(package), "package")
        client.set_terminated(run.info.run_id)
        if not client.search_registered_models(filter_string=f"name = '{name}'"):
            client.create_registered_model(name, tags={"edgeopt.kind": "package"})
        version = client.create_model_version(name, source=f"{run.info.artifact_uri}/package",
                                              run_id=run.info.run_id, tags=tags)
    return {"name": name, "version": int(version.version), "sha256": sha, "gate": tags["edgeopt.gate"],
            "target": manifest.target, "run_id": run.info.run_id}


def _history(client, name: str, alias: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(_history_tag(alias), "[]")
    try:
        return [str(v) for v in json.loads(raw)]
    except ValueError:
        return []


def _holder(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def promote(name: str, version: int, alias: str, uri: str) -> dict[str, Any]:
    """Point `alias` at `version`, pushing it onto the alias history."""
    check_name(name)
    check_alias(alias)
    client = existing_client(uri)
    with _store_errors(uri, f"{name} version {version}"):
        client.get_model_version(name, str(version))  # an unknown version fails before anything moves
        before = _holder(client, name, alias)
        history = _history(client, name, alias)
        if before is not None and (not history or history[-1] != before):
            history.append(before)  # the alias was moved outside edgeopt: keep its holder anyway
        if before != str(version):
            history.append(str(version))
        client.set_registered_model_tag(name, _history_tag(alias), json.dumps(history[-_HISTORY_KEEP:]))
        client.set_registered_model_alias(name, alias, str(version))
        client.set_model_version_tag(name, str(version), f"edgeopt.promoted.{alias}", _now())
    return {"name": name, "alias": alias, "version": int(version), "previous": int(before) if before else None}


def rollback(name: str, alias: str, uri: str) -> dict[str, Any]:
    """Move `alias` back to the version that held it before; exit 1, alias unchanged, when none did."""
    check_name(name)
    check_alias(alias)
    client = existing_client(uri)
    with _store_errors(uri, f"{name}@{alias}"):
        current = _holder(client, name, alias)
        if current is None:
            raise RegistryCheckFailed(f"{name} has no alias '{alias}'", f"promote a version first: edgeopt registry promote {name} VERSION --alias {alias}")
        history = _history(client, name, alias)
        while history and history[-1] == current:
            history.pop()
        if not history:
            raise RegistryCheckFailed(f"{name}@{alias} (version {current}) has no earlier version to roll back to",
                                      "the alias is unchanged; promote the version you want instead")
        previous = history[-1]
        client.set_registered_model_tag(name, _history_tag(alias), json.dumps(history))
        client.set_registered_model_alias(name, alias, previous)
        client.set_model_version_tag(name, current, f"edgeopt.rolled_back.{alias}", _now())
    return {"name": name, "alias": alias, "version": int(previous), "rolled_back": int(current)}


def parse_ref(ref: str) -> tuple[str, str]:
    name, sep, alias = (ref or "").partition("@")
    if not sep:
        raise BadInput(f"{ref!r} is not NAME@ALIAS", "write e.g. digits-cnn@production")
    return check_name(name), check_alias(alias)


def pull(ref: str, out_dir: Path, uri: str, public_key: Path | None = None) -> dict[str, Any]:
    """Download the package `ref` (NAME@ALIAS) names into `out_dir`, verified before it lands there."""
    from toolchain.tracking.store import load_mlflow

    name, alias = parse_ref(ref)
    mlflow = load_mlflow()  # without the extra: one line naming it, exit 2
    client = existing_client(uri)
    with _store_errors(uri, ref):
        version = client.get_model_version_by_alias(name, alias)
    want, filename = version.tags.get("edgeopt.sha256"), version.tags.get("edgeopt.package", f"{name}.zip")
    with tempfile.TemporaryDirectory(prefix="edgeopt-pull-") as tmp, _store_errors(uri, ref):
        got = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp, tracking_uri=uri))
        zips = sorted(got.glob("*.zip")) if got.is_dir() else [got]
        if len(zips) != 1:
            raise RegistryCheckFailed(f"{ref} (version {version.version}) holds {len(zips)} zip files, not one package",
                                      "register the package again")
        sha = _sha256(zips[0])
        if want and sha != want:
            raise RegistryCheckFailed(f"{ref} (version {version.version}): sha256 {sha[:12]}.. does not match the registered "
                                      f"{want[:12]}..", "the stored artifact was changed; register the package again")
        _verified(zips[0], public_key)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        dest = Path(out_dir) / filename
        shutil.copyfile(zips[0], dest.with_name(dest.name + ".part"))
        dest.with_name(dest.name + ".part").replace(dest)  # never a half-copied package under its name
    return {"name": name, "alias": alias, "version": int(version.version), "path": str(dest), "sha256": sha}


def list_versions(name: str | None, uri: str) -> list[dict[str, Any]]:
    """Every version of `name` (every registered model when None), newest first per model."""
    client = existing_client(uri)
    with _store_errors(uri, name or "registry"):
        names = [check_name(name)] if name else sorted(m.name for m in client.search_registered_models())
        rows = []
        for model in names:
            # an unknown name is bad input, not an empty list; search results carry no aliases
            aliases = client.get_registered_model(model).aliases or {}
            for v in client.search_model_versions(filter_string=f"name = '{model}'"):
                held = sorted(a for a, held_by in aliases.items() if str(held_by) == str(v.version))
                rows.append({"name": model, "version": int(v.version), "aliases": held,
                             "target": v.tags.get("edgeopt.target"), "gate": v.tags.get("edgeopt.gate"),
                             "sha256": v.tags.get("edgeopt.sha256"), "package": v.tags.get("edgeopt.package"),
                             "created": v.creation_timestamp})
    return sorted(rows, key=lambda r: (r["name"], -r["version"]))
