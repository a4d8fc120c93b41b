"""The agent loop: model requests, tool calls, typed output, limits and failures."""

import asyncio
from dataclasses import dataclass, field
from typing import Literal

import pydantic
import pytest

from orchestrion import (
    Agent,
    ModelResponse,
    ModelRetry,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    ToolCall,
    Usage,
    UserError,
    tool,
)
from orchestrion.agent import FINAL_RESULT_TOOL
from orchestrion.errors import RunFailed
from orchestrion.keys import tool_keys
from orchestrion.messages import ToolResult, UserMessage
from orchestrion.testing import ScriptedModel, call

from ._support import last_tool_result, tool_results, user_messages


class Invoice(pydantic.BaseModel):
    total: float
    currency: Literal["EUR", "USD"]


@tool
async def get_balance(account: str) -> float:
    """Current balance of an account.

    Args:
        account: "savings" or "checking".
    """
    return {"savings": 100.0, "checking": 25.5}[account]


# -- plain answers and tool calls ------------------------------------------------


async def test_text_answer(runtime: Runtime) -> None:
    model = ScriptedModel(["Hello there."])
    agent = Agent(name="greeter", instructions="Be brief.", model=model)
    result = await runtime.run(agent, "Hi")
    assert result.status == RunStatus.COMPLETED
    assert result.output == "Hello there."
    assert result.error is None and result.interrupts == ()
    model.assert_complete()
    [request] = model.requests
    assert request.instructions == "Be brief."
    assert request.messages == (UserMessage("Hi"),)
    assert request.tools == ()
    record = await runtime.get(result.run_id)
    assert record.status == RunStatus.COMPLETED
    assert record.output == "Hello there."
    assert record.name == "greeter"
    assert record.input == "Hi"


async def test_structured_input_is_sent_as_json(runtime: Runtime) -> None:
    model = ScriptedModel(["ok"])
    await runtime.run(Agent(name="a", model=model), {"city": "Paris", "days": 3})
    [message] = model.requests[0].messages
    assert isinstance(message, UserMessage)
    assert pydantic.TypeAdapter(dict).validate_json(message.content) == {"city": "Paris", "days": 3}


async def test_tool_calls_then_answer(runtime: Runtime) -> None:
    model = ScriptedModel(
        [
            call("get_balance", {"account": "savings"}),
            call("get_balance", {"account": "checking"}, id="mine"),
            "Savings 100, checking 25.50.",
        ]
    )
    agent = Agent(name="bank", model=model, tools=[get_balance])
    result = await runtime.run(agent, "Balances?")
    assert result.output == "Savings 100, checking 25.50."
    model.assert_complete()
    assert len(model.requests) == 3
    assert [t.name for t in model.requests[0].tools] == ["get_balance"]

    first_call = model.requests[1].messages[1]
    assert isinstance(first_call, ModelResponse)
    [sent] = first_call.tool_calls
    assert last_tool_result(model.requests[1]) == ToolResult(sent.id, "get_balance", "100.0", False)
    assert last_tool_result(model.requests[2]) == ToolResult("mine", "get_balance", "25.5", False)
    # The conversation grows: user, response, result, response, result.
    assert [type(m).__name__ for m in model.requests[2].messages] == [
        "UserMessage",
        "ModelResponse",
        "ToolResult",
        "ModelResponse",
        "ToolResult",
    ]


async def test_tool_results_that_are_not_strings_are_sent_as_json(runtime: Runtime) -> None:
    @tool
    async def invoice() -> Invoice:
        return Invoice(total=3.5, currency="EUR")

    @tool
    async def numbers() -> list[int]:
        return [1, 2]

    model = ScriptedModel([[call("invoice"), call("numbers")], "ok"])
    await runtime.run(Agent(name="a", model=model, tools=[invoice, numbers]), "go")
    contents = [r.content for r in tool_results(model.requests[1])]
    assert contents == ['{"total":3.5,"currency":"EUR"}', "[1,2]"]


async def test_parallel_tool_calls_run_concurrently(runtime: Runtime) -> None:
    a_started, b_started = asyncio.Event(), asyncio.Event()

    async def rendezvous(mine: asyncio.Event, other: asyncio.Event) -> str:
        mine.set()
        try:
            async with asyncio.timeout(5):
                await other.wait()
        except TimeoutError:
            raise RuntimeError(
                "the other tool never started: calls ran one after the other"
            ) from None
        return "met"

    @tool
    async def tool_a() -> str:
        return await rendezvous(a_started, b_started)

    @tool
    async def tool_b() -> str:
        return await rendezvous(b_started, a_started)

    model = ScriptedModel([[call("tool_a"), call("tool_b")], "both met"])
    result = await runtime.run(Agent(name="par", model=model, tools=[tool_a, tool_b]), "go")
    assert result.status == RunStatus.COMPLETED, result.error
    results = tool_results(model.requests[1])
    assert [(r.name, r.content, r.is_error) for r in results] == [
        ("tool_a", "met", False),
        ("tool_b", "met", False),
    ]
    # Results keep the order of the calls and their ids.
    response = model.requests[1].messages[1]
    assert isinstance(response, ModelResponse)
    assert [r.call_id for r in results] == [c.id for c in response.tool_calls]


# -- typed output ------------------------------------------------------------------


async def test_typed_output_pydantic_model(runtime: Runtime) -> None:
    model = ScriptedModel([call(FINAL_RESULT_TOOL, {"total": 12.5, "currency": "EUR"})])
    agent = Agent(name="extract", model=model, output_type=Invoice)
    result = await runtime.run(agent, "Invoice: 12.50 EUR")
    assert result.output == Invoice(total=12.5, currency="EUR")
    record = await runtime.get(result.run_id)
    assert record.output == {"total": 12.5, "currency": "EUR"}
    [final] = model.requests[0].tools
    assert final.name == FINAL_RESULT_TOOL
    assert final.parameters["properties"]["currency"]["enum"] == ["EUR", "USD"]
    assert sorted(final.parameters["required"]) == ["currency", "total"]


@pytest.mark.parametrize(
    ("output_type", "value", "item_schema"),
    [
        (int, 42, {"type": "integer"}),
        (list[str], ["a", "b"], {"type": "array", "items": {"type": "string"}}),
    ],
)
async def test_typed_output_non_object_is_wrapped_under_result(
    runtime: Runtime, output_type: object, value: object, item_schema: dict[str, object]
) -> None:
    model = ScriptedModel([call(FINAL_RESULT_TOOL, {"result": value})])
    agent = Agent(name="typed", model=model, output_type=output_type)
    assert agent.output_wrapped is True
    result = await runtime.run(agent, "go")
    assert result.output == value
    [final] = model.requests[0].tools
    assert final.parameters == {
        "type": "object",
        "properties": {"result": item_schema},
        "required": ["result"],
    }


async def test_typed_output_from_plain_json_text(runtime: Runtime) -> None:
    model = ScriptedModel(['{"total": 1, "currency": "USD"}'])
    result = await runtime.run(Agent(name="a", model=model, output_type=Invoice), "go")
    assert result.output == Invoice(total=1, currency="USD")


async def test_invalid_typed_output_goes_back_to_the_model_then_is_fixed(runtime: Runtime) -> None:
    model = ScriptedModel(
        [
            call(FINAL_RESULT_TOOL, {"total": "lots", "currency": "EUR"}),
            call(FINAL_RESULT_TOOL, {"total": 7, "currency": "EUR"}),
        ]
    )
    agent = Agent(name="extract", model=model, output_type=Invoice, output_retries=1)
    result = await runtime.run(agent, "go")
    assert result.status == RunStatus.COMPLETED
    assert result.output == Invoice(total=7, currency="EUR")
    feedback = last_tool_result(model.requests[1])
    assert feedback.name == FINAL_RESULT_TOOL
    assert feedback.is_error is True
    assert "total" in feedback.content
    assert "valid number" in feedback.content
    assert "Call final_result again" in feedback.content


async def test_typed_output_text_that_is_not_json_is_sent_back(runtime: Runtime) -> None:
    model = ScriptedModel(
        ["It is 12 euros.", call(FINAL_RESULT_TOOL, {"total": 12, "currency": "EUR"})]
    )
    result = await runtime.run(Agent(name="a", model=model, output_type=Invoice), "go")
    assert result.output == Invoice(total=12, currency="EUR")
    [problem] = user_messages(model.requests[1])[1:]
    assert "not valid JSON" in problem


async def test_typed_output_failing_past_output_retries_fails_the_run(runtime: Runtime) -> None:
    bad = call(FINAL_RESULT_TOOL, {"total": 1, "currency": "GBP"})
    model = ScriptedModel([bad, bad])
    agent = Agent(name="extract", model=model, output_type=Invoice, output_retries=1)
    result = await runtime.run(agent, "go")
    assert result.status == RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "OutputValidationError"
    assert "2 times" in result.error["message"]
    assert "currency" in result.error["message"]
    assert len(model.requests) == 2
    with pytest.raises(RunFailed, match="OutputValidationError") as info:
        _ = result.output
    assert info.value.run_id == result.run_id
    assert info.value.error == result.error
    record = await runtime.get(result.run_id)
    assert record.status == RunStatus.FAILED
    assert record.error == result.error


async def test_output_retries_zero_fails_on_first_invalid_answer(runtime: Runtime) -> None:
    model = ScriptedModel([call(FINAL_RESULT_TOOL, {"result": "x"}), "unused"])
    result = await runtime.run(
        Agent(name="a", model=model, output_type=int, output_retries=0), "go"
    )
    assert result.status == RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "OutputValidationError"
    assert len(model.requests) == 1


def test_typed_output_reserves_the_final_result_tool_name() -> None:
    async def final_result(x: int) -> int:
        return x

    with pytest.raises(UserError, match="'final_result' is reserved"):
        Agent(name="a", tools=[final_result], output_type=int)
    # With plain text output the name is free.
    assert Agent(name="a", tools=[final_result]).tool_map["final_result"].name == "final_result"


# -- limits and failures ---------------------------------------------------------


async def test_max_turns_exceeded_fails_the_run(runtime: Runtime) -> None:
    calls = 0

    @tool
    async def again() -> str:
        nonlocal calls
        calls += 1
        return "keep going"

    model = ScriptedModel([call("again"), call("again"), "never reached"])
    agent = Agent(name="loopy", model=model, tools=[again], max_turns=2)
    result = await runtime.run(agent, "go")
    assert result.status == RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "MaxTurnsExceeded"
    assert "max_turns=2" in result.error["message"]
    assert len(model.requests) == 2
    assert calls == 2
    with pytest.raises(RunFailed):
        _ = result.output


@pytest.mark.parametrize("kwargs", [{"max_turns": 0}, {"output_retries": -1}])
def test_agent_rejects_bad_limits(kwargs: dict[str, int]) -> None:
    with pytest.raises(UserError, match="max_turns must be >= 1"):
        Agent(name="a", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["has space", "", "slash/name", "x" * 65])
def test_agent_rejects_bad_names(name: str) -> None:
    with pytest.raises(UserError, match=r"Agent name .* is invalid"):
        Agent(name=name)


async def test_model_retry_in_a_tool_goes_back_to_the_model(runtime: Runtime) -> None:
    seen: list[str] = []

    @tool
    async def book(date: str) -> str:
        seen.append(date)
        if "-" not in date:
            raise ModelRetry("Use an ISO date like 2025-01-31.")
        return f"booked {date}"

    model = ScriptedModel(
        [call("book", {"date": "next friday"}), call("book", {"date": "2025-01-31"}), "Booked."]
    )
    result = await runtime.run(Agent(name="a", model=model, tools=[book]), "book it")
    assert result.output == "Booked."
    assert seen == ["next friday", "2025-01-31"]
    retry = last_tool_result(model.requests[1])
    assert (retry.content, retry.is_error) == ("Use an ISO date like 2025-01-31.", True)
    assert last_tool_result(model.requests[2]).content == "booked 2025-01-31"
    history = await runtime.history(result.run_id)
    assert history[1].result == {"content": "Use an ISO date like 2025-01-31.", "is_error": True}


async def test_tool_raising_fails_the_run_with_tool_error_and_cause_chain(runtime: Runtime) -> None:
    @tool
    async def transfer(amount: float) -> str:
        try:
            raise ConnectionError("socket closed")
        except ConnectionError as exc:
            raise ValueError("bank is down") from exc

    model = ScriptedModel([call("transfer", {"amount": 5}), "unused"])
    result = await runtime.run(Agent(name="a", model=model, tools=[transfer]), "go")
    assert result.status == RunStatus.FAILED
    error = result.error
    assert error is not None
    assert error["type"] == "ToolError"
    assert "'transfer' raised" in error["message"]
    assert "ValueError: bank is down" in error["message"]
    assert error["cause_chain"] == [
        {"type": "ValueError", "message": "bank is down"},
        {"type": "ConnectionError", "message": "socket closed"},
    ]
    assert len(model.requests) == 1
    history = await runtime.history(result.run_id)
    assert history[-1].kind == "tool"
    assert history[-1].status == StepStatus.FAILED
    assert history[-1].result["type"] == "ToolError"
    assert (await runtime.get(result.run_id)).error == error


async def test_read_tool_timeout_is_reported_to_the_model(runtime: Runtime) -> None:
    @tool(timeout=0.05)
    async def slow_lookup() -> str:
        await asyncio.Event().wait()
        return "never"

    model = ScriptedModel([call("slow_lookup"), "It timed out, sorry."])
    result = await runtime.run(Agent(name="a", model=model, tools=[slow_lookup]), "go")
    assert result.status == RunStatus.COMPLETED
    assert result.output == "It timed out, sorry."
    timeout = last_tool_result(model.requests[1])
    assert timeout.is_error is True
    assert timeout.content == "Tool 'slow_lookup' timed out after 0.05 s."


async def test_write_tool_timeout_fails_the_run(runtime: Runtime) -> None:
    @tool(effect="write", timeout=0.05)
    async def slow_payment() -> str:
        await asyncio.Event().wait()
        return "never"

    model = ScriptedModel([call("slow_payment"), "unused"])
    result = await runtime.run(Agent(name="a", model=model, tools=[slow_payment]), "go")
    assert result.status == RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "WriteUncertain"
    assert "'slow_payment' timed out after 0.05 s" in result.error["message"]
    assert "same idempotency key" in result.error["message"]
    assert result.error["cause_chain"][0]["type"] == "TimeoutError"
    assert len(model.requests) == 1
    step = (await runtime.history(result.run_id))[-1]
    assert (step.kind, step.status) == ("tool", StepStatus.FAILED)


async def test_tool_raising_timeout_error_itself_is_a_tool_error(runtime: Runtime) -> None:
    @tool
    async def upstream() -> str:
        raise TimeoutError("upstream gateway timed out")

    model = ScriptedModel([call("upstream"), "unused"])
    result = await runtime.run(Agent(name="a", model=model, tools=[upstream]), "go")
    assert result.status == RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "ToolError"


async def test_tool_returning_unserialisable_value_fails_with_tool_error(runtime: Runtime) -> None:
    class Opaque:
        pass

    @tool
    async def opaque() -> object:
        return Opaque()

    model = ScriptedModel([call("opaque"), "unused"])
    result = await runtime.run(Agent(name="a", model=model, tools=[opaque]), "go")
    assert result.status == RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "ToolError"


# -- configuration, context, deps, usage -----------------------------------------


async def test_agent_without_model_and_no_default_is_a_user_error(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRION_MODEL", raising=False)
    with pytest.raises(UserError, match=r"Agent 'lonely' has no model.*ORCHESTRION_MODEL"):
        await runtime.run(Agent(name="lonely"), "hi")


async def test_runtime_default_model_is_used(store: object) -> None:
    model = ScriptedModel(["from the default"])
    runtime = Runtime(store, model=model)  # type: ignore[arg-type]
    result = await runtime.run(Agent(name="a"), "hi")
    assert result.output == "from the default"
    assert len(model.requests) == 1


async def test_model_string_resolves_through_the_registry(runtime: Runtime) -> None:
    result = await runtime.run(Agent(name="a", model="test:anything"), "hi")
    assert result.output == "done"


async def test_unknown_model_string_is_a_user_error(runtime: Runtime) -> None:
    with pytest.raises(UserError, match="Unknown model 'nosuch:thing'"):
        await runtime.run(Agent(name="a", model="nosuch:thing"), "hi")


@dataclass
class Deps:
    user: str
    ledger: list[str] = field(default_factory=list)


async def test_instructions_callable_of_the_context(runtime: Runtime) -> None:
    seen_run_ids: list[str] = []

    def instructions(ctx: RunContext[Deps]) -> str:
        seen_run_ids.append(ctx.run_id)
        return f"You serve {ctx.deps.user}."

    model = ScriptedModel(["ok"])
    agent = Agent(name="a", model=model, instructions=instructions)
    result = await runtime.run(agent, "hi", deps=Deps(user="Ada"))
    assert model.requests[0].instructions == "You serve Ada."
    assert seen_run_ids == [result.run_id]


async def test_deps_and_context_reach_a_tool(runtime: Runtime) -> None:
    keys: list[tuple[str, str, str]] = []

    @tool
    async def record(ctx: RunContext[Deps], entry: str) -> str:
        ctx.deps.ledger.append(f"{ctx.deps.user}:{entry}")
        keys.append((ctx.run_id, ctx.key, ctx.idempotency_key))
        return "recorded"

    deps = Deps(user="Ada")
    model = ScriptedModel([call("record", {"entry": "coffee"}, id="c9"), "done"])
    result = await runtime.run(
        Agent(name="acct", model=model, tools=[record]), "go", deps=deps, run_id="run-deps"
    )
    assert result.output == "done"
    assert result.run_id == "run-deps"
    assert deps.ledger == ["Ada:coffee"]
    [(run_id, key, idem)] = keys
    assert run_id == "run-deps"
    assert key == "acct/turn-1/tool/record#c9"
    assert len(idem) == 32 and int(idem, 16) >= 0


async def test_usage_is_summed_over_model_requests(runtime: Runtime) -> None:
    model = ScriptedModel(
        [
            ModelResponse(
                tool_calls=(ToolCall("c1", "get_balance", '{"account": "savings"}'),),
                usage=Usage(10, 5, 1),
            ),
            ModelResponse(text="100", usage=Usage(20, 7, 1)),
        ]
    )
    result = await runtime.run(Agent(name="a", model=model, tools=[get_balance]), "go")
    assert result.output == "100"
    assert result.usage == Usage(30, 12, 2)
    assert result.usage.total_tokens == 42
    assert (await runtime.get(result.run_id)).usage == [30, 12, 2]


async def test_runtime_rejects_non_runnables(runtime: Runtime) -> None:
    with pytest.raises(UserError, match="Cannot run 42"):
        await runtime.run(42, "hi")
    assert await runtime.list() == []


async def test_run_id_is_kept_and_listed(runtime: Runtime) -> None:
    model = ScriptedModel(["one", "two"])
    agent = Agent(name="a", model=model)
    first = await runtime.run(agent, "1", run_id="first")
    second = await runtime.run(agent, "2")
    assert first.run_id == "first"
    assert second.run_id != first.run_id
    listed = {r.id for r in await runtime.list()}
    assert listed == {"first", second.run_id}
    completed = await runtime.list(status=RunStatus.COMPLETED)
    assert {r.id for r in completed} == listed
    assert await runtime.list(status=RunStatus.FAILED) == []


async def test_concurrent_runs_keep_separate_journals(runtime: Runtime) -> None:
    @tool
    async def echo(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    def agent(word: str) -> Agent[str]:
        model = ScriptedModel([call("echo", {"text": word}, id="e"), f"said {word}"])
        return Agent(name="echoer", model=model, tools=[echo])

    words = [f"w{i}" for i in range(8)]
    results = await asyncio.gather(*(runtime.run(agent(w), w, run_id=f"run-{w}") for w in words))
    assert [r.output for r in results] == [f"said {w}" for w in words]
    for w in words:
        steps = await runtime.history(f"run-{w}")
        assert [s.key for s in steps] == [
            "echoer/turn-1/model",
            "echoer/turn-1/tool/echo#e",
            "echoer/turn-2/model",
        ]
        assert steps[1].result == {"content": w.upper(), "is_error": False}


async def test_sync_durability_gives_the_same_journal(store: object) -> None:
    runtime = Runtime(store, durability="sync")  # type: ignore[arg-type]
    model = ScriptedModel([call("get_balance", {"account": "savings"}, id="c"), "100"])
    result = await runtime.run(Agent(name="a", model=model, tools=[get_balance]), "go")
    assert result.output == "100"
    steps = await runtime.history(result.run_id)
    assert [(s.key, s.status) for s in steps] == [
        ("a/turn-1/model", StepStatus.COMPLETED),
        ("a/turn-1/tool/get_balance#c", StepStatus.COMPLETED),
        ("a/turn-2/model", StepStatus.COMPLETED),
    ]


def test_runtime_rejects_unknown_durability() -> None:
    with pytest.raises(UserError, match="durability must be 'sync' or 'async', not 'eventual'"):
        Runtime("memory://", durability="eventual")  # type: ignore[arg-type]


def test_run_sync_for_code_without_an_event_loop() -> None:
    model = ScriptedModel(["sync answer"])
    result = Runtime("memory://").run_sync(Agent(name="a", model=model), "hi")
    assert result.status == RunStatus.COMPLETED
    assert result.output == "sync answer"


@pytest.mark.parametrize("answer", ["42", '{"result": 42}'])
async def test_non_object_output_accepts_the_bare_value_or_the_wrapped_one(
    runtime: Runtime, answer: str
) -> None:
    model = ScriptedModel([answer])
    result = await runtime.run(Agent(name="n", model=model, output_type=int), "count")
    assert result.output == 42
    model.assert_complete()


async def test_tools_asked_for_next_to_the_final_answer_still_run(runtime: Runtime) -> None:
    paid: list[int] = []

    class Summary(pydantic.BaseModel):
        summary: str

    @tool
    def pay(n: int) -> str:
        paid.append(n)
        return "ok"

    model = ScriptedModel([[call("pay", {"n": 5}), call("final_result", {"summary": "paid 5"})]])
    result = await runtime.run(Agent(name="a", model=model, tools=[pay], output_type=Summary), "go")

    assert result.output == Summary(summary="paid 5")
    assert paid == [5]


@pytest.mark.parametrize(
    "calls",
    [
        [ToolCall("b#c", "a", "{}"), ToolCall("c", "a#b", "{}")],
        [ToolCall("x", "a", "{}"), ToolCall("x", "a", "{}"), ToolCall("x~0", "a", "{}")],
        [ToolCall("", "a", "{}"), ToolCall("", "a/../b", "{}")],
    ],
)
async def test_model_chosen_names_and_ids_never_collide_in_step_keys(
    runtime: Runtime, calls: list[ToolCall]
) -> None:
    @tool
    def a() -> str:
        return "ok"

    keys = tool_keys("ag/turn-1", tuple(calls))
    assert len(set(keys)) == len(keys)
    assert all(k.count("/") == 3 for k in keys), "model text adds no path segments"
    model = ScriptedModel([ModelResponse(tool_calls=tuple(calls)), "done"])
    result = await runtime.run(Agent(name="ag", model=model, tools=[a]), "go")
    assert result.output == "done"
