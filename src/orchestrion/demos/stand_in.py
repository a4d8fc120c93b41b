"""A deterministic stand-in for a real model, so demos run offline.

It follows a fixed policy per demo and says it is a stand-in in every text it
writes. Set ORCHESTRION_MODEL (e.g. `openai:gpt-4.1-mini`) to use a real model.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable

from orchestrion.errors import ModelNotFound
from orchestrion.messages import (
    ModelRequest,
    ModelResponse,
    StreamItem,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from orchestrion.models.base import stream_of

PREFIX = "[stand-in model] "

Policy = Callable[[ModelRequest], ModelResponse]


class StandInModel:
    def __init__(self, demo: str, policy: Policy) -> None:
        self._demo = demo
        self._policy = policy

    @property
    def name(self) -> str:
        return f"stand-in:{self._demo}"

    async def request(self, request: ModelRequest) -> ModelResponse:
        return self._policy(request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        async for item in stream_of(self._policy(request)):
            yield item


def say(text: str) -> ModelResponse:
    return ModelResponse(
        text=PREFIX + text, usage=Usage(60, len(text) // 4 + 1, 1), finish_reason="stop"
    )


def calls(*tool_calls: ToolCall) -> ModelResponse:
    return ModelResponse(tool_calls=tool_calls, usage=Usage(60, 20, 1), finish_reason="tool_calls")


def from_string(demo: str) -> StandInModel:
    """`stand-in:<demo>`: the stand-in model with that demo's policy."""
    from orchestrion.demos import DEMOS

    if demo not in DEMOS:
        raise ModelNotFound(f"No stand-in model for demo {demo!r}; demos: {sorted(DEMOS)}.")
    policy: Policy = importlib.import_module(DEMOS[demo]).stand_in_policy
    return StandInModel(demo, policy)


# Helpers for demos whose agents share one stand-in policy: it tells the agents
# apart by the tools each one is offered, and reads what they were told.


def offered(request: ModelRequest) -> set[str]:
    """The names of the tools the asking agent may call."""
    return {t.name for t in request.tools}


def results(request: ModelRequest) -> dict[str, ToolResult]:
    """The latest result of each tool, by tool name."""
    return {m.name: m for m in request.messages if isinstance(m, ToolResult)}


def first_text(request: ModelRequest) -> str:
    """What the agent was first asked (its task, or the customer's message)."""
    return next((m.content for m in request.messages if isinstance(m, UserMessage)), "")


def unprefixed(text: str) -> str:
    """`text` without the stand-in's prefix, to quote one stand-in answer in another."""
    return text.removeprefix(PREFIX)
