"""Anthropic models through the official `anthropic` SDK (Messages API).

The SDK is only the wire layer: its own retries are off, since orchestrion's
retries are journaled policies.

    anthropic:claude-sonnet-4-6 -> AnthropicModel("claude-sonnet-4-6")

Sampling settings: `ModelSettings.temperature` is not sent. SDK 2.x removed
`temperature` (and `top_p`, `top_k`) and speaks API version 2026-10-21, which
answers 400 to any of them, even at their defaults. Dropping it, rather than
failing, lets one `ModelSettings` serve a fallback chain across providers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

import anthropic
from anthropic.types import (
    ContentBlockParam,
    Message,
    MessageParam,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStreamEvent,
    ToolParam,
    ToolResultBlockParam,
)

from orchestrion.errors import ModelError
from orchestrion.messages import (
    ModelRequest,
    ModelResponse,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolResult,
    Usage,
    UserMessage,
)
from orchestrion.models import _http
from orchestrion.models.base import check_requests_allowed

__all__ = ["AnthropicModel", "from_string"]

INVALID_JSON_KEY = "_invalid_json"
"""Wraps tool-call arguments that are not a JSON object when they are sent back."""

# The SDK refuses non-streaming requests that may outlast 10 minutes; it estimates
# one hour per 128k output tokens. Above this, `request` streams under the hood.
_NONSTREAMING_MAX_TOKENS = 128_000 * 600 // 3600

# Anthropic's documented HTTP status for each error type, for errors that arrive as
# an `error` event inside a stream whose HTTP status was already 200.
_STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

Role = Literal["user", "assistant"]


class AnthropicModel(_http.OwnsClient[anthropic.AsyncAnthropic]):
    """A Claude model behind the Anthropic Messages API.

    Credentials default to the SDK's chain (`ANTHROPIC_API_KEY`, ...). The SDK
    client is built on the first request; `aclose()` closes it (only if this model
    built it). `max_tokens` is the default answer length, since the API needs one;
    `ModelSettings.max_tokens` overrides it per request.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        max_tokens: int = 4096,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.max_tokens = max_tokens
        self._api_key = api_key
        self._client = client
        self._owns_client = client is None

    @property
    def name(self) -> str:
        return f"anthropic:{self.model}"

    def __repr__(self) -> str:
        return f"AnthropicModel({self.name!r})"

    # -- lifecycle -------------------------------------------------------------

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            client = anthropic.AsyncAnthropic(
                api_key=self._api_key, base_url=self.base_url, max_retries=0
            )
            if client.api_key is None and client.auth_token is None and client.credentials is None:
                raise ModelError(
                    f"No Anthropic credentials for model {self.name!r}: set ANTHROPIC_API_KEY "
                    "or pass api_key=..."
                )
            self._client = client
        return self._client

    # -- the Model protocol ----------------------------------------------------

    async def request(self, request: ModelRequest) -> ModelResponse:
        params = self._params(request)
        if params["max_tokens"] > _NONSTREAMING_MAX_TOKENS:
            final: ModelResponse | None = None
            async for item in self.stream(request):
                if isinstance(item, ModelResponse):
                    final = item
            assert final is not None, "stream() always ends with a ModelResponse"
            return final
        check_requests_allowed(self.name)
        client = self._get_client()
        try:
            message = await client.messages.create(**params, stream=False)
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        return _response(message)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        check_requests_allowed(self.name)
        client = self._get_client()
        state = _StreamState()
        try:
            events = await client.messages.create(**self._params(request), stream=True)
            async with events:
                async for event in events:
                    for item in state.feed(event):
                        yield item
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from exc
        yield state.result()

    # -- mapping ---------------------------------------------------------------

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        settings = request.settings
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": settings.max_tokens or self.max_tokens,
            "messages": _messages(request),
        }
        if request.instructions:
            params["system"] = request.instructions
        if request.tools:
            params["tools"] = [_tool(t) for t in request.tools]
            if settings.parallel_tool_calls is False:
                params["tool_choice"] = {"type": "auto", "disable_parallel_tool_use": True}
        return params

    def _error(self, exc: anthropic.AnthropicError) -> ModelError:
        status: int | None = None
        retry_after: float | None = None
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            error_type = exc.type if isinstance(exc.type, str) else None
            if 200 <= status < 300:  # an `error` event inside a stream that had started
                status = _STATUS_OF_ERROR_TYPE.get(error_type or "", 500)
            kind = f"{error_type}: " if error_type else ""
            message, retry_after, transient = _http.status_error(
                self.name,
                status,
                exc.response.headers,
                kind + (exc.api_message or exc.message),
                "ANTHROPIC_API_KEY",
            )
        elif isinstance(exc, anthropic.APITimeoutError):
            transient = True
            message = f"Model {self.name!r} timed out before answering."
        elif isinstance(exc, anthropic.APIConnectionError):
            transient = True
            message = f"Model {self.name!r} could not be reached ({exc.message})."
        else:
            transient = False
            message = f"Model {self.name!r} failed: {exc}"
        return ModelError(
            self._redact(message), status_code=status, retry_after=retry_after, transient=transient
        )

    def _redact(self, text: str) -> str:
        client = self._client
        keys = (
            self._api_key,
            client.api_key if client else None,
            client.auth_token if client else None,
        )
        return _http.redact(text, keys)


def _messages(request: ModelRequest) -> list[MessageParam]:
    """Turns alternate user/assistant; tool results and user text share a user turn."""
    turns: list[tuple[Role, list[ContentBlockParam]]] = []

    def add(role: Role, blocks: list[ContentBlockParam]) -> None:
        if not blocks:  # the API rejects empty turns and empty text blocks
            return
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))

    for message in request.messages:
        match message:
            case UserMessage():
                add("user", [{"type": "text", "text": message.content}] if message.content else [])
            case ToolResult():
                result: ToolResultBlockParam = {
                    "type": "tool_result",
                    "tool_use_id": message.call_id,
                    "content": message.content,
                }
                if message.is_error:
                    result["is_error"] = True
                add("user", [result])
            case ModelResponse():
                add("assistant", _assistant_blocks(message))
            case _:
                assert_never(message)
    out: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            # Tool results must open the turn that answers the tool calls.
            blocks.sort(key=lambda b: b["type"] != "tool_result")
            out.append({"role": "user", "content": blocks})
        else:
            out.append({"role": "assistant", "content": blocks})
    return out


def _assistant_blocks(response: ModelResponse) -> list[ContentBlockParam]:
    blocks: list[ContentBlockParam] = []
    if response.text:
        blocks.append({"type": "text", "text": response.text})
    for call in response.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    return blocks


def _input(arguments: str) -> dict[str, object]:
    """Tool-call arguments as the object `tool_use.input` must be.

    Arguments that are not a JSON object (a truncated answer, or history written by
    another provider) are sent wrapped as `{"_invalid_json": "<text>"}`, not as `{}`:
    the tool result that follows says the arguments were invalid, and the model can
    only correct its mistake if it sees what it actually wrote. `{}` would claim it
    called the tool with no arguments.
    """
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {INVALID_JSON_KEY: arguments}


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _tool(tool: ToolDefinition) -> ToolParam:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _usage(
    input_tokens: int | None, cache_write: int | None, cache_read: int | None, output: int
) -> Usage:
    # Anthropic counts cached input apart; the sum is the request's whole input, as
    # OpenAI's `prompt_tokens` is, so budgets mean the same across providers.
    return Usage((input_tokens or 0) + (cache_write or 0) + (cache_read or 0), output, 1)


def _response(message: Message) -> ModelResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(block.id, block.name, _dump(block.input)))
        # thinking and server-tool blocks carry nothing the neutral types can hold
    u = message.usage
    return ModelResponse(
        text="".join(texts) or None,
        tool_calls=tuple(calls),
        usage=_usage(
            u.input_tokens,
            u.cache_creation_input_tokens,
            u.cache_read_input_tokens,
            u.output_tokens,
        ),
        finish_reason=message.stop_reason,
        model=message.model,
    )


@dataclass
class _PartialCall:
    ordinal: int
    id: str
    name: str
    start_input: dict[str, object]
    json_pieces: list[str] = field(default_factory=list)

    def arguments(self) -> str:
        """The same text `request` gives: the streamed JSON, re-serialised as `_dump` does."""
        raw = "".join(self.json_pieces)
        if not raw.strip():  # a tool without parameters streams no JSON at all
            return _dump(self.start_input)
        try:
            return _dump(json.loads(raw))
        except ValueError:
            return raw


@dataclass
class _StreamState:
    """Folds raw stream events into the one `ModelResponse` that `request` would return."""

    texts: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    """Tool-use blocks by content-block index; `ToolCallDelta.index` is their ordinal."""
    stop_reason: str | None = None
    model: str | None = None
    input_tokens: int = 0
    cache_write: int = 0
    cache_read: int = 0
    output_tokens: int = 0

    def feed(self, event: RawMessageStreamEvent) -> list[TextDelta | ToolCallDelta]:
        if isinstance(event, RawMessageStartEvent):
            m = event.message
            self.model = m.model
            self._count(
                m.usage.input_tokens,
                m.usage.cache_creation_input_tokens,
                m.usage.cache_read_input_tokens,
                m.usage.output_tokens,
            )
        elif isinstance(event, RawContentBlockStartEvent):
            return self._start(event)
        elif isinstance(event, RawContentBlockDeltaEvent):
            return self._delta(event)
        elif isinstance(event, RawMessageDeltaEvent):
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            u = event.usage  # cumulative counts; input counts only when they changed
            self._count(
                u.input_tokens,
                u.cache_creation_input_tokens,
                u.cache_read_input_tokens,
                u.output_tokens,
            )
        return []

    def _count(self, inp: int | None, write: int | None, read: int | None, out: int) -> None:
        self.input_tokens = inp if inp is not None else self.input_tokens
        self.cache_write = write if write is not None else self.cache_write
        self.cache_read = read if read is not None else self.cache_read
        self.output_tokens = out

    def _start(self, event: RawContentBlockStartEvent) -> list[TextDelta | ToolCallDelta]:
        block = event.content_block
        if block.type == "text" and block.text:
            self.texts.append(block.text)
            return [TextDelta(block.text)]
        if block.type == "tool_use":
            call = _PartialCall(len(self.calls), block.id, block.name, dict(block.input))
            self.calls[event.index] = call
            return [ToolCallDelta(call.ordinal, block.id, block.name, "")]
        return []

    def _delta(self, event: RawContentBlockDeltaEvent) -> list[TextDelta | ToolCallDelta]:
        delta = event.delta
        if delta.type == "text_delta" and delta.text:
            self.texts.append(delta.text)
            return [TextDelta(delta.text)]
        if delta.type == "input_json_delta" and event.index in self.calls:
            call = self.calls[event.index]
            call.json_pieces.append(delta.partial_json)
            if delta.partial_json:
                return [ToolCallDelta(call.ordinal, arguments=delta.partial_json)]
        return []

    def result(self) -> ModelResponse:
        return ModelResponse(
            text="".join(self.texts) or None,
            tool_calls=tuple(ToolCall(c.id, c.name, c.arguments()) for c in self.calls.values()),
            usage=_usage(self.input_tokens, self.cache_write, self.cache_read, self.output_tokens),
            finish_reason=self.stop_reason,
            model=self.model,
        )


def from_string(model: str) -> AnthropicModel:
    """`anthropic:<model>`; credentials come from ANTHROPIC_API_KEY (or the SDK's chain)."""
    return AnthropicModel(model)
