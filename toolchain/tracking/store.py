"""Where runs and registered packages live: resolving the URI and opening an MLflow client.

The embedded default is a SQLite store beside the run directories (`<runs dir>/mlruns.db`,
artifacts in `<runs dir>/mlartifacts`), so the default `edgeopt run` (runs/<name>) and the
`edgeopt registry` commands (default `runs/mlruns.db`) meet in one store without a server.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from toolchain.errors import BadInput

DB_NAME = "mlruns.db"
ARTIFACTS_DIR = "mlartifacts"
EXPERIMENT = "edgeopt"
DEFAULT_RUNS_DIR = Path("runs")
# A server that does not answer its health check within this is treated as unreachable:
# a run must not wait MLflow's default minutes of retries before finishing.
HEALTH_TIMEOUT_S = 3.0
_SCHEMES = ("sqlite://", "http://", "https://", "file:", "postgresql", "mysql", "databricks")


class TrackingUnavailable(BadInput):
    """The tracking store cannot be used (server down, mlflow missing): exit 2 under --track-required."""


def resolve_uri(uri: str | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    """An explicit URI wins, then MLFLOW_TRACKING_URI, then the embedded store in `runs_dir`."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{(Path(runs_dir) / DB_NAME).resolve().as_posix()}"
    if not uri.startswith(_SCHEMES):
        raise TrackingUnavailable(  # a BadInput: exit 2 from --track; from the environment, a skip
            f"tracking URI {uri!r} has no known scheme",
            "give e.g. http://127.0.0.1:5000 or sqlite:///runs/mlruns.db; write `--track=URI` "
            "(or put --track after the positional arguments) so it does not swallow one",
        )
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """Where an embedded store keeps artifacts; None lets a server decide (it may proxy them)."""
    db = sqlite_path(uri)
    return (db.parent / ARTIFACTS_DIR).resolve().as_uri() if db is not None else None


def unreachable(uri: str) -> str | None:
    """Why a server URI cannot be used right now, or None. Local stores are always reachable."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S) as reply:
            if reply.status == 200:
                return None
            return f"{uri} answered HTTP {reply.status}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{uri} is unreachable ({getattr(err, 'reason', err)})"


def _quiet_mlflow() -> None:
    # Set before mlflow reads them: no telemetry, no progress bars or run URLs printed, and a bounded
    # retry budget so a server that dies mid-run costs seconds, not minutes.
    for key, value in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
                       ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
                       ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")):
        os.environ.setdefault(key, value)
    for name in ("mlflow", "alembic"):  # schema creation logs INFO lines on stderr
        logging.getLogger(name).setLevel(logging.WARNING)


def load_mlflow() -> Any:
    """The mlflow module, or TrackingUnavailable naming the extra to install."""
    _quiet_mlflow()
    try:
        import mlflow
    except ImportError as err:
        raise TrackingUnavailable(
            f"mlflow is not installed ({err})", "pip install -e '.[mlflow]' (or pip install 'mlflow>=3')"
        ) from None
    except Exception as err:  # noqa: BLE001 - a broken install is the environment's, like a missing one
        raise TrackingUnavailable(f"mlflow failed to import ({type(err).__name__}: {err})",
                                  "reinstall it: pip install -e '.[mlflow]'") from None
    return mlflow


def open_client(uri: str) -> Any:
    """An MlflowClient on `uri` for tracking and registry alike."""
    mlflow = load_mlflow()
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: Any, uri: str, name: str = EXPERIMENT) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(uri))


def mlflow_errors() -> tuple[type[BaseException], ...]:
    """What a failing store raises: MLflow's own errors, HTTP and file-system ones."""
    from mlflow.exceptions import MlflowException

    errors: list[type[BaseException]] = [MlflowException, OSError]
    try:
        import requests

        errors.append(requests.RequestException)
    except ImportError:  # pragma: no cover - mlflow depends on requests
        pass
    return tuple(errors)
