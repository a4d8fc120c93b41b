"""Model calls under a policy: timeouts, retries on transient errors only, fallback
chains, breakers, and all of it journaled so a resume picks up where it was."""

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
    FallbackUsed,
    MemoryBreakers,
    ModelError,
    ModelRequest,
    Policy,
    Retry,
    Retrying,
    RunStatus,
    Runtime,
    StepStatus,
    tool,
    with_policy,
)
from orchestrion.engine.store import Store, open_store
from orchestrion.testing import (
    ConnectionReset,
    Faults,
    FaultyModel,
    FunctionModel,
    Hang,
    Malformed,
    RateLimited,
    ScriptedModel,
    ServerError,
    TimedOut,
    call,
)
from tests.engine._support import Crash, last_tool_result

FAST = Retry(attempts=3, initial=0.001, jitter=0)


def answering(text: str = "done", *, name: str = "main") -> FunctionModel:
    return FunctionModel(lambda request: text, name=name)


async def failed_attempts(runtime: Runtime, run_id: str, key: str) -> list[Any]:
    entries = await runtime.store.load(run_id)
    return [e.result for e in entries if e.key == key and e.status is StepStatus.FAILED]


@pytest.mark.parametrize(
    "fault",
    [ServerError(503), ServerError(500), RateLimited(0.001), ConnectionReset(), TimedOut()],
    ids=["503", "500", "429", "reset", "timeout"],
)
async def test_transient_failures_are_retried_and_journaled(store: Store, fault: Any) -> None:
    inner = answering()
    model = FaultyModel(inner, Faults.script([fault, fault]))
    events: list[Event] = []
    runtime = Runtime(store, policy=Policy(retry=FAST), sinks=[events.append])
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.status is RunStatus.COMPLETED
    assert result.output == "done"
    assert len(inner.requests) == 1  # the two faults never reached the model
    attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all(a["transient"] and a["model"] == "test:main" for a in attempts)
    assert all("retry_in" in a and "fallback" not in a for a in attempts)
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [(r.key, r.kind, r.attempt) for r in retries] == [
        ("a/turn-1/model", "model", 1),
        ("a/turn-1/model", "model", 2),
    ]
    history = await runtime.history(result.run_id)
    assert [(s.key, s.status) for s in history] == [("a/turn-1/model", StepStatus.COMPLETED)]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_never_retried(store: Store, status: int) -> None:
    inner = answering()
    model = FaultyModel(inner, Faults.script([ServerError(status)]))
    runtime = Runtime(store, policy=Policy(retry=Retry(attempts=5, initial=0.001)))
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error["status_code"] == status and result.error["transient"] is False
    assert inner.requests == []
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert attempt["attempt"] == 1 and "retry_in" not in attempt


async def test_an_invalid_final_answer_is_sent_back_not_retried_by_the_policy(store: Store) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        amount: int

    model = ScriptedModel(
        [call("final_result", {"amount": "lots"}), call("final_result", {"amount": 3})]
    )
    runtime = Runtime(store, policy=Policy(retry=Retry(attempts=5, initial=0.001)))
    agent = Agent(name="a", model=model, output_type=Answer)
    result = await runtime.run(agent, "go")
    assert result.output == Answer(amount=3)
    # Two model steps, each answered at its first attempt: validation is the agent's
    # business (output_retries), never the retry policy's.
    entries = await runtime.store.load(result.run_id)
    assert not any(e.status is StepStatus.FAILED for e in entries)
    assert "amount" in last_tool_result(model.requests[1]).content


async def test_the_default_model_policy_retries_three_times_then_fails(store: Store) -> None:
    inner = answering()
    model = FaultyModel(inner, Faults.script([ServerError(503)] * 3))
    # Only the waits are shortened; attempts and transience are the defaults.
    runtime = Runtime(store, policy=Policy(retry=Retry(initial=0.001, jitter=0)))
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.status is RunStatus.FAILED
    attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert "retry_in" not in attempts[-1]
    assert inner.requests == []


async def test_retry_after_is_honoured_and_a_longer_one_gives_up(store: Store) -> None:
    events: list[Event] = []
    model = FaultyModel(answering(), Faults.script([RateLimited(0.05), RateLimited(60.0)]))
    retry = Retry(attempts=5, initial=0.001, max_wait=1.0)
    runtime = Runtime(store, policy=Policy(retry=retry), sinks=[events.append])
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.status is RunStatus.FAILED  # 60 s is over max_wait: no wait, no retry
    assert [e.wait for e in events if isinstance(e, Retrying)] == [0.05]
    assert loop.time() - started >= 0.05
    attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert attempts[0]["retry_after"] == 0.05 and attempts[0]["retry_in"] == 0.05
    assert "retry_in" not in attempts[1]


async def test_a_hanging_model_times_out_then_answers(store: Store) -> None:
    inner = answering()
    model = FaultyModel(inner, Faults.script([Hang()]))
    runtime = Runtime(store, policy=Policy(timeout=0.05, retry=FAST))
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.output == "done"
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert attempt["type"] == "ModelError" and "did not answer within 0.05 s" in attempt["message"]


async def test_malformed_tool_arguments_are_sent_back_to_the_model(store: Store) -> None:
    @tool
    def lookup(account: str) -> str:
        return f"{account}: 100"

    script = ScriptedModel(
        [call("lookup", {"account": "savings"}), call("lookup", {"account": "savings"}), "ok"]
    )
    model = FaultyModel(script, Faults.script([Malformed()]))
    runtime = Runtime(store)
    result = await runtime.run(Agent(name="a", model=model, tools=[lookup]), "go")
    assert result.output == "ok"
    told = last_tool_result(script.requests[1])
    assert told.is_error and "not valid JSON" in told.content


async def test_a_malformed_body_is_transient(store: Store) -> None:
    model = FaultyModel(answering(), Faults.script([Malformed()]))
    runtime = Runtime(store, policy=Policy(retry=FAST))
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.output == "done"


async def test_fallback_model_answers_and_is_recorded(store: Store) -> None:
    primary = FaultyModel(answering(name="primary"), Faults.script([ServerError(503)] * 10))
    backup = answering("from backup", name="backup")
    events: list[Event] = []
    runtime = Runtime(store, sinks=[events.append])
    agent = Agent(
        name="a",
        model=with_policy(
            primary, Policy(retry=Retry(attempts=2, initial=0.001), fallback=[backup])
        ),
    )
    result = await runtime.run(agent, "go")
    assert result.output == "from backup"
    attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert [(a["model"], a["attempt"]) for a in attempts] == [
        ("test:primary", 1),
        ("test:primary", 2),
    ]
    assert attempts[-1]["fallback"] == "test:backup"
    [completed] = [
        e for e in await runtime.store.load(result.run_id) if e.status is StepStatus.COMPLETED
    ]
    assert completed.result["fallback"] == "test:backup"
    [used] = [e for e in events if isinstance(e, FallbackUsed)]
    assert (used.key, used.failed, used.used) == ("a/turn-1/model", "test:primary", "test:backup")
    assert "503" in used.error


async def test_fallback_by_name_on_the_agent_and_runtime_policies(store: Store) -> None:
    primary = FaultyModel(answering(name="primary"), Faults.script([ServerError(500)] * 10))
    runtime = Runtime(
        store, policy=Policy(retry=False, fallback=["test:from-the-runtime"]), model=primary
    )
    result = await runtime.run(Agent(name="a"), "go")
    assert result.status is RunStatus.COMPLETED
    # `test:` names resolve to TestModel, which answers without tools.
    [step] = [
        e for e in await runtime.store.load(result.run_id) if e.status is StepStatus.COMPLETED
    ]
    assert step.result["fallback"] == "test:from-the-runtime"

    inner = Agent(name="b", model=primary, policy=Policy(fallback=["test:from-the-agent"]))
    result = await runtime.run(inner, "go")
    [step] = [
        e for e in await runtime.store.load(result.run_id) if e.status is StepStatus.COMPLETED
    ]
    assert step.result["fallback"] == "test:from-the-agent"

    off = Agent(name="c", model=primary, policy=Policy(fallback=()))
    assert (await runtime.run(off, "go")).status is RunStatus.FAILED


async def test_every_model_of_the_chain_failing_fails_the_run_with_the_chain(store: Store) -> None:
    first = FaultyModel(answering(name="one"), Faults.script([ServerError(503)] * 5))
    second = FaultyModel(answering(name="two"), Faults.script([ServerError(502)] * 5))
    runtime = Runtime(store, policy=Policy(retry=False))
    agent = Agent(name="a", model=with_policy(first, Policy(fallback=[second])))
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "Every model of the fallback chain failed at a/turn-1/model" in result.error["message"]
    assert "test:one, test:two" in result.error["message"]
    assert result.error["cause_chain"][0]["message"].endswith("HTTP 502 (injected)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_short_circuits_half_opens_and_closes(store: Store) -> None:
    calls: list[ModelRequest] = []
    healthy = asyncio.Event()

    async def flaky(request: ModelRequest) -> str:
        calls.append(request)
        if not healthy.is_set():
            raise ConnectionResetError("connection reset by peer")
        return "back"

    clock = Clock()
    events: list[Event] = []
    breaker = Breaker(failures=3, window=10, cooldown=5)
    runtime = Runtime(
        store,
        policy=Policy(retry=False, breaker=breaker),
        breakers=MemoryBreakers(clock),
        sinks=[events.append],
    )
    agent = Agent(name="a", model=FunctionModel(flaky, name="flaky"))
    runs = [await runtime.run(agent, "go") for _ in range(3)]
    assert all(r.status is RunStatus.FAILED for r in runs)
    assert len(calls) == 3
    opened = [(await failed_attempts(runtime, r.run_id, "a/turn-1/model"))[0] for r in runs]
    assert [a.get("opened_circuit", False) for a in opened] == [False, False, True]
    [state] = await runtime.breakers()
    assert (state.name, state.state, state.probe_in) == ("test:flaky", "open", 5.0)

    # Open: fail fast, nothing sent.
    result = await runtime.run(agent, "go")
    assert result.status is RunStatus.FAILED and len(calls) == 3
    assert result.error is not None and result.error["type"] == "BreakerOpen"
    assert result.error["breaker"] == "test:flaky"
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert attempt["type"] == "BreakerOpen" and "was not sent" in attempt["message"]

    # After the cool-down a probe goes through; it fails, so the circuit opens again.
    clock.now += 5.1
    assert (await runtime.run(agent, "go")).status is RunStatus.FAILED
    assert len(calls) == 4
    assert (await runtime.breakers())[0].state == "open"

    # The next probe succeeds: closed.
    clock.now += 5.1
    healthy.set()
    assert (await runtime.run(agent, "go")).output == "back"
    assert (await runtime.breakers())[0].state == "closed"
    changes = [(e.old, e.new) for e in events if isinstance(e, BreakerChanged)]
    assert changes == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


async def test_an_open_breaker_engages_the_fallback_without_calling_the_model(store: Store) -> None:
    primary_calls = 0

    def primary_answer(request: ModelRequest) -> str:
        nonlocal primary_calls
        primary_calls += 1
        raise ModelError("HTTP 503", status_code=503, transient=True)

    primary = FunctionModel(primary_answer, name="primary")
    backup = answering("backup", name="backup")
    clock = Clock()
    policy = Policy(retry=False, breaker=Breaker(failures=2, cooldown=30), fallback=[backup])
    runtime = Runtime(store, breakers=MemoryBreakers(clock))
    agent = Agent(name="a", model=with_policy(primary, policy))
    for _ in range(2):
        assert (await runtime.run(agent, "go")).output == "backup"
    assert primary_calls == 2
    for _ in range(5):
        assert (await runtime.run(agent, "go")).output == "backup"
    assert primary_calls == 2  # open: no request left the process
    result = await runtime.run(agent, "go")
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert (attempt["type"], attempt["fallback"]) == ("BreakerOpen", "test:backup")


async def test_a_resume_does_not_repeat_journaled_attempts(tmp_path: Path) -> None:
    """Crash during the wait after the second failed attempt: the resume makes the
    third attempt only (no attempt repeated), after what is left of the wait."""
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    inner = answering()
    model = FaultyModel(inner, Faults.script([ServerError(503), ServerError(503)]))
    seen: list[int] = []

    def crash_on_second_retry(event: Event) -> None:
        if isinstance(event, Retrying):
            seen.append(event.attempt)
            if event.attempt == 2:
                raise Crash

    retry = Retry(attempts=3, initial=0.2, jitter=0)
    agent = Agent(name="a", model=model)
    runtime = Runtime(store, policy=Policy(retry=retry), sinks=[crash_on_second_retry])
    with pytest.raises(Crash):
        await runtime.run(agent, "go", run_id="r1")
    assert model.faults.calls == 2 and inner.requests == []

    resumed = Runtime(store, policy=Policy(retry=retry))
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await resumed.resume("r1", runnable=agent)
    assert result.output == "done"
    assert model.faults.calls == 3 and len(inner.requests) == 1
    attempts = await failed_attempts(resumed, "r1", "a/turn-1/model")
    assert [a["attempt"] for a in attempts] == [1, 2]
    # The second wait (0.4 s) had not passed: the resume waited for what was left.
    assert loop.time() - started > 0.2
    await resumed.close()


async def test_a_resume_after_a_breaker_fallback_goes_to_the_fallback(store: Store) -> None:
    """Found by the soak: an open circuit's own "seconds to the next probe" was
    read back as a retry wait, so a resume went back to the primary."""
    primary = FaultyModel(answering("primary", name="primary"), Faults.script([ServerError(503)]))
    backup = FaultyModel(answering("backup", name="backup"), Faults.script([None, Hang()]))
    policy = Policy(retry=False, breaker=Breaker(failures=1, cooldown=60), fallback=[backup])
    agent = Agent(name="a", model=with_policy(primary, policy))
    runtime = Runtime(store, breakers=MemoryBreakers(Clock()))
    assert (await runtime.run(agent, "trip the circuit")).output == "backup"
    task = asyncio.create_task(runtime.run(agent, "go", run_id="b"))
    while backup.faults.calls < 2:  # circuit open -> fallback -> the backup hangs: crash here
        await asyncio.sleep(0.005)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    [attempt] = await failed_attempts(runtime, "b", "a/turn-1/model")
    assert attempt["type"] == "BreakerOpen" and attempt["fallback"] == "test:backup"
    assert "retry_in" not in attempt and attempt["probe_in"] == 60.0
    result = await runtime.resume("b", runnable=agent)
    assert result.output == "backup"
    assert primary.faults.calls == 1  # the resume went straight to the backup


async def test_retries_stop_at_the_runs_budget(store: Store) -> None:
    from orchestrion import Budget

    model = FaultyModel(answering(), Faults.rate(1.0, kinds=[ServerError(503)]))
    retry = Retry(attempts=50, initial=0.02, multiplier=1, jitter=0)
    # 0.3 s: enough for the first call even on a loaded machine (a budget spent
    # before it would stop the run with no attempt), far less than 50 waits of 0.02 s.
    runtime = Runtime(store, policy=Policy(retry=retry), budget=Budget(seconds=0.3))
    result = await runtime.run(Agent(name="a", model=model), "go")
    # Every retry checks the budget first: the run stops (resumable) instead of
    # retrying 50 times, and the attempts made are in the journal.
    assert result.status is RunStatus.STOPPED
    assert result.error is not None and result.error["budget"] == "seconds"
    attempts = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert 1 <= len(attempts) < 50 and model.faults.calls == len(attempts)


class HTTPStatusError(Exception):
    """Shaped like httpx's: the status and headers live on `response`."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status, "headers": headers})()


async def test_an_http_error_keeps_its_status_and_retry_after(store: Store) -> None:
    calls = 0

    def answer(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise HTTPStatusError(429, {"retry-after-ms": "20"})
        return "done"

    retry = Retry(attempts=2, initial=5.0, max_wait=1.0)
    runtime = Runtime(store, policy=Policy(retry=retry))
    result = await runtime.run(Agent(name="a", model=FunctionModel(answer)), "go")
    assert result.output == "done"
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert (attempt["status_code"], attempt["retry_after"], attempt["retry_in"]) == (
        429,
        0.02,
        0.02,
    )


async def test_a_model_raising_retry_later_is_retried(store: Store) -> None:
    from orchestrion import RetryLater

    calls = 0

    def answer(request: ModelRequest) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryLater("busy", retry_after=0.001)
        return "done"

    runtime = Runtime(store, policy=Policy(retry=FAST))
    assert (await runtime.run(Agent(name="a", model=FunctionModel(answer)), "go")).output == "done"


async def test_max_time_counts_the_attempts_and_the_waits(store: Store) -> None:
    async def slow_failure(request: ModelRequest) -> str:
        await asyncio.sleep(0.06)
        raise ConnectionResetError("reset")

    model = FunctionModel(slow_failure)
    retry = Retry(attempts=10, initial=0.01, multiplier=1, jitter=0, max_time=0.1)
    runtime = Runtime(store, policy=Policy(retry=retry))
    result = await runtime.run(Agent(name="a", model=model), "go")
    assert result.status is RunStatus.FAILED
    # 60 ms an attempt: the third would start after 130 ms, past max_time.
    assert len(model.requests) == 2
    assert result.error is not None and result.error["message"].endswith("(2 attempts)")


async def test_the_attempt_that_opens_the_circuit_goes_straight_to_the_fallback(
    store: Store,
) -> None:
    events: list[Event] = []
    primary = FaultyModel(answering(name="primary"), Faults.script([ServerError(503)]))
    policy = Policy(
        retry=Retry(attempts=3, initial=30.0, jitter=0),  # a wait nobody should sit through
        breaker=Breaker(failures=1),
        fallback=[answering("backup", name="backup")],
    )
    runtime = Runtime(store, breakers=MemoryBreakers(Clock()), sinks=[events.append])
    result = await asyncio.wait_for(
        runtime.run(Agent(name="a", model=with_policy(primary, policy)), "go"), timeout=10
    )
    assert result.output == "backup"
    assert not [e for e in events if isinstance(e, Retrying)]
    [attempt] = await failed_attempts(runtime, result.run_id, "a/turn-1/model")
    assert attempt["opened_circuit"] is True and attempt["fallback"] == "test:backup"


async def test_a_sink_that_raises_does_not_leak_the_probe(store: Store) -> None:
    clock = Clock()
    breakers = MemoryBreakers(clock)
    model = FaultyModel(answering(), Faults.script([ServerError(503)]))
    policy = Policy(retry=False, breaker=Breaker(failures=1, cooldown=5))
    agent = Agent(name="a", model=model, policy=policy)
    assert (await Runtime(store, breakers=breakers).run(agent, "go")).status is RunStatus.FAILED
    clock.now += 6

    def broken_sink(event: Event) -> None:
        if isinstance(event, BreakerChanged):
            raise RuntimeError("the sink is broken")

    with pytest.raises(RuntimeError, match="the sink is broken"):
        await Runtime(store, breakers=breakers, sinks=[broken_sink]).run(agent, "go")
    # The probe's slot came back: the next run probes, succeeds and closes the circuit.
    assert (await Runtime(store, breakers=breakers).run(agent, "go")).output == "done"
    assert (await breakers.states())[0].state == "closed"


async def test_a_retry_wait_past_the_seconds_budget_stops_at_once(store: Store) -> None:
    from orchestrion import Budget

    model = FaultyModel(answering(), Faults.script([ServerError(503)]))
    retry = Retry(attempts=2, initial=30.0, jitter=0, max_wait=60)
    runtime = Runtime(store, policy=Policy(retry=retry), budget=Budget(seconds=5))
    result = await asyncio.wait_for(runtime.run(Agent(name="a", model=model), "go"), timeout=10)
    assert result.status is RunStatus.STOPPED
    assert result.error is not None and "during a retry wait of 30.0 s" in result.error["message"]


async def test_an_unpriced_fallback_is_refused_before_the_first_call(store: Store) -> None:
    from orchestrion import Budget, Price, UserError

    primary = answering(name="priced")
    policy = Policy(fallback=[answering(name="unpriced")])
    runtime = Runtime(
        store, budget=Budget(cost=1.0), prices={"test:priced": Price(input=1, output=1)}
    )
    with pytest.raises(UserError, match="model 'test:unpriced' has no known price"):
        await runtime.run(Agent(name="a", model=with_policy(primary, policy)), "go")
    assert primary.requests == []
