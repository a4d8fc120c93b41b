"""Fallback agents: when an agent fails, the next one takes over its input; the
hand-over is journaled, so a resume goes straight to the agent that was working."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion import (
    Agent,
    Event,
    FallbackUsed,
    ModelError,
    ModelRequest,
    Policy,
    RunContext,
    RunStatus,
    Runtime,
    Sequential,
    StepStatus,
    UserError,
)
from orchestrion.engine.store import Store, open_store
from orchestrion.messages import ToolResult
from orchestrion.testing import Faults, FaultyModel, FunctionModel, ScriptedModel, ServerError
from tests.engine._support import Crash


def broken(name: str) -> FaultyModel:
    return FaultyModel(
        FunctionModel(lambda r: "never", name=name), Faults.rate(1.0, kinds=[ServerError(500)])
    )


async def test_a_fallback_agent_takes_over_and_it_is_journaled(store: Store) -> None:
    backup_model = ScriptedModel(["handled by the backup"])
    backup = Agent(name="backup", model=backup_model)
    primary = Agent(
        name="primary", model=broken("p"), policy=Policy(retry=False, fallback=[backup])
    )
    events: list[Event] = []
    runtime = Runtime(store, sinks=[events.append])
    result = await runtime.run(primary, "help me")
    assert result.output == "handled by the backup"
    assert backup_model.requests[0].messages[0].content == "help me"  # type: ignore[union-attr]
    history = {s.key: s for s in await runtime.history(result.run_id)}
    gave_up = history["primary/gave-up"]
    assert (gave_up.kind, gave_up.status) == ("fallback", StepStatus.COMPLETED)
    assert gave_up.result["agent"] == "primary" and gave_up.result["fallback"] == "backup"
    assert gave_up.result["type"] == "ModelError"
    assert history["primary/fallback/backup/turn-1/model"].status is StepStatus.COMPLETED
    [used] = [e for e in events if isinstance(e, FallbackUsed)]
    assert (used.key, used.failed, used.used) == ("primary", "primary", "backup")


async def test_a_chain_of_fallback_agents_inside_a_pattern(store: Store) -> None:
    last = Agent(name="last", model=ScriptedModel(["third time lucky"]))
    second = Agent(name="second", model=broken("s"))
    first = Agent(
        name="first", model=broken("f"), policy=Policy(retry=False, fallback=[second, last])
    )
    team = Sequential(name="team", members=[first])
    runtime = Runtime(store, policy=Policy(retry=False))
    result = await runtime.run(team, "go")
    assert result.output == "third time lucky"
    keys = [s.key for s in await runtime.history(result.run_id) if s.kind == "fallback"]
    assert keys == ["team/step-0/first/gave-up", "team/step-0/first/fallback/second/gave-up"]


async def test_when_every_agent_fails_the_run_fails_with_the_last_cause(store: Store) -> None:
    backup = Agent(name="backup", model=broken("b"))
    primary = Agent(
        name="primary", model=broken("p"), policy=Policy(retry=False, fallback=[backup])
    )
    result = await Runtime(store, policy=Policy(retry=False)).run(primary, "go")
    assert result.status is RunStatus.FAILED
    assert result.error is not None and result.error["type"] == "ModelError"
    assert "test:b" in result.error["message"]


async def test_a_resume_goes_straight_to_the_fallback(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    primary_model = broken("p")
    backup_model = ScriptedModel(["from the backup"])
    backup = Agent(name="backup", model=backup_model)
    primary = Agent(
        name="primary", model=primary_model, policy=Policy(retry=False, fallback=[backup])
    )

    def crash(event: Event) -> None:
        if isinstance(event, FallbackUsed):
            raise Crash

    with pytest.raises(Crash):
        await Runtime(store, sinks=[crash]).run(primary, "go", run_id="r1")
    assert primary_model.faults.calls == 1
    resumed = Runtime(store)
    result = await resumed.resume("r1", runnable=primary)
    assert result.output == "from the backup"
    assert primary_model.faults.calls == 1  # the primary was not asked again
    await resumed.close()


def test_fallback_agents_are_checked_at_definition() -> None:
    twin = Agent(name="a", model="test:x")
    with pytest.raises(UserError, match="fallback agent names must differ"):
        Agent(name="a", model="test:x", policy=Policy(fallback=[twin]))
    with pytest.raises(UserError, match="neither an Agent nor a model"):
        Agent(name="a", model="test:x", policy=Policy(fallback=[42]))  # type: ignore[list-item]
    with pytest.raises(UserError, match="runtime's fallback lists models"):
        Runtime("memory://", policy=Policy(fallback=[twin]))


async def test_one_backup_can_stand_in_for_several_agents(store: Store) -> None:
    """Fallbacks are keyed under the agent they replace, so a shared backup (or one
    that also runs on its own) never reuses a step key."""
    from orchestrion import workflow

    backup = Agent(name="backup", model=FunctionModel(lambda r: "backup ok"))
    first = Agent(name="first", model=broken("f"), policy=Policy(retry=False, fallback=[backup]))
    second = Agent(name="second", model=broken("s"), policy=Policy(retry=False, fallback=[backup]))

    @workflow
    async def both(ctx, input):  # type: ignore[no-untyped-def]
        return [
            await ctx.run(first, input),
            await ctx.run(second, input),
            await ctx.run(backup, input),
        ]

    result = await Runtime(store).run(both, "go")
    assert result.output == ["backup ok"] * 3


async def test_a_fallbacks_own_fallbacks_take_part(store: Store) -> None:
    c = Agent(name="c", model=FunctionModel(lambda r: "c answered"))
    b = Agent(name="b", model=broken("b"), policy=Policy(retry=False, fallback=[c]))
    a = Agent(name="a", model=broken("a"), policy=Policy(retry=False, fallback=[b]))
    result = await Runtime(store).run(a, "go")
    assert result.output == "c answered"


async def test_no_fallback_after_the_agent_wrote(store: Store) -> None:
    """The replacement would pay again under its own idempotency key."""
    from orchestrion import tool
    from orchestrion.testing import call

    paid: list[str] = []

    @tool(effect="write")
    def pay(ctx: RunContext[None]) -> str:
        paid.append(ctx.idempotency_key)
        return "paid"

    def pays_then_breaks(request: ModelRequest) -> object:
        if not any(isinstance(m, ToolResult) for m in request.messages):
            return call("pay")
        raise ModelError("HTTP 400 bad request", status_code=400)

    backup = Agent(
        name="backup", model=ScriptedModel([call("pay"), "paid by the backup"]), tools=[pay]
    )
    payer = Agent(
        name="payer",
        model=FunctionModel(pays_then_breaks),
        tools=[pay],
        policy=Policy(retry=False, fallback=[backup]),
    )
    result = await Runtime(store).run(payer, "pay")
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert "so its fallback 'backup' was not started" in result.error["message"]
    assert len(paid) == 1


async def test_a_resume_counts_what_the_replaced_agent_spent(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")

    def once_then_down(request: ModelRequest) -> object:
        if not any(isinstance(m, ToolResult) for m in request.messages):
            return call("noop")
        raise ModelError("HTTP 500", status_code=500, transient=True)

    from orchestrion import tool
    from orchestrion.testing import call

    @tool
    def noop() -> str:
        return "ok"

    backup = Agent(name="backup", model=ScriptedModel(["from the backup"]))
    primary = Agent(
        name="primary",
        model=FunctionModel(once_then_down),
        tools=[noop],
        policy=Policy(retry=False, fallback=[backup]),
    )

    def crash(event: Event) -> None:
        if isinstance(event, FallbackUsed):
            raise Crash

    with pytest.raises(Crash):
        await Runtime(store, sinks=[crash]).run(primary, "go", run_id="r1")
    resumed = Runtime(store)
    result = await resumed.resume("r1", runnable=primary)
    assert result.output == "from the backup"
    assert result.usage.requests == 2  # the primary's answer before it broke, and the backup's
    await resumed.close()


def test_two_different_agents_of_one_name_in_a_chain_are_refused() -> None:
    inner = Agent(name="helper", model="test:x")
    middle = Agent(name="middle", model="test:x", policy=Policy(fallback=[inner]))
    other = Agent(name="helper", model="test:y")
    with pytest.raises(UserError, match="two different agents named 'helper'"):
        Agent(name="top", model="test:x", policy=Policy(fallback=[middle, other]))
    shared = Agent(name="top2", model="test:x", policy=Policy(fallback=[middle, inner]))
    assert shared.fallback_agents == (middle, inner)  # the same agent twice is fine


async def test_a_replaced_agents_fallbacks_are_not_counted_twice_on_resume(tmp_path: Path) -> None:
    from orchestrion import tool
    from orchestrion.testing import call

    store = open_store(f"sqlite:///{tmp_path / 'o.db'}")
    backup_model = ScriptedModel([call("noop"), "done"])

    @tool
    def noop() -> str:
        return "ok"

    paused: list[bool] = []

    def crash_once(event: Event) -> None:
        from orchestrion import StepCompleted

        if (
            isinstance(event, StepCompleted)
            and event.key.endswith("backup/turn-1/model")
            and not paused
        ):
            paused.append(True)
            raise Crash

    backup = Agent(name="backup", model=backup_model, tools=[noop])
    primary = Agent(
        name="primary", model=broken("p"), policy=Policy(retry=False, fallback=[backup])
    )
    with pytest.raises(Crash):
        await Runtime(store, sinks=[crash_once]).run(primary, "go", run_id="r1")
    resumed = Runtime(store)
    result = await resumed.resume("r1", runnable=primary)
    assert result.output == "done"
    assert result.usage.requests == 2  # the backup's two answers, once each
    await resumed.close()
