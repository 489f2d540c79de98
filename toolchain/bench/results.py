"""Publishing a benchmark script's results: <stem>.json for machines, <stem>.md for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolchain.fsio import write_json_atomic, write_text_atomic


def publish(results_dir: Path, stem: str, doc: dict[str, Any], markdown: str) -> None:
    """Write both files atomically (a crashed run leaves the previous results whole) and echo the Markdown."""
    write_json_atomic(Path(results_dir) / f"{stem}.json", doc)
    write_text_atomic(Path(results_dir) / f"{stem}.md", markdown)
    print(markdown)


def machine_line(host: dict[str, Any], versions: dict[str, str], only: tuple[str, ...] | None = None) -> str:
    """'Machine: <cpu> (<cores> cores, <isa>); <lib> <version>, ...' (all libraries, or `only` these; none: no list)."""
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if only is None or k in only)
    return f"Machine: {host['cpu']} ({host['cores']} cores, {', '.join(host['isa'])})" + (f"; {libs}" if libs else "")
