"""The `Model` protocol: one request in, one response out, or a stream of deltas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from orchestrion.errors import ModelRequestsBlocked
from orchestrion.messages import ModelRequest, ModelResponse, StreamItem, TextDelta, ToolCallDelta


@runtime_checkable
class Model(Protocol):
    """A language model behind any provider.

    `name` identifies it in the journal and in breakers, e.g. `openai:gpt-4.1-mini`.
    `stream` yields `TextDelta`/`ToolCallDelta` items and ends with the full
    `ModelResponse`, which must equal what `request` would have returned.
    """

    @property
    def name(self) -> str: ...

    async def request(self, request: ModelRequest) -> ModelResponse: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]: ...


class _Gate:
    """Whether real (network) model requests are allowed; tests switch it off."""

    allowed: bool = True


GATE = _Gate()


def check_requests_allowed(model_name: str) -> None:
    """Called by every network-backed provider right before it sends a request."""
    if not GATE.allowed:
        raise ModelRequestsBlocked(
            f"A real request to model {model_name!r} was blocked: real model requests are "
            "forbidden here (orchestrion.testing.forbid_model_requests). Use a fake from "
            "orchestrion.testing, or wrap the code in `allow_model_requests()`."
        )


async def stream_of(response: ModelResponse) -> AsyncIterator[StreamItem]:
    """Stream a finished response (for fakes and stand-ins): its text word by
    word, its tool calls, then the response itself."""
    if response.text:
        for i, word in enumerate(response.text.split(" ")):
            yield TextDelta(word if i == 0 else " " + word)
    for i, c in enumerate(response.tool_calls):
        yield ToolCallDelta(i, c.id, c.name, c.arguments)
    yield response
