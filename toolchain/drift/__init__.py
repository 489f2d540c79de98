"""Input and output drift: the reference a package carries (reference.py), and how live data
is compared with it (compare.py). docs/drift.md."""

from toolchain.config.drift import DriftThresholds
from toolchain.drift.compare import compare, resolve_thresholds
from toolchain.drift.reference import DRIFT_REFERENCE_NAME, build_reference, reference_for_session

__all__ = [
           "DRIFT_REFERENCE_NAME",
           "DriftThresholds",
           "build_reference",
           "compare",
           "reference_for_session",
           "resolve_thresholds",
]
