"""AnthropicModel against a local fake server speaking the Messages wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from orchestrion.errors import ModelError, ModelRequestsBlocked
from orchestrion.messages import (
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamItem,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    ToolResult,
    Usage,
    UserMessage,
)
from orchestrion.models import Model, infer_model
from orchestrion.models.anthropic import AnthropicModel
from orchestrion.models.base import GATE

from .fake_servers import (
    ANTHROPIC_MODEL,
    FakeServer,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    anthropic_usage,
    text_block,
    tool_use_block,
)

API_KEY = "sk-ant-test-0123456789SECRET"

WEATHER = ToolDefinition(
    name="get_weather",
    description="Current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


def ask(text: str = "Hi", **kwargs: object) -> ModelRequest:
    return ModelRequest(instructions=None, messages=(UserMessage(text),), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def model(server: FakeServer) -> AsyncIterator[AnthropicModel]:
    m = AnthropicModel(ANTHROPIC_MODEL, base_url=server.url, api_key=API_KEY)
    yield m
    await m.aclose()


async def collect(model: Model, request: ModelRequest) -> list[StreamItem]:
    return [item async for item in model.stream(request)]


# -- request mapping -------------------------------------------------------------


async def test_request_maps_system_tools_and_tool_results(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(anthropic_message([text_block("Sunny and rainy.")]))
    request = ModelRequest(
        instructions="You are a weather bot.",
        messages=(
            UserMessage("Weather in Paris and Rome?"),
            ModelResponse(
                text="Let me check.",
                tool_calls=(
                    ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
                    ToolCall("toolu_2", "get_weather", '{"city":"Rome"}'),
                ),
            ),
            ToolResult("toolu_1", "get_weather", "sunny"),
            ToolResult("toolu_2", "get_weather", "TimeoutError: no answer", is_error=True),
            UserMessage("And tomorrow?"),
        ),
        tools=(WEATHER,),
        settings=ModelSettings(temperature=0.3, max_tokens=500),
    )

    await model.request(request)

    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"  # SDK 2.x sends Bearer
    assert sent.headers["anthropic-version"]
    assert sent.body == {
        "model": ANTHROPIC_MODEL,
        "max_tokens": 500,
        "stream": False,
        "system": "You are a weather bot.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "TimeoutError: no answer",
                        "is_error": True,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "input_schema": WEATHER.parameters,
            }
        ],
    }
    assert "temperature" not in sent.body  # API 2026-10-21 answers 400 to it


async def test_defaults_and_parallel_tool_use_switch(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(anthropic_message([text_block("a")]), anthropic_message([text_block("b")]))
    await model.request(ask())
    await model.request(ask(tools=(WEATHER,), settings=ModelSettings(parallel_tool_calls=False)))

    plain, with_tools = (r.body for r in server.requests)
    assert plain["max_tokens"] == 4096
    assert "system" not in plain and "tools" not in plain and "tool_choice" not in plain
    assert with_tools["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_invalid_tool_arguments_are_sent_back_wrapped(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(anthropic_message([text_block("ok")]))
    history = (
        UserMessage("go"),
        ModelResponse(
            tool_calls=(
                ToolCall("t1", "get_weather", '{"city": "Par'),
                ToolCall("t2", "get_weather", "[1, 2]"),
                ToolCall("t3", "get_weather", ""),
            )
        ),
        ToolResult("t1", "get_weather", "invalid JSON", is_error=True),
        ToolResult("t2", "get_weather", "not an object", is_error=True),
        ToolResult("t3", "get_weather", "city is required", is_error=True),
    )
    await model.request(ModelRequest(None, history))
    blocks = server.requests[0].body["messages"][1]["content"]
    assert [b["input"] for b in blocks] == [
        {"_invalid_json": '{"city": "Par'},
        {"_invalid_json": "[1, 2]"},
        {},
    ]


async def test_empty_assistant_turn_is_skipped(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(anthropic_message([text_block("ok")]))
    history = (UserMessage("a"), ModelResponse(text=None), UserMessage("b"))
    await model.request(ModelRequest(None, history))
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


# -- responses -------------------------------------------------------------------


async def test_plain_text_response(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(anthropic_message([text_block("Hello "), text_block("there!")]))
    response = await model.request(ask())
    assert response == ModelResponse(
        text="Hello there!",
        usage=Usage(input_tokens=25, output_tokens=12, requests=1),
        finish_reason="end_turn",
        model=ANTHROPIC_MODEL,
    )


async def test_tool_use_response(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(
        anthropic_message(
            [
                text_block("Checking."),
                tool_use_block("toolu_a", "get_weather", {"city": "Paris"}),
            ]
        )
    )
    response = await model.request(ask(tools=(WEATHER,)))
    assert response.text == "Checking."
    assert response.tool_calls == (ToolCall("toolu_a", "get_weather", '{"city": "Paris"}'),)
    assert response.finish_reason == "tool_use"


async def test_parallel_tool_use(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(
        anthropic_message(
            [
                tool_use_block("toolu_a", "get_weather", {"city": "Paris"}),
                tool_use_block("toolu_b", "get_weather", {"city": "Zürich"}),
            ]
        )
    )
    response = await model.request(ask(tools=(WEATHER,)))
    assert response.text is None
    assert [c.id for c in response.tool_calls] == ["toolu_a", "toolu_b"]
    assert [json.loads(c.arguments) for c in response.tool_calls] == [
        {"city": "Paris"},
        {"city": "Zürich"},
    ]


async def test_usage_counts_cached_input(server: FakeServer, model: AnthropicModel) -> None:
    usage = anthropic_usage(10, 7, cache_write=100, cache_read=1000)
    server.reply(anthropic_message([text_block("x")], usage=usage))
    assert (await model.request(ask())).usage == Usage(1110, 7, 1)


# -- streaming -------------------------------------------------------------------


async def test_streamed_text(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(
        anthropic_stream([("text", ["Hel", "lo ", "there!"])]),
        anthropic_message([text_block("Hello there!")]),
    )
    items = await collect(model, ask())
    expected = await model.request(ask())

    assert items[:-1] == [TextDelta("Hel"), TextDelta("lo "), TextDelta("there!")]
    assert items[-1] == expected
    assert expected.usage == Usage(25, 12, 1)
    assert server.requests[0].body["stream"] is True


async def test_streamed_tool_calls_split_across_chunks(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(
        anthropic_stream(
            [
                ("text", ["Checking ", "both."]),
                ("tool_use", ("toolu_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}'])),
                ("tool_use", ("toolu_b", "get_weather", ['{"city":', ' "Rome"}'])),
            ],
            stop_reason="tool_use",
            usage=anthropic_usage(40, 30, cache_read=5),
        ),
        anthropic_message(
            [
                text_block("Checking both."),
                tool_use_block("toolu_a", "get_weather", {"city": "Paris"}),
                tool_use_block("toolu_b", "get_weather", {"city": "Rome"}),
            ],
            usage=anthropic_usage(40, 30, cache_read=5),
        ),
    )
    items = await collect(model, ask(tools=(WEATHER,)))
    expected = await model.request(ask(tools=(WEATHER,)))

    deltas = [i for i in items if isinstance(i, ToolCallDelta)]
    # `index` counts tool calls, not content blocks (block 0 is text).
    assert deltas[0] == ToolCallDelta(0, "toolu_a", "get_weather", "")
    assert deltas[4] == ToolCallDelta(1, "toolu_b", "get_weather", "")
    assert "".join(d.arguments for d in deltas if d.index == 0) == '{"city": "Paris"}'
    assert "".join(d.arguments for d in deltas if d.index == 1) == '{"city": "Rome"}'
    assert [i for i in items if isinstance(i, TextDelta)] == [
        TextDelta("Checking "),
        TextDelta("both."),
    ]
    assert items[-1] == expected
    assert expected.usage == Usage(45, 30, 1)
    assert expected.finish_reason == "tool_use"


async def test_streamed_arguments_are_normalised_like_request(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(
        anthropic_stream([("tool_use", ("t", "get_weather", ['{ "city" :', '"Paris"}']))]),
        anthropic_stream([("tool_use", ("t", "get_weather", []))]),
    )
    [*_, final] = await collect(model, ask(tools=(WEATHER,)))
    assert isinstance(final, ModelResponse)
    assert final.tool_calls == (ToolCall("t", "get_weather", '{"city": "Paris"}'),)
    [*_, empty] = await collect(model, ask(tools=(WEATHER,)))
    assert isinstance(empty, ModelResponse)
    assert empty.tool_calls == (ToolCall("t", "get_weather", "{}"),)


async def test_large_max_tokens_streams_under_the_hood(
    server: FakeServer, model: AnthropicModel
) -> None:
    # The SDK refuses non-streaming requests that may take over 10 minutes.
    server.reply(anthropic_stream([("text", ["long ", "answer"])]))
    response = await model.request(ask(settings=ModelSettings(max_tokens=64_000)))
    assert response.text == "long answer"
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].body["max_tokens"] == 64_000


async def test_error_event_inside_a_stream(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(
        anthropic_stream(
            [("text", ["partial"])],
            error={"type": "overloaded_error", "message": "Overloaded"},
        )
    )
    items: list[StreamItem] = []
    with pytest.raises(ModelError) as info:
        async for item in model.stream(ask()):
            items.append(item)
    assert items == [TextDelta("partial")]
    err = info.value
    assert (err.status_code, err.transient) == (529, True)
    assert "Overloaded" in str(err) and ANTHROPIC_MODEL in str(err)


async def test_stream_closed_early_releases_the_connection(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(
        anthropic_stream([("text", ["a", "b", "c"])]),
        anthropic_message([text_block("next")]),
    )
    stream = model.stream(ask())
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await model.request(ask())).text == "next"


# -- errors ----------------------------------------------------------------------


async def test_rate_limit_keeps_retry_after(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(
        anthropic_error(
            429,
            "rate_limit_error",
            "This request would exceed your organization's rate limit.",
            headers={"retry-after": "12"},
        )
    )
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    err = info.value
    assert isinstance(err, ModelError)
    assert (err.status_code, err.retry_after, err.transient) == (429, 12.0, True)
    assert f"anthropic:{ANTHROPIC_MODEL}" in str(err) and "429" in str(err)
    assert "rate_limit_error" in str(err)
    assert type(err.__cause__).__name__ == "RateLimitError"
    assert len(server.requests) == 1


async def test_server_error_is_not_retried_by_the_sdk(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(
        anthropic_error(500, "api_error", "Internal server error"),
        anthropic_message([text_block("would be the retry")]),
    )
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    assert (info.value.status_code, info.value.transient) == (500, True)
    assert len(server.requests) == 1
    assert server.requests[0].headers["x-stainless-retry-count"] == "0"
    assert server.pending == 1


async def test_overloaded_is_transient(server: FakeServer, model: AnthropicModel) -> None:
    server.reply(anthropic_error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(ModelError) as info:
        await collect(model, ask())
    assert (info.value.status_code, info.value.transient) == (529, True)
    assert len(server.requests) == 1


async def test_auth_error_names_model_and_status_but_not_the_key(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    err = info.value
    assert err.status_code == 401 and not err.transient
    assert f"anthropic:{ANTHROPIC_MODEL}" in str(err) and "401" in str(err)
    assert "ANTHROPIC_API_KEY" in str(err)
    assert API_KEY not in str(err)
    assert API_KEY not in json.dumps(err.to_json())


async def test_key_echoed_by_a_server_is_redacted(
    server: FakeServer, model: AnthropicModel
) -> None:
    server.reply(anthropic_error(400, "invalid_request_error", f"bad key {API_KEY}"))
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    assert API_KEY not in str(info.value)
    assert "<redacted>" in str(info.value)


async def test_unreachable_server(server: FakeServer) -> None:
    url = server.url
    server.close()
    async with AnthropicModel(ANTHROPIC_MODEL, base_url=url, api_key=API_KEY) as model:
        with pytest.raises(ModelError) as info:
            await model.request(ask())
    assert info.value.status_code is None
    assert info.value.transient


# -- registry, gate, lifecycle -----------------------------------------------------


async def test_registry_anthropic(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    model = infer_model(f"anthropic:{ANTHROPIC_MODEL}")
    assert isinstance(model, AnthropicModel)
    assert isinstance(model, Model)
    assert model.name == f"anthropic:{ANTHROPIC_MODEL}"
    server.reply(anthropic_message([text_block("hi")]))
    try:
        assert (await model.request(ask())).text == "hi"
    finally:
        await model.aclose()
    assert server.requests[0].body["model"] == ANTHROPIC_MODEL


async def test_blocked_requests_reach_no_server(server: FakeServer, model: AnthropicModel) -> None:
    previous = GATE.allowed
    GATE.allowed = False
    try:
        with pytest.raises(ModelRequestsBlocked, match=f"anthropic:{ANTHROPIC_MODEL}"):
            await model.request(ask())
        with pytest.raises(ModelRequestsBlocked):
            await collect(model, ask())
        with pytest.raises(ModelRequestsBlocked):  # the streaming path of request()
            await model.request(ask(settings=ModelSettings(max_tokens=64_000)))
    finally:
        GATE.allowed = previous
    assert server.requests == []


async def test_client_is_created_lazily_and_reopened_after_close(
    server: FakeServer, model: AnthropicModel
) -> None:
    # A private probe: that no SDK client exists before the first request shows
    # nowhere in the model's public behaviour.
    assert model._client is None
    server.reply(anthropic_message([text_block("one")]), anthropic_message([text_block("two")]))
    assert (await model.request(ask())).text == "one"
    await model.aclose()
    await model.aclose()
    assert (await model.request(ask())).text == "two"


def test_reply_shape_is_what_the_sdk_parses() -> None:
    # Guard the fake itself: its payloads validate against the SDK's own types.
    from anthropic.types import Message, RawMessageStreamEvent
    from pydantic import TypeAdapter

    reply = anthropic_message([text_block("x"), tool_use_block("t", "f", {"a": 1})])
    Message.model_validate(reply.body)
    stream = anthropic_stream([("text", ["a"]), ("tool_use", ("t", "f", ["{}"]))])
    assert stream.frames is not None
    events = TypeAdapter(RawMessageStreamEvent)
    for frame in stream.frames:
        name, data = frame.split("\n")[:2]
        if name != "event: ping":
            events.validate_python(json.loads(data.removeprefix("data: ")))
