"""Provider-neutral messages exchanged with models.

A conversation is a sequence of `Message`s: what the user said, what the model
answered (`ModelResponse`, text and tool calls), and what tools returned. The
journal stores only model responses and tool results; the conversation is
rebuilt from them on replay, so storage grows with the number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from orchestrion._json import JSON, as_int, as_list, as_number


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens spent by one or more model requests, and their cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost: float = 0.0
    """USD, for the requests whose model has a known price (see `orchestrion.pricing`)."""

    @classmethod
    def from_json(cls, data: JSON) -> Usage:
        """Usage as `to_json` wrote it: three counts, then the cost when priced."""
        n = as_list(data, "usage")
        cost = as_number(n[3], "usage cost") if len(n) > 3 else 0.0
        return cls(as_int(n[0]), as_int(n[1]), as_int(n[2]), cost)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.requests + other.requests,
            self.cost + other.cost,
        )

    def to_json(self) -> list[JSON]:
        counts: list[JSON] = [self.input_tokens, self.output_tokens, self.requests]
        return [*counts, self.cost] if self.cost else counts

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call asked for by the model."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: JSON text, not yet parsed or validated."""


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """One answer from a model: text, tool calls, or both."""

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str | None = None
    """The model that actually answered (provider-reported name)."""

    def to_json(self) -> dict[str, JSON]:
        data: dict[str, JSON] = {}
        if self.text is not None:
            data["text"] = self.text
        if self.tool_calls:
            data["tool_calls"] = [[c.id, c.name, c.arguments] for c in self.tool_calls]
        data["usage"] = self.usage.to_json()
        if self.finish_reason is not None:
            data["finish_reason"] = self.finish_reason
        if self.model is not None:
            data["model"] = self.model
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelResponse:
        return cls(
            text=data.get("text"),
            tool_calls=tuple(ToolCall(*c) for c in data.get("tool_calls", ())),
            usage=Usage(*data.get("usage", (0, 0, 0))),
            finish_reason=data.get("finish_reason"),
            model=data.get("model"),
        )


@dataclass(frozen=True, slots=True)
class UserMessage:
    content: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call returned, as the model will read it."""

    call_id: str
    name: str
    content: str
    is_error: bool = False


Message: TypeAlias = UserMessage | ModelResponse | ToolResult


@dataclass(frozen=True, slots=True)
class Conversation:
    """An agent's input when it continues a conversation (a handoff) instead of
    starting from one user message."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class HandedOff:
    """What an agent returns when it transfers control instead of answering."""

    target: str
    reason: str
    messages: tuple[Message, ...]
    """The conversation so far, including the transfer call and its result."""


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool as a model sees it: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, object]
    """The JSON schema (`dict[str, object]`: what the provider SDKs' types take)."""


@dataclass(frozen=True, slots=True)
class ModelSettings:
    temperature: float | None = None
    max_tokens: int | None = None
    parallel_tool_calls: bool | None = None


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything a model needs for one answer."""

    instructions: str | None
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    settings: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of streamed text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call; `index` says which call it belongs to."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


StreamItem: TypeAlias = TextDelta | ToolCallDelta | ModelResponse
"""What `Model.stream` yields: deltas, then exactly one final `ModelResponse`."""


def size_of(message: Message) -> int:
    """Characters a message adds to a request (for size estimates)."""
    if isinstance(message, ModelResponse):
        return len(message.text or "") + sum(
            len(c.name) + len(c.arguments) for c in message.tool_calls
        )
    return len(message.content)
