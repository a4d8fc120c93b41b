"""Fault injection in `orchestrion.testing`: `Faults` schedules, `FaultyModel`,
`faulty_tool`, and each fault kind end to end through a real runtime."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrion import (
    Agent,
    ModelError,
    ModelRequest,
    ModelResponse,
    Policy,
    Retry,
    RetryLater,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    Tool,
    ToolCall,
    Usage,
    UserError,
    tool,
)
from orchestrion._json import dumps_str
from orchestrion.engine.store import open_store
from orchestrion.messages import TextDelta, ToolCallDelta, ToolResult, UserMessage
from orchestrion.models.base import Model
from orchestrion.policy import is_transient, retry_after
from orchestrion.testing import (
    ConnectionReset,
    Fault,
    Faults,
    FaultyModel,
    FunctionModel,
    Hang,
    Latency,
    Malformed,
    RateLimited,
    ScriptedModel,
    ServerError,
    ServiceError,
    TimedOut,
    call,
    faulty_tool,
)
from orchestrion.testing.faults import DEFAULT_KINDS

REQUEST = ModelRequest(instructions=None, messages=(UserMessage("hi"),))
FAST = Retry(attempts=3, initial=0.001, jitter=0)

EVERY_KIND: list[Fault] = [
    Latency(0.001),
    Hang(),
    TimedOut(),
    RateLimited(0.001),
    ServerError(503),
    ConnectionReset(),
    Malformed(),
]
KIND_IDS = ["latency", "hang", "timeout", "429", "503", "reset", "malformed"]


def ping() -> str:
    return "pong"


def answering(text: str = "done", *, name: str = "main") -> FunctionModel:
    return FunctionModel(lambda request: text, name=name)


@dataclass
class Deps:
    user: str
    ledger: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FakeContext:
    """Just enough of a `RunContext` to call a tool function directly."""

    deps: Deps
    run_id: str = "run-1"
    key: str = "a/turn-1/tool/record#c1"


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    rt = Runtime(open_store("memory://"))
    yield rt
    await rt.close()


# -- Faults.script -------------------------------------------------------------------


def test_script_gives_the_nth_call_the_nth_fault_then_none() -> None:
    script: list[Fault | None] = [ServerError(500), None, TimedOut(), None, Malformed()]
    faults = Faults.script(script)
    assert faults.calls == 0 and faults.injected == []
    got = [faults.next() for _ in range(8)]
    assert got == [ServerError(500), None, TimedOut(), None, Malformed(), None, None, None]
    assert faults.calls == 8
    assert faults.injected == [ServerError(500), TimedOut(), Malformed()]


def test_an_empty_script_never_injects() -> None:
    faults = Faults.script([])
    assert [faults.next() for _ in range(3)] == [None, None, None]
    assert faults.calls == 3 and faults.injected == []


def test_script_takes_any_iterable_and_copies_it() -> None:
    script: list[Fault | None] = [ConnectionReset(), RateLimited(2.0)]
    first = Faults.script(script)
    second = Faults.script(script)
    from_generator = Faults.script(f for f in script)
    assert [first.next(), first.next(), first.next()] == [ConnectionReset(), RateLimited(2.0), None]
    # Consuming one schedule leaves the list and the other schedules alone.
    assert script == [ConnectionReset(), RateLimited(2.0)]
    assert second.next() == ConnectionReset()
    assert [from_generator.next(), from_generator.next()] == [ConnectionReset(), RateLimited(2.0)]


def test_faults_from_any_picker_keeps_the_books() -> None:
    picks = iter([None, Hang(), None])
    faults = Faults(lambda: next(picks))
    assert [faults.next(), faults.next(), faults.next()] == [None, Hang(), None]
    assert faults.calls == 3 and faults.injected == [Hang()]


def test_fault_defaults() -> None:
    assert Latency() == Latency(0.05)
    assert RateLimited() == RateLimited(1.0)
    assert ServerError() == ServerError(503)
    assert Hang() == Hang() and hash(TimedOut()) == hash(TimedOut())


# -- Faults.rate ---------------------------------------------------------------------


def draw(faults: Faults, n: int) -> list[Fault | None]:
    return [faults.next() for _ in range(n)]


def test_rate_with_the_same_seed_gives_the_same_sequence() -> None:
    a = draw(Faults.rate(0.3, seed=42), 500)
    b = draw(Faults.rate(0.3, seed=42), 500)
    assert a == b
    assert any(f is not None for f in a) and any(f is None for f in a)
    assert draw(Faults.rate(0.3, seed=43), 500) != a


def test_rate_defaults_to_a_fixed_seed() -> None:
    assert draw(Faults.rate(0.5), 200) == draw(Faults.rate(0.5, seed=0), 200)


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5, 0.9])
def test_the_observed_rate_is_close_to_the_rate(rate: float) -> None:
    faults = Faults.rate(rate, seed=7)
    got = draw(faults, 2000)
    observed = sum(f is not None for f in got) / 2000
    assert observed == pytest.approx(rate, abs=0.03)
    assert faults.calls == 2000
    assert faults.injected == [f for f in got if f is not None]


def test_rate_zero_never_and_rate_one_always_injects() -> None:
    never = Faults.rate(0.0, seed=1)
    assert draw(never, 300) == [None] * 300 and never.injected == []
    always = Faults.rate(1.0, seed=1)
    assert all(f is not None for f in draw(always, 300))
    assert len(always.injected) == 300


def test_rate_injects_every_default_kind_but_never_hang() -> None:
    faults = Faults.rate(1.0, seed=3)
    draw(faults, 2000)
    assert set(faults.injected) == set(DEFAULT_KINDS)
    assert not any(isinstance(f, Hang) for f in faults.injected)
    # Picked uniformly: each of the six kinds is about a sixth of the faults.
    for count in Counter(faults.injected).values():
        assert count / 2000 == pytest.approx(1 / len(DEFAULT_KINDS), abs=0.04)


def test_kinds_restricts_what_is_injected() -> None:
    kinds = [ServerError(500), RateLimited(0.5)]
    faults = Faults.rate(0.5, seed=11, kinds=kinds)
    draw(faults, 1000)
    assert set(faults.injected) == set(kinds)
    only = Faults.rate(1.0, seed=11, kinds=[Hang()])
    assert draw(only, 5) == [Hang()] * 5


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_a_rate_outside_zero_to_one_is_a_user_error(rate: float) -> None:
    with pytest.raises(UserError, match="rate must be in"):
        Faults.rate(rate)


def test_no_kinds_is_a_user_error() -> None:
    with pytest.raises(UserError, match="kinds"):
        Faults.rate(0.5, kinds=[])
    with pytest.raises(UserError):
        Faults.rate(0.5, kinds=())


# -- FaultyModel -----------------------------------------------------------------


def test_faulty_model_is_a_model_named_as_the_inner_one() -> None:
    inner = answering(name="gpt")
    model = FaultyModel(inner, Faults.script([]))
    assert model.name == "test:gpt" == inner.name
    assert isinstance(model, Model)
    assert model.model is inner


async def test_no_fault_answers_the_inner_response() -> None:
    inner = answering("hello")
    faults = Faults.script([None])
    response = await FaultyModel(inner, faults).request(REQUEST)
    assert response.text == "hello"
    assert inner.requests == [REQUEST]
    assert faults.calls == 1 and faults.injected == []


@dataclass(frozen=True)
class Expected:
    status_code: int | None
    retry_after: float | None
    transient: bool
    text: str


MODEL_ERRORS = [
    (RateLimited(2.5), Expected(429, 2.5, True, "HTTP 429")),
    (ServerError(503), Expected(503, None, True, "HTTP 503")),
    (ServerError(500), Expected(500, None, True, "HTTP 500")),
    (ServerError(408), Expected(408, None, True, "HTTP 408")),
    (ServerError(400), Expected(400, None, False, "HTTP 400")),
    (ServerError(401), Expected(401, None, False, "HTTP 401")),
    (TimedOut(), Expected(None, None, True, "timed out")),
    (ConnectionReset(), Expected(None, None, True, "connection reset")),
]


@pytest.mark.parametrize(
    ("fault", "expected"),
    MODEL_ERRORS,
    ids=["429", "503", "500", "408", "400", "401", "timeout", "reset"],
)
async def test_each_model_fault_raises_a_model_error_like_a_provider(
    fault: Fault, expected: Expected
) -> None:
    inner = answering(name="main")
    faults = Faults.script([fault])
    model = FaultyModel(inner, faults)
    with pytest.raises(ModelError) as info:
        await model.request(REQUEST)
    exc = info.value
    assert exc.status_code == expected.status_code
    assert exc.retry_after == expected.retry_after
    assert exc.transient is expected.transient
    assert is_transient(exc) is expected.transient
    assert retry_after(exc) == expected.retry_after
    message = str(exc)
    assert message.startswith("test:main: ") and expected.text in message
    assert "(injected)" in message
    assert inner.requests == []  # the fault came before the call: the model never saw it
    assert faults.injected == [fault]
    # The next call is past the script: the model answers.
    assert (await model.request(REQUEST)).text == "done"
    assert inner.requests == [REQUEST]


async def test_latency_delays_then_answers_the_inner_response() -> None:
    inner = FunctionModel(lambda request: call("lookup", {"account": "savings"}, id="c1"))
    model = FaultyModel(inner, Faults.script([Latency(0.01)]))
    task = asyncio.create_task(model.request(REQUEST))
    await asyncio.sleep(0)
    assert not task.done()  # still waiting out its latency
    response = await task
    assert response.tool_calls == (ToolCall("c1", "lookup", '{"account":"savings"}'),)
    assert inner.requests == [REQUEST]


async def test_hang_never_answers() -> None:
    inner = answering()
    faults = Faults.script([Hang()])
    model = FaultyModel(inner, faults)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(model.request(REQUEST), 0.05)
    assert inner.requests == []
    assert faults.injected == [Hang()]
    assert (await model.request(REQUEST)).text == "done"


async def test_malformed_truncates_the_first_tool_calls_arguments_only() -> None:
    original = ModelResponse(
        text="calling",
        tool_calls=(
            ToolCall("c1", "lookup", '{"account": "savings", "currency": "EUR"}'),
            ToolCall("c2", "lookup", '{"account": "checking"}'),
        ),
        usage=Usage(10, 5, 1),
        finish_reason="tool_calls",
        model="provider-model",
    )
    inner = FunctionModel(lambda request: original)
    response = await FaultyModel(inner, Faults.script([Malformed()])).request(REQUEST)
    first, second = response.tool_calls
    assert (first.id, first.name) == ("c1", "lookup")
    assert original.tool_calls[0].arguments.startswith(first.arguments)
    assert 0 < len(first.arguments) < len(original.tool_calls[0].arguments)
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.arguments)
    assert second == original.tool_calls[1]
    # Everything else is the inner response's.
    assert response.text == "calling"
    assert response.usage == Usage(10, 5, 1)
    assert (response.finish_reason, response.model) == ("tool_calls", "provider-model")
    assert inner.requests == [REQUEST]  # it needs the real answer to break it


async def test_malformed_tool_arguments_fail_validation() -> None:
    @tool
    def lookup(account: str) -> str:
        return account

    inner = FunctionModel(lambda request: call("lookup", {"account": "savings"}))
    response = await FaultyModel(inner, Faults.script([Malformed()])).request(REQUEST)
    with pytest.raises(ValueError):  # pydantic.ValidationError is a ValueError
        lookup.parse_arguments(response.tool_calls[0].arguments)


@pytest.mark.parametrize("text", ["The balance is one hundred euros.", ""])
async def test_malformed_text_only_answer_is_a_transient_model_error(text: str) -> None:
    inner = FunctionModel(lambda request: ModelResponse(text=text or None))
    with pytest.raises(ModelError, match=r"not valid JSON \(injected\)") as info:
        await FaultyModel(inner, Faults.script([Malformed()])).request(REQUEST)
    exc = info.value
    assert exc.transient is True and is_transient(exc)
    assert exc.status_code is None and exc.retry_after is None
    assert str(exc).startswith("test:function: ")
    assert repr(text[:20]) in str(exc)
    assert inner.requests == [REQUEST]


async def test_stream_ends_with_the_full_response() -> None:
    inner = FunctionModel(
        lambda request: ModelResponse(
            text="two words", tool_calls=(ToolCall("c1", "f", '{"a":1}'),)
        )
    )
    model = FaultyModel(inner, Faults.script([Latency(0.001)]))
    items = [item async for item in model.stream(REQUEST)]
    assert items[:-1] == [
        TextDelta("two"),
        TextDelta(" words"),
        ToolCallDelta(0, "c1", "f", '{"a":1}'),
    ]
    final = items[-1]
    assert isinstance(final, ModelResponse)
    assert final == await inner.request(REQUEST)


async def test_stream_raises_the_fault_before_any_item() -> None:
    inner = answering()
    model = FaultyModel(inner, Faults.script([ServerError(502)]))
    items: list[Any] = []
    with pytest.raises(ModelError) as info:
        async for item in model.stream(REQUEST):
            items.append(item)
    assert items == [] and info.value.status_code == 502
    assert inner.requests == []


async def test_stream_of_a_malformed_tool_call_ends_with_the_broken_response() -> None:
    inner = FunctionModel(lambda request: call("f", {"account": "savings"}, id="c1"))
    items = [
        item async for item in FaultyModel(inner, Faults.script([Malformed()])).stream(REQUEST)
    ]
    [delta, final] = items
    assert isinstance(final, ModelResponse)
    assert isinstance(delta, ToolCallDelta) and delta.arguments == final.tool_calls[0].arguments
    assert final.tool_calls[0].arguments == '{"account":"savings"}'[:10]


async def test_a_rate_schedule_drives_a_model_deterministically() -> None:
    async def outcomes() -> list[str]:
        model = FaultyModel(answering(), Faults.rate(0.5, seed=5, kinds=[ServerError(503)]))
        seen: list[str] = []
        for _ in range(40):
            try:
                seen.append((await model.request(REQUEST)).text or "")
            except ModelError as exc:
                seen.append(str(exc.status_code))
        return seen

    first = await outcomes()
    assert first == await outcomes()
    assert set(first) == {"done", "503"}


# -- faulty_tool -------------------------------------------------------------------


def test_faulty_tool_keeps_the_tools_definition() -> None:
    policy = Policy(retry=Retry(attempts=4, initial=0.001))

    def big(arguments: dict[str, Any]) -> bool:
        return bool(arguments["amount"] > 100)

    @tool(name="pay_invoice", effect="write", approval=big, policy=policy)
    async def pay(invoice: str, amount: float = 0.0) -> str:
        """Pay an invoice.

        Args:
            invoice: The invoice number.
            amount: How much to pay.
        """
        return f"paid {invoice}"

    faulty = faulty_tool(pay, Faults.script([]))
    assert isinstance(faulty, Tool)
    assert faulty.name == "pay_invoice"
    assert faulty.description == pay.description == "Pay an invoice."
    assert faulty.parameters == pay.parameters
    assert faulty.parameters["properties"]["invoice"]["description"] == "The invoice number."
    assert faulty.definition() == pay.definition()
    assert faulty.effect == "write"
    assert faulty.approval is big and faulty.needs_approval({"amount": 500})
    assert faulty.policy is policy
    assert faulty.parse_arguments('{"invoice": "A1"}') == {"invoice": "A1", "amount": 0.0}
    assert faulty.takes_context is False and faulty.is_async is True
    assert faulty.function is not pay.function
    assert pay.function.__name__ == "pay"  # the original tool is unchanged


def test_faulty_tool_keeps_timeout_and_local() -> None:
    @tool(timeout=2.5)
    def slow() -> str:
        return "ok"

    local = Tool(function=ping, name="bus", local=True)
    assert faulty_tool(slow, Faults.script([])).timeout == 2.5
    assert faulty_tool(local, Faults.script([])).local is True


async def test_faulty_tool_accepts_a_plain_function() -> None:
    async def lookup(account: str) -> str:
        """Look an account up."""
        return f"{account}: 100"

    faulty = faulty_tool(lookup, Faults.script([]))
    assert faulty.name == "lookup" and faulty.description == "Look an account up."
    assert faulty.parameters == Tool(function=lookup).parameters
    assert await faulty(account="savings") == "savings: 100"


async def test_faulty_tool_passes_the_context_through() -> None:
    @tool
    async def record(ctx: RunContext[Deps], entry: str) -> str:
        ctx.deps.ledger.append(f"{ctx.deps.user}:{entry}")
        return "recorded"

    faulty = faulty_tool(record, Faults.script([Latency(0.001)]))
    assert faulty.takes_context is True
    assert faulty.parameters == record.parameters
    assert "ctx" not in faulty.parameters["properties"]
    deps = Deps(user="Ada")
    assert await faulty(FakeContext(deps), entry="coffee") == "recorded"
    assert deps.ledger == ["Ada:coffee"]


async def test_a_sync_tool_still_runs_off_the_event_loop() -> None:
    threads: list[int] = []

    @tool
    def lookup(account: str) -> str:
        threads.append(threading.get_ident())
        return f"{account}: 100"

    assert lookup.is_async is False
    faulty = faulty_tool(lookup, Faults.script([None, Latency(0.001)]))
    assert await faulty(account="savings") == "savings: 100"
    assert await faulty(account="checking") == "checking: 100"
    assert len(threads) == 2
    assert threading.get_ident() not in threads


TOOL_ERRORS: list[tuple[Fault, type[BaseException], str]] = [
    (TimedOut(), TimeoutError, "read timed out"),
    (RateLimited(2.5), RetryLater, "HTTP 429"),
    (ServerError(503), ServiceError, "HTTP 503"),
    (ConnectionReset(), ConnectionResetError, "connection reset"),
]


@pytest.mark.parametrize(
    ("fault", "error", "text"), TOOL_ERRORS, ids=["timeout", "429", "503", "reset"]
)
async def test_each_tool_fault_raises_what_a_client_library_would(
    fault: Fault, error: type[BaseException], text: str
) -> None:
    calls: list[str] = []

    @tool
    async def lookup(account: str) -> str:
        calls.append(account)
        return f"{account}: 100"

    faults = Faults.script([fault])
    faulty = faulty_tool(lookup, faults)
    with pytest.raises(error) as info:
        await faulty(account="savings")
    exc = info.value
    assert type(exc) is error
    message = str(exc)
    assert message.startswith("lookup: ") and text in message and "(injected)" in message
    assert is_transient(exc) is True
    assert calls == []  # the tool's function never ran
    assert faults.injected == [fault]
    assert await faulty(account="savings") == "savings: 100"
    assert calls == ["savings"]


async def test_a_rate_limited_tool_carries_retry_after() -> None:
    faulty = faulty_tool(ping, Faults.script([RateLimited(2.5)]))
    with pytest.raises(RetryLater) as info:
        await faulty()
    assert retry_after(info.value) == 2.5
    assert info.value.retry_after == 2.5


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (503, True), (429, True), (400, False), (401, False), (404, False)],
)
async def test_a_service_error_carries_its_status(status: int, transient: bool) -> None:
    faulty = faulty_tool(ping, Faults.script([ServerError(status)]))
    with pytest.raises(ServiceError) as info:
        await faulty()
    assert info.value.status_code == status
    assert is_transient(info.value) is transient
    assert retry_after(info.value) is None


def test_service_error_is_a_plain_exception_with_a_status() -> None:
    exc = ServiceError("payments: HTTP 400", 400)
    assert isinstance(exc, Exception) and str(exc) == "payments: HTTP 400"
    assert exc.status_code == 400
    assert is_transient(exc) is False
    assert is_transient(ServiceError("x", 502)) is True


async def test_tool_latency_delays_then_runs_the_tool() -> None:
    calls: list[str] = []

    async def lookup(account: str) -> str:
        calls.append(account)
        return f"{account}: 100"

    faulty = faulty_tool(lookup, Faults.script([Latency(0.01)]))
    task = asyncio.create_task(faulty(account="savings"))
    await asyncio.sleep(0)
    assert not task.done() and calls == []
    assert await task == "savings: 100"
    assert calls == ["savings"]


async def test_a_hanging_tool_never_returns() -> None:
    calls: list[str] = []

    async def lookup(account: str) -> str:
        calls.append(account)
        return "ok"

    faulty = faulty_tool(lookup, Faults.script([Hang()]))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(faulty(account="savings"), 0.05)
    assert calls == []


async def test_a_malformed_tool_result_is_not_json() -> None:
    calls: list[str] = []

    async def lookup(account: str) -> dict[str, int]:
        calls.append(account)
        return {"balance": 100}

    faulty = faulty_tool(lookup, Faults.script([Malformed()]))
    value = await faulty(account="savings")
    assert value != {"balance": 100}
    with pytest.raises(TypeError):
        dumps_str(value)
    with pytest.raises(TypeError):
        json.dumps(value)
    assert "(injected)" in repr(value)
    assert calls == []
    assert await faulty(account="savings") == {"balance": 100}


# -- end to end through a runtime --------------------------------------------------


def lookup_tool(calls: list[str]) -> Tool:
    @tool
    async def lookup(account: str) -> str:
        """Balance of an account."""
        calls.append(account)
        return f"{account}: 100"

    return lookup


async def failed_attempts(runtime: Runtime, run_id: str, key: str) -> list[Any]:
    entries = await runtime.store.load(run_id)
    return [e.result for e in entries if e.key == key and e.status is StepStatus.FAILED]


def tool_results(request: ModelRequest) -> list[ToolResult]:
    return [m for m in request.messages if isinstance(m, ToolResult)]


@pytest.mark.parametrize(
    "fault",
    [Latency(0.001), Hang(), TimedOut(), RateLimited(0.001), ServerError(503), ConnectionReset()],
    ids=["latency", "hang", "timeout", "429", "503", "reset"],
)
async def test_a_run_recovers_from_each_tool_fault(runtime: Runtime, fault: Fault) -> None:
    calls: list[str] = []
    faults = Faults.script([fault])
    lookup = faulty_tool(lookup_tool(calls), faults)
    model = ScriptedModel([call("lookup", {"account": "savings"}, id="c1"), "Savings: 100."])
    policy = Policy(retry=FAST, timeout=0.05 if isinstance(fault, Hang) else None)
    agent = Agent(name="a", model=model, tools=[lookup], policy=policy)
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.COMPLETED
    assert result.output == "Savings: 100."
    model.assert_complete()
    assert calls == ["savings"]  # ran once: on the retry, or after the latency
    assert faults.calls == (1 if isinstance(fault, Latency) else 2)
    [told] = tool_results(model.requests[1])
    assert (told.content, told.is_error) == ("savings: 100", False)
    attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/tool/lookup#c1")
    if isinstance(fault, Latency):
        assert attempts == []
    else:
        [attempt] = attempts
        assert attempt["attempt"] == 1 and "retry_in" in attempt


async def test_a_non_transient_tool_fault_is_not_retried(runtime: Runtime) -> None:
    calls: list[str] = []
    lookup = faulty_tool(lookup_tool(calls), Faults.script([ServerError(400)]))
    model = ScriptedModel([call("lookup", {"account": "savings"}, id="c1"), "unused"])
    agent = Agent(name="a", model=model, tools=[lookup], policy=Policy(retry=FAST))
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert (
        "ServiceError" in result.error["message"]
        and "HTTP 400 (injected)" in result.error["message"]
    )
    assert calls == []
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/tool/lookup#c1")
    assert "retry_in" not in attempt


async def test_a_malformed_tool_result_fails_the_run(runtime: Runtime) -> None:
    calls: list[str] = []
    lookup = faulty_tool(lookup_tool(calls), Faults.script([Malformed()]))
    model = ScriptedModel([call("lookup", {"account": "savings"}, id="c1"), "unused"])
    agent = Agent(name="a", model=model, tools=[lookup], policy=Policy(retry=FAST))
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "returned a _NotJSON, which is not JSON" in result.error["message"]
    assert calls == []


async def test_a_context_tool_recovers_through_the_runtime(runtime: Runtime) -> None:
    keys: list[str] = []

    @tool
    def record(ctx: RunContext[Deps], entry: str) -> str:
        ctx.deps.ledger.append(f"{ctx.deps.user}:{entry}")
        keys.append(ctx.key)
        return "recorded"

    faulty = faulty_tool(record, Faults.script([ConnectionReset()]))
    deps = Deps(user="Ada")
    model = ScriptedModel([call("record", {"entry": "coffee"}, id="c9"), "done"])
    agent = Agent(name="acct", model=model, tools=[faulty], policy=Policy(retry=FAST))
    result = await runtime.run(agent, "go", deps=deps)
    assert result.output == "done"
    assert deps.ledger == ["Ada:coffee"]
    assert keys == ["acct/turn-1/tool/record#c9"]


@pytest.mark.parametrize("fault", EVERY_KIND, ids=KIND_IDS)
async def test_a_run_recovers_from_each_model_fault(runtime: Runtime, fault: Fault) -> None:
    calls: list[str] = []
    inner = ScriptedModel([call("lookup", {"account": "savings"}, id="c1"), "Savings: 100."])
    faults = Faults.script([fault])
    model = FaultyModel(inner, faults)
    policy = Policy(retry=FAST, timeout=0.05 if isinstance(fault, Hang) else None)
    agent = Agent(name="a", model=model, tools=[lookup_tool(calls)], policy=policy)
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.COMPLETED
    assert result.output == "Savings: 100."
    inner.assert_complete()
    assert faults.injected == [fault]
    if isinstance(fault, Malformed):
        # The broken arguments went back to the model as an error; the script's
        # answer to that was the final text, so the tool never ran.
        assert calls == []
        [told] = tool_results(inner.requests[1])
        assert told.is_error and "not valid JSON" in told.content
    else:
        assert calls == ["savings"]
        attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
        assert len(attempts) == (0 if isinstance(fault, Latency) else 1)


async def test_malformed_breaks_even_empty_arguments() -> None:
    from orchestrion.messages import ModelResponse as Response
    from orchestrion.messages import ToolCall as Call

    inner = ScriptedModel([Response(tool_calls=(Call("c1", "ping", ""),))])
    model = FaultyModel(inner, Faults.script([Malformed()]))
    response = await model.request(ModelRequest(None, ()))
    assert response.tool_calls[0].arguments == "{"
