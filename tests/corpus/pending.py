"""Corpus cases that fail today only because of fixes pending on another branch (issue #13).

Each is an xfail(strict=True): when the fix lands the case passes, the strict xfail fails, and
the entry must be removed here. Keys are (case name, target); values name the issue item.
"""

from __future__ import annotations

PENDING: dict[tuple[str, str], str] = {}
