"""The `orchestrion` command line."""

from orchestrion.cli.app import app, main

__all__ = ["app", "main"]
