"""The `vaekit` command line (entry point `vaekit.cli:main`)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
