"""Runs tracked in MLflow and packages kept in its model registry (docs/tracking.md).

`mlflow` is an optional extra (`pip install -e '.[mlflow]'`): nothing here imports it at module
level, so `edgeopt --help` and untracked runs never load it.
"""

from toolchain.tracking.log import track_run

__all__ = ["track_run"]
