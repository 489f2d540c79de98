"""Command line: one module per command group, each a thin wrapper that parses, calls the
library and renders. `main` maps error classes to exit codes in one place (cli/main.py)."""

from toolchain.cli.main import cli, main

__all__ = ["cli", "main"]
