"""OpenAI and OpenAI-compatible models through the official `openai` SDK.

The Chat Completions API is used, not Responses, because every OpenAI-compatible
server (vLLM, Ollama, llama.cpp, LM Studio) speaks it. The SDK is only the wire
layer: its own retries are off, since orchestrion's retries are journaled policies.

    openai:gpt-4.1-mini                                  -> OpenAIModel("gpt-4.1-mini")
    openai-compatible:http://localhost:11434/v1#llama3.2 -> OpenAIModel("llama3.2", base_url=...)
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, assert_never

import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionAssistantMessageParam,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from orchestrion.errors import ModelError, ModelNotFound
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
from orchestrion.redact import redact_url

__all__ = ["OpenAIModel", "compatible_from_string", "from_string"]

MaxTokensField = Literal["max_completion_tokens", "max_tokens"]

COMPATIBLE_API_KEY_ENV = "OPENAI_COMPATIBLE_API_KEY"
COMPATIBLE_PLACEHOLDER_KEY = "not-needed"
"""Local servers ignore the key, but the SDK refuses to build a client without one."""


class OpenAIModel(_http.OwnsClient[openai.AsyncOpenAI]):
    """A model behind the OpenAI Chat Completions API, or any server that speaks it.

    The API key defaults to `OPENAI_API_KEY` (read by the SDK). The SDK client is
    built on the first request; `aclose()` closes it (only if this model built it).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: openai.AsyncOpenAI | None = None,
        provider: str = "openai",
        max_tokens_field: MaxTokensField | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.provider = provider
        # OpenAI deprecated `max_tokens` (reasoning models reject it), while local
        # servers such as Ollama and LM Studio only document `max_tokens`.
        self.max_tokens_field: MaxTokensField = max_tokens_field or (
            "max_completion_tokens" if provider == "openai" else "max_tokens"
        )
        self._api_key = api_key
        self._client = client
        self._owns_client = client is None

    @property
    def name(self) -> str:
        if self.provider == "openai-compatible":  # the name is journaled: no password in it
            return f"openai-compatible:{redact_url(self.base_url or '')}#{self.model}"
        return f"{self.provider}:{self.model}"

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r})"

    # -- lifecycle -------------------------------------------------------------

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                self._client = openai.AsyncOpenAI(
                    api_key=self._api_key, base_url=self.base_url, max_retries=0
                )
            except openai.OpenAIError as exc:  # e.g. no API key anywhere
                raise ModelError(
                    f"Cannot create an OpenAI client for model {self.name!r}: {exc} "
                    "Set OPENAI_API_KEY or pass api_key=..."
                ) from exc
        return self._client

    # -- the Model protocol ----------------------------------------------------

    async def request(self, request: ModelRequest) -> ModelResponse:
        check_requests_allowed(self.name)
        client = self._get_client()
        try:
            completion = await client.chat.completions.create(**self._params(request), stream=False)
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        return self._response(completion)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        check_requests_allowed(self.name)
        client = self._get_client()
        state = _StreamState()
        try:
            chunks = await client.chat.completions.create(
                **self._params(request),
                stream=True,
                stream_options={"include_usage": True},
            )
            async with chunks:
                async for chunk in chunks:
                    for item in state.feed(chunk):
                        yield item
        except openai.OpenAIError as exc:
            raise self._error(exc) from exc
        yield state.result(self)

    # -- mapping ---------------------------------------------------------------

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        settings = request.settings
        params: dict[str, Any] = {"model": self.model, "messages": _messages(request)}
        if request.tools:
            params["tools"] = [_tool(t) for t in request.tools]
            if settings.parallel_tool_calls is not None:
                params["parallel_tool_calls"] = settings.parallel_tool_calls
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            params[self.max_tokens_field] = settings.max_tokens
        return params

    def _response(self, completion: ChatCompletion) -> ModelResponse:
        if not completion.choices:
            raise ModelError(f"Model {self.name!r} answered with no choices.")
        choice = completion.choices[0]
        message = choice.message
        calls: list[ToolCall] = []
        for call in message.tool_calls or ():
            if not isinstance(call, ChatCompletionMessageFunctionToolCall):
                raise ModelError(
                    f"Model {self.name!r} made a {call.type!r} tool call; only function "
                    "tools are supported."
                )
            calls.append(ToolCall(call.id, call.function.name, call.function.arguments))
        usage = completion.usage
        return ModelResponse(
            text=message.content or message.refusal or None,
            tool_calls=tuple(calls),
            usage=Usage(usage.prompt_tokens, usage.completion_tokens, 1)
            if usage
            else Usage(requests=1),
            finish_reason=choice.finish_reason,
            model=completion.model,
        )

    def _error(self, exc: openai.OpenAIError) -> ModelError:
        status: int | None = None
        retry_after: float | None = None
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message, retry_after, transient = _http.status_error(
                self.name,
                status,
                exc.response.headers,
                _detail(exc.body) or exc.message,
                "OPENAI_API_KEY",
            )
        elif isinstance(exc, openai.APITimeoutError):
            transient = True
            message = f"Model {self.name!r} timed out before answering."
        elif isinstance(exc, openai.APIConnectionError):
            transient = True
            message = f"Model {self.name!r} could not be reached ({exc.message}); is the server up?"
        elif isinstance(exc, openai.APIError):  # an error event inside a stream
            transient = exc.type == "server_error"
            message = f"Model {self.name!r} failed while streaming: {exc.message}"
        else:
            transient = False
            message = f"Model {self.name!r} failed: {exc}"
        return ModelError(
            self._redact(message), status_code=status, retry_after=retry_after, transient=transient
        )

    def _redact(self, text: str) -> str:
        return _http.redact(text, (self._api_key, self._client.api_key if self._client else None))


def _messages(request: ModelRequest) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    if request.instructions:
        out.append({"role": "system", "content": request.instructions})
    for message in request.messages:
        match message:
            case UserMessage():
                out.append({"role": "user", "content": message.content})
            case ModelResponse():
                out.append(_assistant(message))
            case ToolResult():
                # Chat Completions has no error flag: the content says what went wrong.
                out.append(
                    {"role": "tool", "tool_call_id": message.call_id, "content": message.content}
                )
            case _:
                assert_never(message)
    return out


def _assistant(response: ModelResponse) -> ChatCompletionAssistantMessageParam:
    if not response.tool_calls:
        return {"role": "assistant", "content": response.text or ""}
    return {
        "role": "assistant",
        "content": response.text,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in response.tool_calls
        ],
    }


def _tool(tool: ToolDefinition) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


@dataclass
class _PartialCall:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


@dataclass
class _StreamState:
    """Folds streamed chunks into the one `ModelResponse` that `request` would return."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    model: str | None = None
    usage: Usage = field(default_factory=lambda: Usage(requests=1))

    def feed(self, chunk: ChatCompletionChunk) -> list[TextDelta | ToolCallDelta]:
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens, 1)
        items: list[TextDelta | ToolCallDelta] = []
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason
            delta = choice.delta
            piece = delta.content or delta.refusal
            if piece:
                self.text.append(piece)
                items.append(TextDelta(piece))
            for call in delta.tool_calls or ():
                items.append(self._feed_call(call))
        return items

    def _feed_call(self, call: ChoiceDeltaToolCall) -> ToolCallDelta:
        index: int | None = call.index
        if index is None:  # some compatible servers omit it when a chunk holds a whole call
            new = call.id is not None and all(p.id != call.id for p in self.calls.values())
            index = len(self.calls) if new else max(self.calls, default=0)
        partial = self.calls.setdefault(index, _PartialCall())
        function = call.function
        name = function.name if function is not None else None
        arguments = (function.arguments if function is not None else None) or ""
        call_id = call.id
        # Only the first chunk of a call carries id and name; some servers repeat them.
        partial.id = partial.id or call_id
        partial.name = partial.name or name
        partial.arguments.append(arguments)
        return ToolCallDelta(index, call_id, name, arguments)

    def result(self, model: OpenAIModel) -> ModelResponse:
        calls = tuple(
            ToolCall(p.id or f"call_{i}", p.name or "", "".join(p.arguments))
            for i, p in sorted(self.calls.items())
        )
        if any(not c.name for c in calls):
            raise ModelError(f"Model {model.name!r} streamed a tool call without a name.")
        return ModelResponse(
            text="".join(self.text) or None,
            tool_calls=calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
            model=self.model,
        )


def _detail(body: object) -> str | None:
    """The provider's own explanation from an error body (`{"error": {"message": ...}}`)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"]).rstrip(".")
    return None


def from_string(model: str) -> OpenAIModel:
    """`openai:<model>`; the key comes from OPENAI_API_KEY."""
    return OpenAIModel(model)


def compatible_from_string(spec: str) -> OpenAIModel:
    """`openai-compatible:<base_url>#<model>`, e.g. `http://localhost:11434/v1#llama3.2`.

    The key comes from OPENAI_COMPATIBLE_API_KEY; local servers need none.
    """
    base_url, sep, model = spec.partition("#")
    if not sep or not base_url or not model:
        raise ModelNotFound(
            f"openai-compatible model {spec!r} names no model: write "
            "'openai-compatible:<base_url>#<model>', e.g. "
            "'openai-compatible:http://localhost:11434/v1#llama3.2'."
        )
    api_key = os.environ.get(COMPATIBLE_API_KEY_ENV) or COMPATIBLE_PLACEHOLDER_KEY
    return OpenAIModel(model, base_url=base_url, api_key=api_key, provider="openai-compatible")
