"""Tools: typed Python functions that agents may call."""

from orchestrion.tools.tool import ModelRetry, Tool, tool

__all__ = ["ModelRetry", "Tool", "tool"]
