"""Tool calls under a policy: the tool's own policy over the agent's over the
runtime's; transient failures retried and journaled; write tools retried only
by their own policy, always with the same idempotency key; open breakers tell
the model instead of calling."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestrion import (
    Agent,
    Breaker,
    BreakerChanged,
    Event,
    MemoryBreakers,
    Policy,
    Retry,
    Retrying,
    RetryLater,
    RunContext,
    RunStatus,
    Runtime,
    StepStatus,
    UserError,
    tool,
)
from orchestrion.engine.store import Store, open_store
from orchestrion.testing import (
    ConnectionReset,
    Faults,
    RateLimited,
    ScriptedModel,
    ServerError,
    TimedOut,
    call,
    faulty_tool,
)
from tests.engine._support import Crash, last_tool_result

FAST = Retry(attempts=3, initial=0.001, jitter=0)


async def tool_entries(runtime: Runtime, run_id: str, key: str) -> list[Any]:
    return [e for e in await runtime.store.load(run_id) if e.key == key]


@pytest.mark.parametrize(
    "fault",
    [TimedOut(), RateLimited(0.001), ServerError(502), ConnectionReset()],
    ids=["timeout", "429", "502", "reset"],
)
async def test_a_read_tool_is_retried_under_the_agents_policy(store: Store, fault: Any) -> None:
    calls: list[str] = []

    @tool
    def balance(account: str) -> str:
        calls.append(account)
        return "100"

    model = ScriptedModel([call("balance", {"account": "savings"}, id="c1"), "ok"])
    agent = Agent(
        name="a",
        model=model,
        tools=[faulty_tool(balance, Faults.script([fault]))],
        policy=Policy(retry=FAST),
    )
    events: list[Event] = []
    result = await Runtime(store, sinks=[events.append]).run(agent, "go")
    assert result.output == "ok"
    assert calls == ["savings"]
    assert last_tool_result(model.requests[1]).content == "100"
    key = "a/turn-1/tool/balance#c1"
    entries = await tool_entries(Runtime(store), result.run_id, key)
    assert [e.status for e in entries] == [StepStatus.FAILED, StepStatus.COMPLETED]
    assert entries[0].result["attempt"] == 1 and "retry_in" in entries[0].result
    assert [(e.key, e.kind, e.target) for e in events if isinstance(e, Retrying)] == [
        (key, "tool", "tool:balance")
    ]


async def test_without_a_retry_a_failing_tool_fails_the_run(store: Store) -> None:
    @tool
    def balance() -> str:
        return "100"

    model = ScriptedModel([call("balance"), "unused"])
    flaky = faulty_tool(balance, Faults.script([ConnectionReset()]))
    result = await Runtime(store).run(Agent(name="a", model=model, tools=[flaky]), "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "ToolError"
    assert result.error["cause_chain"][0]["type"] == "ConnectionResetError"


async def test_a_tool_error_that_is_not_transient_is_not_retried(store: Store) -> None:
    calls = 0

    @tool(policy=Policy(retry=FAST))
    def balance() -> str:
        nonlocal calls
        calls += 1
        raise ValueError("account 42 does not exist")

    model = ScriptedModel([call("balance"), "unused"])
    result = await Runtime(store).run(Agent(name="a", model=model, tools=[balance]), "go")
    assert result.status is RunStatus.FAILED
    assert calls == 1


async def test_retry_later_from_a_tool_waits_as_asked(store: Store) -> None:
    attempts = 0

    @tool(policy=Policy(retry=Retry(attempts=2, initial=5.0, max_wait=1.0)))
    def quote() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RetryLater("rate limited", retry_after=0.02)
        return "42"

    events: list[Event] = []
    model = ScriptedModel([call("quote"), "ok"])
    result = await Runtime(store, sinks=[events.append]).run(
        Agent(name="a", model=model, tools=[quote]), "go"
    )
    assert result.output == "ok"
    assert [e.wait for e in events if isinstance(e, Retrying)] == [0.02]


async def test_a_read_tool_inherits_the_timeout_and_a_timed_out_call_is_told(store: Store) -> None:
    @tool
    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    model = ScriptedModel([call("slow"), "gave up"])
    runtime = Runtime(store, policy=Policy(timeout=0.05, retry=False))
    result = await runtime.run(Agent(name="a", model=model, tools=[slow]), "go")
    assert result.output == "gave up"
    assert last_tool_result(model.requests[1]).content == "Tool 'slow' timed out after 0.05 s."


async def test_a_write_tool_takes_no_retry_and_no_timeout_from_outer_policies(
    store: Store,
) -> None:
    attempts = 0

    @tool(effect="write")
    async def pay(amount: int) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.08)  # longer than the runtime's timeout: not its business
        raise ConnectionResetError("reset")

    model = ScriptedModel([call("pay", {"amount": 5}), "unused"])
    runtime = Runtime(store, policy=Policy(timeout=0.02, retry=FAST))
    result = await runtime.run(Agent(name="a", model=model, tools=[pay]), "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "ToolError"
    assert attempts == 1


async def test_a_write_tool_retries_with_its_own_policy_and_the_same_key(store: Store) -> None:
    keys: list[str] = []
    applied: dict[str, int] = {}

    @tool(effect="write", policy=Policy(retry=FAST))
    def pay(ctx: RunContext[Any], amount: int) -> str:
        keys.append(ctx.idempotency_key)
        applied.setdefault(ctx.idempotency_key, amount)  # the bank honours keys
        if len(keys) < 3:
            raise ConnectionResetError("the answer was lost")
        return f"paid {amount}"

    model = ScriptedModel([call("pay", {"amount": 5}, id="p"), "done"])
    result = await Runtime(store).run(Agent(name="a", model=model, tools=[pay]), "go")
    assert result.output == "done"
    assert len(keys) == 3 and len(set(keys)) == 1
    assert applied == {keys[0]: 5}
    entries = await tool_entries(Runtime(store), result.run_id, "a/turn-1/tool/pay#p")
    # Each attempt is journaled as started (durably) before it runs.
    assert [e.status.value for e in entries] == [
        "started",
        "failed",
        "started",
        "failed",
        "started",
        "completed",
    ]


async def test_a_write_tool_that_times_out_for_good_leaves_the_run_uncertain(
    store: Store,
) -> None:
    @tool(effect="write", timeout=0.02, policy=Policy(retry=Retry(attempts=2, initial=0.001)))
    async def pay() -> str:
        await asyncio.Event().wait()
        return "never"

    model = ScriptedModel([call("pay"), "unused"])
    result = await Runtime(store).run(Agent(name="a", model=model, tools=[pay]), "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "WriteUncertain"


async def test_an_open_tool_breaker_tells_the_model_without_calling(store: Store) -> None:
    calls = 0

    @tool(policy=Policy(breaker=Breaker(failures=2, cooldown=60)))
    def search(q: str) -> str:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("search backend down")

    events: list[Event] = []
    runtime = Runtime(store, breakers=MemoryBreakers(), sinks=[events.append])
    for _ in range(2):
        model = ScriptedModel([call("search", {"q": "x"}), "unused"])
        result = await runtime.run(Agent(name="a", model=model, tools=[search]), "go")
        assert result.status is RunStatus.FAILED
    model = ScriptedModel([call("search", {"q": "x"}), "answered without search"])
    result = await runtime.run(Agent(name="a", model=model, tools=[search]), "go")
    assert result.output == "answered without search"
    assert calls == 2
    told = last_tool_result(model.requests[1])
    assert told.is_error and "Tool 'search' is unavailable" in told.content
    assert "circuit for tool:search is open" in told.content
    assert [(e.name, e.new) for e in events if isinstance(e, BreakerChanged)] == [
        ("tool:search", "open")
    ]
    [state] = await runtime.breakers()
    assert (state.name, state.state) == ("tool:search", "open")


def test_a_tool_policy_is_checked_at_definition() -> None:
    def f() -> str:
        return ""

    with pytest.raises(UserError, match="cannot have a fallback"):
        tool(policy=Policy(fallback=["test:x"]))(f)
    with pytest.raises(UserError, match="give the timeout once"):
        tool(timeout=1, policy=Policy(timeout=2))(f)
    with pytest.raises(UserError, match="a timeout must be > 0"):
        Policy(timeout=0)
    with pytest.raises(UserError, match="attempts must be an int >= 1"):
        Retry(attempts=0)
    with pytest.raises(UserError, match="attempts must be an int >= 1"):
        Retry(attempts=2.5)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"Retry\(initial=nan\): give a finite number >= 0"):
        Retry(initial=float("nan"))
    with pytest.raises(UserError, match=r"Policy\(timeout=inf\)"):
        Policy(timeout=float("inf"))
    with pytest.raises(UserError, match=r"Policy\(retry=True\): give a Retry\(...\)"):
        Policy(retry=True)  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"give a list, e.g. fallback=\['test:b'\]"):
        Policy(fallback="test:b")
    with pytest.raises(UserError, match="window must be > 0"):
        Breaker(window=0)
    with pytest.raises(UserError, match="is not a Policy"):
        tool(policy=Retry())(f)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="is not a Policy"):
        Agent(name="a", policy=Breaker())  # type: ignore[arg-type]
    with pytest.raises(UserError, match="give a Policy"):
        Runtime("memory://", policy=Retry())  # type: ignore[arg-type]


async def test_a_resume_continues_a_write_tools_retries_with_the_same_key(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    keys: list[str] = []

    @tool(effect="write", policy=Policy(retry=Retry(attempts=3, initial=0.001, jitter=0)))
    def pay(ctx: RunContext[Any]) -> str:
        keys.append(ctx.idempotency_key)
        if len(keys) < 3:
            raise ConnectionResetError("lost")
        return "paid"

    def crash(event: Event) -> None:
        if isinstance(event, Retrying):
            raise Crash

    model = ScriptedModel([call("pay", id="p"), "done"])
    agent = Agent(name="a", model=model, tools=[pay])
    with pytest.raises(Crash):
        await Runtime(store, sinks=[crash]).run(agent, "go", run_id="r1")
    events: list[Event] = []
    resumed = Runtime(store, sinks=[events.append])
    result = await resumed.resume("r1", runnable=agent)
    assert result.output == "done"
    assert len(keys) == 3 and len(set(keys)) == 1
    # The resume went on with attempt 2 (which failed) and 3, not from 1 again.
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [2]
    await resumed.close()


async def test_a_write_cut_off_during_its_retry_wait_leaves_the_run_uncertain(
    store: Store,
) -> None:
    from orchestrion import Concurrent

    @tool(effect="write", policy=Policy(retry=Retry(attempts=3, initial=5.0, jitter=0)))
    def pay() -> str:
        raise ConnectionResetError("the bank's answer was lost")  # paid or not: unknown

    payer = Agent(name="payer", model=ScriptedModel([call("pay"), "unused"]), tools=[pay])
    fan = Concurrent(name="fan", branches=[payer], min_success=0, timeout=0.1)
    result = await asyncio.wait_for(Runtime(store).run(fan, "go"), timeout=10)
    # Not a quietly failed branch that the run goes on without.
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "WriteUncertain"


async def test_a_sync_write_that_timed_out_is_not_called_again_beside_itself(
    store: Store,
) -> None:
    import threading

    release = threading.Event()
    calls = 0

    @tool(effect="write", timeout=0.05, policy=Policy(retry=FAST))
    def pay() -> str:
        nonlocal calls
        calls += 1
        release.wait(5)  # still running in its thread after the timeout
        return "paid"

    model = ScriptedModel([call("pay"), "unused"])
    result = await Runtime(store).run(Agent(name="a", model=model, tools=[pay]), "go")
    release.set()
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "WriteUncertain"
    assert calls == 1


def test_policy_edges_are_refused_or_safe() -> None:
    from orchestrion.policy import retry_after_header

    with pytest.raises(UserError, match="attempts must be an int"):
        Retry(attempts=True)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="probes must be an int"):
        Breaker(probes=True)  # type: ignore[arg-type]
    huge = Retry(attempts=50, multiplier=1e10, max_wait=3.0, max_time=1e9, jitter=0)
    assert huge.wait(40, None, 0.0, 0.5) == 3.0  # no OverflowError
    assert retry_after_header({"retry-after": "nan"}) is None
    assert retry_after_header({"retry-after": "-5"}) == 0.0

    def f() -> str:
        return ""

    with pytest.raises(UserError, match=r"Tool 'f': timeout=-1 must be a number of seconds > 0"):
        tool(timeout=-1)(f)
