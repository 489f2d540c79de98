"""Typed errors. Each carries the process exit code the CLI maps it to (one place: toolchain/cli/main.py).

Exit codes (documented in README.md):
  0  every budget met
  1  a budget failed (the artifacts and report are still written), or the check that a
     `verify` / `verify-arm` command performs failed
  2  bad input or usage: missing/corrupt file, unknown key, wrong type, unknown target or model
  2  also an environment fault: disk full, a read-only or unwritable path (the line names it)
  3  a pipeline-internal verification failed (the exported model disagrees with PyTorch, or a
     package being signed was already tampered with), or an internal error: one line plus the
     path of a log holding the traceback
"""

from __future__ import annotations

import os

EXIT_OK = 0
EXIT_BUDGET_FAILED = 1
EXIT_VERIFICATION_FAILED_CMD = 1  # `edgeopt verify` / `verify-arm`: the check itself failed
EXIT_BAD_INPUT = 2
EXIT_VERIFICATION_FAILED = 3
EXIT_INTERNAL_ERROR = 3  # a bug: never 1, so CI can tell a crash from a failed budget


class EdgeoptError(Exception):
    """Base class: a problem plus the fix, rendered as one line."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}; {fix}")


class BadInput(EdgeoptError):
    """The user gave us something we cannot use (file, key, value, name)."""


class ConfigError(BadInput):
    """A recipe, target profile or budgets file is malformed or has unknown keys."""


class ModelLoadError(BadInput):
    """A model file is missing, corrupt, or not loadable safely."""


class VerificationError(EdgeoptError):
    """An artifact failed a check against its reference."""

    exit_code = EXIT_VERIFICATION_FAILED


class ShapeMismatch(VerificationError):
    """Exported outputs have a different shape than the reference outputs."""


class ToleranceExceeded(VerificationError):
    """Exported outputs differ from the reference by more than the tolerance."""

    def __init__(self, problem: str, fix: str | None = None, *, max_abs_diff: float = float("nan")):
        super().__init__(problem, fix)
        self.max_abs_diff = max_abs_diff


def missing_file(path: str | os.PathLike, what: str, fix: str, error: type[BadInput] = BadInput) -> BadInput:
    """The error for a `what` (a file) absent at `path`. A directory there is named as such:
    "not found" would send the user looking for a file that exists."""
    if os.path.isdir(path):
        return error(f"{what} is a directory: {path}", f"give the {what} itself, not a folder")
    return error(f"{what} not found: {path}", fix)
