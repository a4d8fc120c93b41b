"""Fake models for tests: scripted, function-driven, and schema-driven."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from orchestrion._json import JSON, dumps_str
from orchestrion.errors import FakeModelError
from orchestrion.messages import (
    ModelRequest,
    ModelResponse,
    StreamItem,
    ToolCall,
    ToolResult,
    Usage,
)
from orchestrion.models.base import stream_of

Scripted = str | ModelResponse | ToolCall | list[ToolCall]


def call(name: str, arguments: dict[str, JSON] | str | None = None, *, id: str = "") -> ToolCall:
    """A tool call for a script; `arguments` may be a dict or raw (even broken) JSON text."""
    raw = arguments if isinstance(arguments, str) else dumps_str(arguments or {})
    return ToolCall(id, name, raw)


def _estimate(request: ModelRequest, text: str) -> Usage:
    """Rough token counts (4 characters a token) so budgets and usage have data."""
    size = len(request.instructions or "")
    for m in request.messages:
        if isinstance(m, ModelResponse):
            size += len(m.text or "") + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
        else:
            size += len(m.content)
    return Usage(size // 4 + 1, len(text) // 4 + 1, 1)


def _as_response(item: Scripted, request: ModelRequest, turn: int) -> ModelResponse:
    if isinstance(item, str):
        return ModelResponse(text=item, usage=_estimate(request, item), finish_reason="stop")
    if isinstance(item, ToolCall):
        item = [item]
    if isinstance(item, list):
        calls = tuple(
            ToolCall(c.id or f"call_{turn}_{i}", c.name, c.arguments) for i, c in enumerate(item)
        )
        text = " ".join(c.arguments for c in calls)
        return ModelResponse(
            tool_calls=calls, usage=_estimate(request, text), finish_reason="tool_calls"
        )
    return item


class _Fake:
    """A fake streams by splitting what `request` answers."""

    async def request(self, request: ModelRequest) -> ModelResponse:
        raise NotImplementedError

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        async for item in stream_of(await self.request(request)):
            yield item


class ScriptedModel(_Fake):
    """Answers requests from a FIFO script: text, tool calls or full responses.

    Replayed steps do not consume the script; only live requests do. Call
    `assert_complete()` at the end of a test to check every item was used.
    """

    def __init__(self, script: Iterable[Scripted], *, name: str = "scripted") -> None:
        self._script: deque[Scripted] = deque(script)
        self._name = name
        self._turn = 0
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return f"test:{self._name}"

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if not self._script:
            raise FakeModelError(
                f"ScriptedModel {self._name!r} got request #{len(self.requests)} but its script "
                "is used up; add responses to the script."
            )
        self._turn += 1
        return _as_response(self._script.popleft(), request, self._turn)

    def assert_complete(self) -> None:
        if self._script:
            raise AssertionError(
                f"ScriptedModel {self._name!r} has {len(self._script)} unused response(s): "
                f"{list(self._script)[:3]}"
            )


ModelFunction = Callable[[ModelRequest], Scripted | Awaitable[Scripted]]


class FunctionModel(_Fake):
    """A function of the request decides each answer (sync or async)."""

    def __init__(self, function: ModelFunction, *, name: str = "function") -> None:
        self._function = function
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return f"test:{self._name}"

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        try:
            item = self._function(request)
            if inspect.isawaitable(item):
                item = await item
        except AssertionError as exc:
            if isinstance(exc, FakeModelError):
                raise
            # A failed check of the test's: the test fails, not the model.
            raise FakeModelError(str(exc) or f"assert in FunctionModel {self._name!r}") from exc
        return _as_response(item, request, len(self.requests))


class TestModel(_Fake):
    """Calls every tool once with arguments generated from its schema, then answers
    (through the typed-output tool when the agent has one)."""

    __test__ = False  # not a pytest test class

    def __init__(self, *, text: str = "done", name: str = "schema") -> None:
        self._text = text
        self._name = name
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return f"test:{self._name}"

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        turn = len(self.requests)
        answered = any(isinstance(m, ToolResult) for m in request.messages)
        tools = [t for t in request.tools if t.name != "final_result"]
        output = next((t for t in request.tools if t.name == "final_result"), None)
        if tools and not answered:
            calls = [
                call(t.name, example(t.parameters), id=f"call_{turn}_{i}")
                for i, t in enumerate(tools)
            ]
            return _as_response(calls, request, turn)
        if output is not None:
            return _as_response(call("final_result", example(output.parameters)), request, turn)
        return _as_response(self._text, request, turn)


_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00",
    "duration": "P1D",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


def example(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A value valid against a (pydantic-generated) JSON schema."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(root.get("$defs", {})[name], root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            options = [o for o in schema[combinator] if o.get("type") != "null"] or schema[
                combinator
            ]
            return example(options[0], root)
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {k: example(props[k], root) for k in required if k in props}
    if kind == "array":
        if "prefixItems" in schema:
            return [example(item, root) for item in schema["prefixItems"]]
        return (
            [example(schema["items"], root)] * schema.get("minItems", 0)
            if "items" in schema
            else []
        )
    if kind == "string":
        return _FORMATS.get(schema.get("format", ""), "a" * max(1, schema.get("minLength", 1)))
    if kind == "integer":
        return max(0, schema.get("minimum", 0), schema.get("exclusiveMinimum", -1) + 1)
    if kind == "number":
        return float(max(0, schema.get("minimum", 0), schema.get("exclusiveMinimum", -1) + 1))
    if kind == "boolean":
        return False
    return None


def test_model_from_string(rest: str) -> TestModel:
    """`test:<anything>` resolves to a `TestModel` named so (handy for `ORCHESTRION_MODEL=test:x`)."""
    return TestModel(name=rest or "schema")


test_model_from_string.__test__ = False  # type: ignore[attr-defined]
