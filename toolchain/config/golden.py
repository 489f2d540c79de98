"""`[package] golden` choices, apart from config/stages.py so that `edgeopt --help` (which declares
`--golden`) need not build every stage's pydantic model."""

from __future__ import annotations

from typing import Literal

GoldenSource = Literal["synthetic", "samples"]
DEFAULT_GOLDEN: GoldenSource = "synthetic"  # no data rows in packages unless the user opts in
