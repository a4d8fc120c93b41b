"""The public fakes in `orchestrion.testing`: ScriptedModel, FunctionModel, TestModel, the gate."""

import asyncio
import datetime
import enum
import importlib.util
from typing import Annotated, Any, Literal

import pydantic
import pytest

from orchestrion import (
    Agent,
    ModelRequest,
    ModelResponse,
    OrchestrionError,
    Policy,
    Retry,
    RunStatus,
    Runtime,
    StepStatus,
    ToolCall,
    Usage,
    tool,
)
from orchestrion.errors import ModelRequestsBlocked
from orchestrion.messages import TextDelta, ToolCallDelta, ToolResult, UserMessage
from orchestrion.testing import (
    FakeModelError,
    FunctionModel,
    ScriptedModel,
    TestModel,
    allow_model_requests,
    call,
    example,
)

from ._support import tool_results

REQUEST = ModelRequest(instructions=None, messages=(UserMessage("hi"),))


# -- call() and ScriptedModel ------------------------------------------------------


def test_call_builds_tool_calls_from_dicts_or_raw_text() -> None:
    assert call("f", {"a": 1}) == ToolCall("", "f", '{"a":1}')
    assert call("f") == ToolCall("", "f", "{}")
    assert call("f", '{"broken', id="x") == ToolCall("x", "f", '{"broken')


async def test_scripted_model_answers_in_order() -> None:
    model = ScriptedModel(
        [
            "first",
            call("f", {"a": 1}),
            [call("g"), call("h", id="mine")],
            ModelResponse(text="verbatim", usage=Usage(1, 2, 1), finish_reason="stop"),
        ],
        name="script",
    )
    assert model.name == "test:script"
    first = await model.request(REQUEST)
    assert (first.text, first.tool_calls, first.finish_reason) == ("first", (), "stop")
    assert first.usage.requests == 1 and first.usage.output_tokens >= 1
    second = await model.request(REQUEST)
    assert second.tool_calls == (ToolCall("call_2_0", "f", '{"a":1}'),)
    assert second.finish_reason == "tool_calls"
    third = await model.request(REQUEST)
    assert [c.id for c in third.tool_calls] == ["call_3_0", "mine"]
    fourth = await model.request(REQUEST)
    assert fourth == ModelResponse(text="verbatim", usage=Usage(1, 2, 1), finish_reason="stop")
    assert model.requests == [REQUEST] * 4
    model.assert_complete()


async def test_scripted_model_assert_complete_lists_unused_items() -> None:
    model = ScriptedModel(["used", "left over", call("never_called")])
    await model.request(REQUEST)
    with pytest.raises(AssertionError, match="2 unused response") as info:
        model.assert_complete()
    assert "left over" in str(info.value)
    assert "never_called" in str(info.value)


async def test_scripted_model_exhausted_script() -> None:
    model = ScriptedModel(["only one"], name="short")
    await model.request(REQUEST)
    with pytest.raises(AssertionError, match="'short' got request #2 but its script is used up"):
        await model.request(REQUEST)


async def test_exhausted_script_inside_a_run_fails_the_test_and_the_run(runtime: Runtime) -> None:
    @tool
    async def noop() -> str:
        return "ok"

    model = ScriptedModel([call("noop")])
    with pytest.raises(AssertionError, match="script is used up"):
        await runtime.run(Agent(name="a", model=model, tools=[noop]), "go", run_id="x")
    record = await runtime.get("x")
    assert record.status == RunStatus.FAILED
    assert record.error is not None and record.error["type"] == "FakeModelError"


async def test_an_exhausted_script_fails_its_step_as_it_is_with_no_retry_or_fallback(
    runtime: Runtime,
) -> None:
    backup = ScriptedModel(["from the backup"], name="backup")
    model = ScriptedModel([], name="empty")
    policy = Policy(retry=Retry(attempts=3, initial=0.001), fallback=[backup])
    with pytest.raises(FakeModelError, match="script is used up") as info:
        await runtime.run(Agent(name="a", model=model, policy=policy), "go", run_id="x")
    assert isinstance(info.value, AssertionError) and isinstance(info.value, OrchestrionError)
    assert len(model.requests) == 1 and backup.requests == []
    [step] = await runtime.history("x")
    assert step.status is StepStatus.FAILED and step.attempts == ()
    assert step.result["type"] == "FakeModelError"


async def test_a_failed_check_in_a_function_models_function_fails_the_test(
    runtime: Runtime,
) -> None:
    def answer(request: ModelRequest) -> str:
        assert len(request.messages) == 99, "the model saw another conversation"
        return "never"

    policy = Policy(retry=Retry(attempts=3, initial=0.001))
    model = FunctionModel(answer)
    with pytest.raises(FakeModelError, match="the model saw another conversation"):
        await runtime.run(Agent(name="a", model=model, policy=policy), "go")
    assert len(model.requests) == 1  # not retried


async def test_an_assertion_error_of_a_real_model_is_a_model_failure_like_any_other(
    runtime: Runtime,
) -> None:
    class Buggy:
        """A provider adapter with a bug: not a test fake, so not the test's verdict."""

        name = "buggy"

        async def request(self, request: ModelRequest) -> ModelResponse:
            raise AssertionError("adapter bug")

    rescue = ScriptedModel(["rescued"], name="rescue")
    policy = Policy(fallback=[rescue])
    result = await runtime.run(Agent(name="a", model=Buggy(), policy=policy), "go")  # type: ignore[arg-type]
    assert result.output == "rescued"
    [step] = await runtime.history(result.run_id)
    [attempt] = step.attempts
    assert attempt["type"] == "ModelError" and "AssertionError: adapter bug" in attempt["message"]


async def test_scripted_model_streams_words_then_the_response() -> None:
    model = ScriptedModel(["one two three", [call("f", {"x": 1}, id="c")]])
    items = [item async for item in model.stream(REQUEST)]
    assert items[:-1] == [TextDelta("one"), TextDelta(" two"), TextDelta(" three")]
    assert isinstance(items[-1], ModelResponse) and items[-1].text == "one two three"
    items = [item async for item in model.stream(REQUEST)]
    assert items[0] == ToolCallDelta(0, "c", "f", '{"x":1}')
    assert isinstance(items[-1], ModelResponse)
    model.assert_complete()


# -- FunctionModel -----------------------------------------------------------------


@tool
async def double(x: int) -> int:
    """Double a number."""
    return 2 * x


def decide(request: ModelRequest) -> Any:
    results = [m for m in request.messages if isinstance(m, ToolResult)]
    if not results:
        return call("double", {"x": 21})
    return f"The answer is {results[-1].content}."


async def decide_async(request: ModelRequest) -> Any:
    await asyncio.sleep(0)
    return decide(request)


@pytest.mark.parametrize("function", [decide, decide_async], ids=["sync", "async"])
async def test_function_model(runtime: Runtime, function: Any) -> None:
    model = FunctionModel(function, name="fn")
    assert model.name == "test:fn"
    result = await runtime.run(Agent(name="a", model=model, tools=[double]), "double 21")
    assert result.output == "The answer is 42."
    assert len(model.requests) == 2
    assert [t.name for t in model.requests[0].tools] == ["double"]
    assert tool_results(model.requests[1])[0].content == "42"


# -- TestModel ---------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    number: int = pydantic.Field(ge=1)


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=3)
    address: Address
    tags: list[str] = []


class Report(pydantic.BaseModel):
    title: str
    score: float
    level: Literal["low", "high"]
    color: Color


async def test_test_model_calls_every_tool_once_with_valid_arguments(runtime: Runtime) -> None:
    received: dict[str, Any] = {}

    @tool
    async def register(person: Person, color: Color, mode: Literal["fast", "slow"]) -> str:
        received["register"] = (person, color, mode)
        return "registered"

    @tool
    async def count(n: Annotated[int, pydantic.Field(gt=0)] = 3, maybe: str | None = None) -> str:
        received["count"] = (n, maybe)
        return "counted"

    @tool
    async def nothing() -> str:
        received["nothing"] = ()
        return "nothing"

    model = TestModel(text="all done")
    agent = Agent(name="t", model=model, tools=[register, count, nothing])
    result = await runtime.run(agent, "go")
    assert result.status == RunStatus.COMPLETED
    assert result.output == "all done"
    assert set(received) == {"register", "count", "nothing"}
    person, color, mode = received["register"]
    assert isinstance(person, Person) and isinstance(person.address, Address)
    assert len(person.name) >= 3 and person.address.number >= 1
    assert color in Color
    assert mode in ("fast", "slow")
    assert len(model.requests) == 2
    results = tool_results(model.requests[1])
    assert [(r.name, r.is_error) for r in results] == [
        ("register", False),
        ("count", False),
        ("nothing", False),
    ]


async def test_test_model_produces_a_valid_typed_output(runtime: Runtime) -> None:
    model = TestModel()
    result = await runtime.run(Agent(name="t", model=model, output_type=Report), "go")
    assert isinstance(result.output, Report)
    assert result.output.level in ("low", "high")
    assert len(model.requests) == 1


@pytest.mark.parametrize("output_type", [int, list[str], Person])
async def test_test_model_typed_output_after_tools(runtime: Runtime, output_type: Any) -> None:
    model = TestModel()
    result = await runtime.run(
        Agent(name="t", model=model, tools=[double], output_type=output_type), "go"
    )
    assert result.status == RunStatus.COMPLETED
    pydantic.TypeAdapter(output_type).validate_python(result.output)
    assert len(model.requests) == 2


async def test_test_model_arguments_for_dates_and_tuples(runtime: Runtime) -> None:
    @tool
    async def schedule(day: datetime.date, at: datetime.datetime, span: tuple[int, int]) -> str:
        return "scheduled"

    model = TestModel()
    await runtime.run(Agent(name="t", model=model, tools=[schedule]), "go")
    [result] = tool_results(model.requests[1])
    assert result.is_error is False, result.content


def test_example_is_valid_for_nested_schemas() -> None:
    schema = pydantic.TypeAdapter(Person).json_schema()
    value = example(schema)
    assert Person.model_validate(value).address.number >= 1
    assert example({"enum": ["b", "a"]}) == "b"
    assert example({"const": 5}) == 5
    assert example({"type": "integer", "exclusiveMinimum": 7}) == 8
    assert example({"anyOf": [{"type": "null"}, {"type": "boolean"}]}) is False


# -- forbidding real model requests ------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("orchestrion.models.openai") is None,
    reason="orchestrion.models.openai does not exist yet: no real provider to block",
)
async def test_forbid_model_requests_blocks_a_provider_but_not_fakes(runtime: Runtime) -> None:
    from orchestrion.models.openai import OpenAIModel

    real = OpenAIModel("x", base_url="http://127.0.0.1:9/v1", api_key="k")
    with pytest.raises(ModelRequestsBlocked, match="forbidden") as info:
        await runtime.run(Agent(name="real", model=real), "hi")
    assert "allow_model_requests" in str(info.value)
    with pytest.raises(ModelRequestsBlocked):
        await real.request(REQUEST)
    with allow_model_requests(False), pytest.raises(ModelRequestsBlocked):
        await real.request(REQUEST)

    fake = ScriptedModel(["fakes still work"])
    result = await runtime.run(Agent(name="fake", model=fake), "hi")
    assert result.output == "fakes still work"
