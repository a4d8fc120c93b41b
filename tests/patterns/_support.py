"""Helpers shared by the pattern tests."""

from __future__ import annotations

from orchestrion import Agent
from orchestrion.messages import ModelRequest, UserMessage
from orchestrion.testing import FunctionModel


def echo(name: str, prefix: str) -> Agent[str]:
    """An agent answering `<prefix>(<its input>)`."""

    def answer(request: ModelRequest) -> str:
        first = request.messages[0]
        assert isinstance(first, UserMessage)
        return f"{prefix}({first.content})"

    return Agent(name=name, model=FunctionModel(answer))
