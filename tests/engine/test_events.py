"""Events: what `Runtime.stream` yields and sinks receive, in order."""

from typing import Any

import pytest

from orchestrion import (
    Agent,
    Approve,
    Event,
    InterruptRequested,
    ModelDelta,
    RunContext,
    RunFinished,
    RunStarted,
    RunStatus,
    Runtime,
    StepCompleted,
    StepFailed,
    StepStarted,
    UserError,
    tool,
)
from orchestrion.testing import ScriptedModel, call


@tool
async def get_balance(account: str) -> float:
    """Balance of an account."""
    return 100.0


@tool(effect="write", approval=True)
async def pay(amount: float) -> str:
    """Pay."""
    return f"paid {amount}"


def outline(events: list[Event]) -> list[tuple[str, str]]:
    """(event type, step key or '') for every event except model deltas."""
    rows = []
    for e in events:
        if isinstance(e, ModelDelta):
            continue
        rows.append((type(e).__name__, getattr(e, "key", "")))
    return rows


async def test_stream_yields_run_and_step_events_in_order(runtime: Runtime) -> None:
    model = ScriptedModel(
        [call("get_balance", {"account": "savings"}, id="c1"), "You have 100 in savings."]
    )
    agent = Agent(name="bank", model=model, tools=[get_balance])
    events = [e async for e in runtime.stream(agent, "balance?", run_id="s1")]

    assert outline(events) == [
        ("RunStarted", ""),
        ("StepStarted", "bank/turn-1/model"),
        ("StepCompleted", "bank/turn-1/model"),
        ("StepStarted", "bank/turn-1/tool/get_balance#c1"),
        ("StepCompleted", "bank/turn-1/tool/get_balance#c1"),
        ("StepStarted", "bank/turn-2/model"),
        ("StepCompleted", "bank/turn-2/model"),
        ("RunFinished", ""),
    ]
    assert all(e.run_id == "s1" for e in events)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.name, started.resumed) == ("bank", False)

    kinds = [(e.key, e.kind) for e in events if isinstance(e, StepStarted | StepCompleted)]
    assert {k: kind for k, kind in kinds} == {
        "bank/turn-1/model": "model",
        "bank/turn-1/tool/get_balance#c1": "tool",
        "bank/turn-2/model": "model",
    }
    completed = [e for e in events if isinstance(e, StepCompleted)]
    assert all(e.replayed is False and e.duration >= 0 for e in completed)
    assert completed[1].result == {"content": "100.0", "is_error": False}

    # Deltas come between the start and the end of the model step they belong to.
    deltas = [(i, e) for i, e in enumerate(events) if isinstance(e, ModelDelta)]
    assert len(deltas) > 1
    assert {e.key for _, e in deltas} == {"bank/turn-2/model"}
    assert "".join(e.text for _, e in deltas) == "You have 100 in savings."
    start = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, StepStarted) and e.key == "bank/turn-2/model"
    )
    end = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, StepCompleted) and e.key == "bank/turn-2/model"
    )
    assert all(start < i < end for i, _ in deltas)

    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.status == RunStatus.COMPLETED
    assert finished.result.output == "You have 100 in savings."
    assert finished.result.run_id == "s1"
    record = await runtime.get("s1")
    assert record.output == finished.result.output
    assert record.usage == [
        finished.result.usage.input_tokens,
        finished.result.usage.output_tokens,
        finished.result.usage.requests,
    ]


async def test_streamed_run_matches_a_plain_run(runtime: Runtime) -> None:
    script = [call("get_balance", {"account": "savings"}, id="c1"), "You have 100."]
    plain_model, streamed_model = ScriptedModel(list(script)), ScriptedModel(list(script))
    plain = await runtime.run(Agent(name="bank", model=plain_model, tools=[get_balance]), "q")
    events = [
        e
        async for e in runtime.stream(
            Agent(name="bank", model=streamed_model, tools=[get_balance]), "q"
        )
    ]
    streamed = events[-1]
    assert isinstance(streamed, RunFinished)
    assert streamed.result.output == plain.output
    assert streamed.result.usage == plain.usage
    strip = [(s.key, s.kind, s.status, s.result) for s in await runtime.history(plain.run_id)]
    assert [
        (s.key, s.kind, s.status, s.result) for s in await runtime.history(streamed.result.run_id)
    ] == strip


async def test_interrupt_requested_is_streamed_before_run_finished(runtime: Runtime) -> None:
    model = ScriptedModel([call("pay", {"amount": 3}, id="p"), "Paid."])
    events = [e async for e in runtime.stream(Agent(name="payer", model=model, tools=[pay]), "pay")]
    assert [type(e).__name__ for e in events[-2:]] == ["InterruptRequested", "RunFinished"]
    requested, finished = events[-2], events[-1]
    assert isinstance(requested, InterruptRequested) and isinstance(finished, RunFinished)
    assert finished.result.status == RunStatus.INTERRUPTED
    assert finished.result.interrupts == (requested.interrupt,)
    assert requested.interrupt.kind == "approval"
    assert requested.interrupt.payload["arguments"] == {"amount": 3}  # type: ignore[index]
    assert not any(isinstance(e, StepStarted) and "/tool/pay" in e.key for e in events)


async def test_failed_tool_emits_step_failed(runtime: Runtime) -> None:
    @tool
    async def broken() -> str:
        raise RuntimeError("no")

    model = ScriptedModel([call("broken", id="b"), "unused"])
    events = [e async for e in runtime.stream(Agent(name="a", model=model, tools=[broken]), "go")]
    [failed] = [e for e in events if isinstance(e, StepFailed)]
    assert (failed.key, failed.kind) == ("a/turn-1/tool/broken#b", "tool")
    assert "ToolError" in failed.error and "no" in failed.error
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.result.status == RunStatus.FAILED


async def test_stream_surfaces_configuration_errors(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRION_MODEL", raising=False)
    seen: list[Event] = []
    with pytest.raises(UserError, match="has no model"):
        async for event in runtime.stream(Agent(name="nomodel"), "hi"):
            seen.append(event)
    # Caught before the run exists: no events, no run record.
    assert seen == []
    assert await runtime.list() == []


async def test_workflow_steps_are_events_too(runtime: Runtime) -> None:
    class Flow:
        name = "flow"

        async def invoke(self, ctx: RunContext[None], input: Any) -> Any:
            async def one() -> int:
                return 1

            return await ctx.step("one", one)

    events = [e async for e in runtime.stream(Flow(), None)]
    assert outline(events) == [
        ("RunStarted", ""),
        ("StepStarted", "flow/one"),
        ("StepCompleted", "flow/one"),
        ("RunFinished", ""),
    ]
    assert events[2].kind == "step" and events[2].result == 1  # type: ignore[union-attr]


async def test_sinks_see_replayed_steps_on_resume(runtime: Runtime) -> None:
    events: list[Event] = []
    rt = Runtime(runtime.store, sinks=[events.append])
    model = ScriptedModel(
        [
            call("get_balance", {"account": "savings"}, id="g"),
            call("pay", {"amount": 9}, id="p"),
            "Paid.",
        ]
    )
    agent = Agent(name="bank", model=model, tools=[get_balance, pay])
    result = await rt.run(agent, "pay")
    assert result.status == RunStatus.INTERRUPTED
    first_run = list(events)
    assert isinstance(first_run[0], RunStarted) and first_run[0].resumed is False
    assert not any(isinstance(e, StepCompleted) and e.replayed for e in first_run)
    assert isinstance(first_run[-2], InterruptRequested)

    events.clear()
    done = await rt.resume(result.run_id, {result.interrupts[0].id: Approve()})
    assert done.output == "Paid."
    assert isinstance(events[0], RunStarted) and events[0].resumed is True
    completed = [(e.key, e.kind, e.replayed) for e in events if isinstance(e, StepCompleted)]
    assert completed == [
        ("bank/turn-1/model", "model", True),
        ("bank/turn-1/tool/get_balance#g", "tool", True),
        ("bank/turn-2/model", "model", True),
        ("bank/turn-2/tool/pay#p/approval", "approval", False),
        ("bank/turn-2/tool/pay#p", "tool", False),
        ("bank/turn-3/model", "model", False),
    ]
    replayed = [e for e in events if isinstance(e, StepCompleted) and e.replayed]
    assert all(e.duration == 0.0 for e in replayed)
    assert replayed[1].result == {"content": "100.0", "is_error": False}
    # Replayed steps are not started again.
    started = [e.key for e in events if isinstance(e, StepStarted) and e.kind != "approval"]
    assert started == ["bank/turn-2/tool/pay#p", "bank/turn-3/model"]
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.result.output == "Paid."


async def test_runtime_sinks_and_stream_see_the_same_events(runtime: Runtime) -> None:
    sunk: list[Event] = []
    rt = Runtime(runtime.store, sinks=[sunk.append])
    model = ScriptedModel(["hello world"])
    streamed = [e async for e in rt.stream(Agent(name="a", model=model), "hi")]
    assert streamed == sunk
    assert "".join(e.text for e in streamed if isinstance(e, ModelDelta)) == "hello world"
