"""OpenAIModel against a local fake server speaking the Chat Completions wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from orchestrion.errors import ModelError, ModelNotFound, ModelRequestsBlocked
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
from orchestrion.models.base import GATE
from orchestrion.models.openai import OpenAIModel

from .fake_servers import (
    OPENAI_MODEL,
    FakeServer,
    Reply,
    openai_completion,
    openai_error,
    openai_stream,
    sse,
)

API_KEY = "sk-test-0123456789abcdefSECRET"

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
async def model(server: FakeServer) -> AsyncIterator[OpenAIModel]:
    m = OpenAIModel("gpt-4.1-mini", base_url=f"{server.url}/v1", api_key=API_KEY)
    yield m
    await m.aclose()


async def collect(model: Model, request: ModelRequest) -> list[StreamItem]:
    return [item async for item in model.stream(request)]


# -- request mapping -------------------------------------------------------------


async def test_request_maps_conversation_tools_and_settings(
    server: FakeServer, model: OpenAIModel
) -> None:
    server.reply(openai_completion(text="Sunny in Paris and Rome."))
    earlier = ModelResponse(
        text="Let me check.",
        tool_calls=(
            ToolCall("call_1", "get_weather", '{"city": "Paris"}'),
            ToolCall("call_2", "get_weather", '{"city":"Rome"}'),
        ),
    )
    request = ModelRequest(
        instructions="You are a weather bot.",
        messages=(
            UserMessage("Weather in Paris and Rome?"),
            earlier,
            ToolResult("call_1", "get_weather", "sunny"),
            ToolResult("call_2", "get_weather", "error: timeout", is_error=True),
        ),
        tools=(WEATHER,),
        settings=ModelSettings(temperature=0.2, max_tokens=300, parallel_tool_calls=False),
    )

    await model.request(request)

    [sent] = server.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body == {
        "model": "gpt-4.1-mini",
        "stream": False,
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "error: timeout"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city.",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "parallel_tool_calls": False,
        "temperature": 0.2,
        "max_completion_tokens": 300,
    }


async def test_request_without_tools_sends_no_tool_settings(
    server: FakeServer, model: OpenAIModel
) -> None:
    server.reply(openai_completion(text="ok"))
    history = (UserMessage("a"), ModelResponse(text=None), UserMessage("b"))
    settings = ModelSettings(parallel_tool_calls=True)
    await model.request(ModelRequest(None, history, settings=settings))

    body = server.requests[0].body
    assert "tools" not in body
    assert "parallel_tool_calls" not in body
    assert "temperature" not in body
    assert body["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "b"},
    ]


async def test_compatible_servers_get_max_tokens(server: FakeServer) -> None:
    server.reply(openai_completion(text="ok"))
    async with OpenAIModel(
        "llama3.2", base_url=f"{server.url}/v1", api_key="x", provider="openai-compatible"
    ) as model:
        assert model.name == f"openai-compatible:{server.url}/v1#llama3.2"
        await model.request(ask(settings=ModelSettings(max_tokens=64)))
    body = server.requests[0].body
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body


# -- responses -------------------------------------------------------------------


async def test_plain_text_response(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(openai_completion(text="Hello there!", usage=(13, 4)))
    response = await model.request(ask())
    assert response == ModelResponse(
        text="Hello there!",
        usage=Usage(input_tokens=13, output_tokens=4, requests=1),
        finish_reason="stop",
        model=OPENAI_MODEL,
    )


async def test_tool_call_response_keeps_arguments_verbatim(
    server: FakeServer, model: OpenAIModel
) -> None:
    raw = '{"city":  "Paris" }'
    server.reply(openai_completion(tool_calls=[("call_a", "get_weather", raw)]))
    response = await model.request(ask(tools=(WEATHER,)))
    assert response.text is None
    assert response.tool_calls == (ToolCall("call_a", "get_weather", raw),)
    assert response.finish_reason == "tool_calls"


async def test_parallel_tool_calls(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(
        openai_completion(
            text="Checking both.",
            tool_calls=[
                ("call_a", "get_weather", '{"city": "Paris"}'),
                ("call_b", "get_weather", '{"city": "Rome"}'),
            ],
        )
    )
    response = await model.request(ask(tools=(WEATHER,)))
    assert response.text == "Checking both."
    assert [c.id for c in response.tool_calls] == ["call_a", "call_b"]
    assert [json.loads(c.arguments)["city"] for c in response.tool_calls] == ["Paris", "Rome"]


async def test_response_without_usage_still_counts_the_request(
    server: FakeServer, model: OpenAIModel
) -> None:
    reply = openai_completion(text="ok")
    del reply.body["usage"]  # some compatible servers send none
    server.reply(reply)
    assert (await model.request(ask())).usage == Usage(requests=1)


# -- streaming -------------------------------------------------------------------


async def test_streamed_text(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(
        openai_stream(text=["Hel", "lo ", "there!"], usage=(13, 4)),
        openai_completion(text="Hello there!", usage=(13, 4)),
    )
    items = await collect(model, ask())
    expected = await model.request(ask())

    assert items[:-1] == [TextDelta("Hel"), TextDelta("lo "), TextDelta("there!")]
    assert items[-1] == expected
    assert expected.usage == Usage(13, 4, 1)
    body = server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streamed_tool_calls_split_across_chunks(
    server: FakeServer, model: OpenAIModel
) -> None:
    paris, rome = '{"city": "Paris"}', '{"city": "Rome"}'
    server.reply(
        openai_stream(
            tool_calls=[
                ("call_a", "get_weather", ['{"ci', 'ty": "Pa', 'ris"}']),
                ("call_b", "get_weather", ['{"city": ', '"Rome"}']),
            ],
            usage=(30, 18),
        ),
        openai_completion(
            tool_calls=[("call_a", "get_weather", paris), ("call_b", "get_weather", rome)],
            usage=(30, 18),
        ),
    )
    items = await collect(model, ask(tools=(WEATHER,)))
    expected = await model.request(ask(tools=(WEATHER,)))

    deltas = [i for i in items if isinstance(i, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, "call_a", "get_weather", "")
    assert deltas[4] == ToolCallDelta(1, "call_b", "get_weather", "")
    assert "".join(d.arguments for d in deltas if d.index == 0) == paris
    assert "".join(d.arguments for d in deltas if d.index == 1) == rome
    assert not any(isinstance(i, TextDelta) for i in items)
    assert items[-1] == expected
    assert expected.tool_calls == (
        ToolCall("call_a", "get_weather", paris),
        ToolCall("call_b", "get_weather", rome),
    )


async def test_stream_ends_with_exactly_one_response(
    server: FakeServer, model: OpenAIModel
) -> None:
    server.reply(openai_stream(text=["a"], usage=None))
    items = await collect(model, ask())
    assert [type(i) for i in items] == [TextDelta, ModelResponse]
    assert items[-1] == ModelResponse(
        text="a", usage=Usage(requests=1), finish_reason="stop", model=OPENAI_MODEL
    )


async def test_stream_closed_early_releases_the_connection(
    server: FakeServer, model: OpenAIModel
) -> None:
    server.reply(openai_stream(text=["a", "b", "c"]), openai_completion(text="next"))
    stream = model.stream(ask())
    assert await anext(stream) == TextDelta("a")
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await model.request(ask())).text == "next"


async def test_error_inside_a_stream(server: FakeServer, model: OpenAIModel) -> None:
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    server.reply(sse([f"data: {json.dumps(error)}\n\n", "data: [DONE]\n\n"]))
    with pytest.raises(ModelError) as info:
        await collect(model, ask())
    assert "The server had an error" in str(info.value)
    assert info.value.status_code is None
    assert info.value.transient


async def test_http_error_when_a_stream_starts(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(openai_error(503, "Service unavailable", type="server_error"))
    with pytest.raises(ModelError) as info:
        await collect(model, ask())
    assert info.value.status_code == 503
    assert len(server.requests) == 1


# -- errors ----------------------------------------------------------------------


async def test_rate_limit_keeps_retry_after(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(
        openai_error(
            429,
            "Rate limit reached for gpt-4.1-mini on tokens per min (TPM). Please try again in 7s.",
            type="tokens",
            code="rate_limit_exceeded",
            headers={"retry-after": "7"},
        )
    )
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    err = info.value
    assert isinstance(err, ModelError)
    assert (err.status_code, err.retry_after, err.transient) == (429, 7.0, True)
    assert "openai:gpt-4.1-mini" in str(err)
    assert "429" in str(err)
    assert "Rate limit reached" in str(err)
    assert type(err.__cause__).__name__ == "RateLimitError"
    assert len(server.requests) == 1


async def test_retry_after_ms_is_preferred(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(
        openai_error(
            429,
            "slow down",
            type="requests",
            headers={"retry-after-ms": "1500", "retry-after": "2"},
        )
    )
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    assert info.value.retry_after == 1.5


async def test_server_error_is_not_retried_by_the_sdk(
    server: FakeServer, model: OpenAIModel
) -> None:
    server.reply(
        openai_error(
            500, "The server had an error while processing your request.", type="server_error"
        ),
        openai_completion(text="would be the retry"),
    )
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    assert info.value.status_code == 500
    assert info.value.transient
    assert info.value.retry_after is None
    assert len(server.requests) == 1
    assert server.requests[0].headers["x-stainless-retry-count"] == "0"
    assert server.pending == 1


async def test_auth_error_names_model_and_status_but_not_the_key(
    server: FakeServer, model: OpenAIModel
) -> None:
    server.reply(
        openai_error(
            401,
            "Incorrect API key provided: sk-test-****CRET. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            type="invalid_request_error",
            code="invalid_api_key",
        )
    )
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    err = info.value
    assert err.status_code == 401
    assert not err.transient
    assert "openai:gpt-4.1-mini" in str(err) and "401" in str(err)
    assert "OPENAI_API_KEY" in str(err)
    assert API_KEY not in str(err)
    assert API_KEY not in json.dumps(err.to_json())


async def test_key_echoed_by_a_server_is_redacted(server: FakeServer, model: OpenAIModel) -> None:
    server.reply(openai_error(403, f"key {API_KEY} is not allowed", type="permission_error"))
    with pytest.raises(ModelError) as info:
        await model.request(ask())
    assert API_KEY not in str(info.value)
    assert "<redacted>" in str(info.value)


async def test_unreachable_server(server: FakeServer) -> None:
    url = f"{server.url}/v1"
    server.close()  # nothing listens on the port any more
    async with OpenAIModel("m", base_url=url, api_key=API_KEY) as model:
        with pytest.raises(ModelError) as info:
            await model.request(ask())
    assert info.value.status_code is None
    assert info.value.transient
    assert "could not be reached" in str(info.value)


async def test_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    model = OpenAIModel("gpt-4.1-mini", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        await model.request(ask())
    await model.aclose()


# -- registry, gate, lifecycle -----------------------------------------------------


async def test_registry_openai(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    model = infer_model("openai:gpt-4.1-mini")
    assert isinstance(model, OpenAIModel)
    assert isinstance(model, Model)
    assert model.name == "openai:gpt-4.1-mini"
    server.reply(openai_completion(text="hi"))
    try:
        assert (await model.request(ask())).text == "hi"
    finally:
        await model.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert server.requests[0].body["model"] == "gpt-4.1-mini"


async def test_registry_openai_compatible(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    spec = f"openai-compatible:{server.url}/v1#my-model"
    model = infer_model(spec)
    assert isinstance(model, OpenAIModel)
    assert model.name == spec
    server.reply(openai_completion(text="hi", model="my-model"))
    try:
        response = await model.request(ask())
    finally:
        await model.aclose()
    assert response.model == "my-model"
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].body["model"] == "my-model"
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_registry_openai_compatible_key_from_env(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "local-secret-key")
    model = infer_model(f"openai-compatible:{server.url}/v1#my-model")
    server.reply(openai_completion(text="hi"))
    try:
        await model.request(ask())
    finally:
        await model.aclose()  # type: ignore[attr-defined]
    assert server.requests[0].headers["authorization"] == "Bearer local-secret-key"


@pytest.mark.parametrize(
    "spec", ["openai-compatible:http://localhost:11434/v1", "openai-compatible:http://x/v1#"]
)
def test_registry_openai_compatible_needs_a_model(spec: str) -> None:
    with pytest.raises(ModelNotFound, match="#<model>"):
        infer_model(spec)


async def test_blocked_requests_reach_no_server(server: FakeServer, model: OpenAIModel) -> None:
    previous = GATE.allowed
    GATE.allowed = False
    try:
        with pytest.raises(ModelRequestsBlocked, match=r"openai:gpt-4\.1-mini"):
            await model.request(ask())
        with pytest.raises(ModelRequestsBlocked):
            await collect(model, ask())
    finally:
        GATE.allowed = previous
    assert server.requests == []


async def test_client_is_created_lazily_and_reopened_after_close(
    server: FakeServer, model: OpenAIModel
) -> None:
    # A private probe: that no SDK client exists before the first request shows
    # nowhere in the model's public behaviour.
    assert model._client is None
    server.reply(openai_completion(text="one"), openai_completion(text="two"))
    assert (await model.request(ask())).text == "one"
    await model.aclose()
    await model.aclose()  # idempotent
    assert (await model.request(ask())).text == "two"


async def test_a_given_client_is_not_closed(server: FakeServer) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    server.reply(openai_completion(text="hi"))
    model = OpenAIModel("m", client=client)
    await model.request(ask())
    await model.aclose()
    assert not client.is_closed()
    await client.close()


def test_reply_shape_is_what_the_sdk_parses() -> None:
    # Guard the fake itself: its payloads validate against the SDK's own types.
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    reply = openai_completion(text="x", tool_calls=[("c", "f", "{}")])
    ChatCompletion.model_validate(reply.body)
    stream: Reply = openai_stream(text=["a"], tool_calls=[("c", "f", ["{", "}"])])
    assert stream.frames is not None
    for frame in stream.frames[:-1]:
        ChatCompletionChunk.model_validate(json.loads(frame.removeprefix("data: ")))
    assert stream.frames[-1] == "data: [DONE]\n\n"
