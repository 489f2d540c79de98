"""Where the bundled target profiles and model zoo live.

In a source checkout (the README's `pip install -e .`) they sit beside the package; a wheel
install puts them under <prefix>/share/edgeopt (setup.cfg [options.data_files]).
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def bundled_dir(name: str) -> Path:
    """`name` is "targets" or "models"."""
    for candidate in (_REPO_ROOT / name, Path(sys.prefix) / "share" / "edgeopt" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled '{name}' directory not found; reinstall edgeopt")
