"""Found in review: run-wide limits inside patterns, usage after replay, replay order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrion import (
    Agent,
    Budget,
    Concurrent,
    Handoff,
    PeerNetwork,
    RunContext,
    RunStatus,
    Runtime,
    Sequential,
    Supervisor,
    UserError,
    workflow,
)
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, ScriptedModel, call


def echo(name: str) -> Agent[str]:
    return Agent(name=name, model=FunctionModel(lambda r: f"{name} ok"))


async def test_a_budget_reached_inside_a_branch_ends_the_run_and_resumes(runtime: Runtime) -> None:
    fan = Concurrent(name="fan", branches=[echo("a"), echo("b"), echo("c")], min_success=1)
    first = await runtime.run(fan, "x", budget=Budget(model_calls=2))
    assert first.status is RunStatus.STOPPED
    assert first.error is not None and first.error["type"] == "BudgetExceeded"
    assert first.partial == {"fan/branch-0/a": "a ok", "fan/branch-1/b": "b ok"}
    assert first.error["partial"] == first.partial, "journaled with the run"
    done = await runtime.resume(first.run_id, budget=Budget(model_calls=10))
    assert [r["ok"] for r in done.output] == [True, True, True]


async def test_a_budget_reached_inside_a_worker_is_not_a_worker_failure(runtime: Runtime) -> None:
    manager = Agent(
        name="m",
        model=FunctionModel(
            lambda r: (
                call("delegate_to_w", {"task": "t"}, id="d")
                if not any(isinstance(m, ToolResult) for m in r.messages)
                else "done"
            )
        ),
    )
    team = Supervisor(name="team", manager=manager, workers=[echo("w")])
    result = await runtime.run(team, "x", budget=Budget(model_calls=1))
    assert result.error is not None and result.error["type"] == "BudgetExceeded"


async def test_usage_counts_replayed_delegations_so_limits_agree_after_a_resume(
    runtime: Runtime,
) -> None:
    crash = {"on": False}

    def manager_plan(request: ModelRequest) -> object:
        done = [m for m in request.messages if isinstance(m, ToolResult)]
        if len(done) == 1 and crash["on"]:
            crash["on"] = False
            raise asyncio.CancelledError
        if len(done) < 2:
            return call("delegate_to_w", {"task": f"t{len(done)}"}, id=f"d{len(done)}")
        return "done"

    team = Supervisor(
        name="team", manager=Agent(name="m", model=FunctionModel(manager_plan)), workers=[echo("w")]
    )
    uninterrupted = await runtime.run(team, "x")
    crash["on"] = True
    with pytest.raises(asyncio.CancelledError):
        await runtime.run(team, "x", run_id="r2")
    resumed = await Runtime(runtime.store).resume("r2", runnable=team)
    assert resumed.usage.requests == uninterrupted.usage.requests == 5


async def test_unnamed_interrupts_inside_gather_are_refused(runtime: Runtime) -> None:
    @workflow
    async def approvals(ctx: RunContext[None], input: str) -> list[Any]:
        return await ctx.gather(ctx.interrupt("alice?"), ctx.interrupt("bob?"))

    with pytest.raises(UserError, match=r"inside ctx\.gather needs name="):
        await runtime.run(approvals, "x")


async def test_peer_mail_order_does_not_depend_on_who_finishes_first(runtime: Runtime) -> None:
    inboxes: list[str] = []

    def sender(name: str, delay: float) -> Agent[str]:
        async def act(request: ModelRequest) -> object:
            if any(isinstance(m, ToolResult) for m in request.messages):
                return "sent"
            await asyncio.sleep(delay)
            return call("send_message", {"to": "c", "content": f"from {name}"}, id=f"{name}1")

        return Agent(name=name, model=FunctionModel(act))

    def collector(request: ModelRequest) -> object:
        inboxes.append(str(request.messages[0]))
        return "read"

    def network(first_delay: float) -> PeerNetwork:
        return PeerNetwork(
            name="n",
            agents=[
                Agent(
                    name="start",
                    model=FunctionModel(
                        lambda r: (
                            "ok"
                            if any(isinstance(m, ToolResult) for m in r.messages)
                            else [
                                call("send_message", {"to": "a", "content": "go"}, id="s1"),
                                call("send_message", {"to": "b", "content": "go"}, id="s2"),
                            ]
                        )
                    ),
                ),
                sender("a", first_delay),
                sender("b", 0.02 - first_delay),
                Agent(name="c", model=FunctionModel(collector)),
            ],
        )

    await runtime.run(network(0.0), "x")
    await runtime.run(network(0.02), "x")
    assert inboxes[0] == inboxes[1], "the same mail order whichever sender finished first"


async def test_max_rounds_is_exact(runtime: Runtime) -> None:
    net = PeerNetwork(
        name="n", agents=[Agent(name="a", model=ScriptedModel(["quiet"]))], max_rounds=1
    )
    result = await runtime.run(net, "x")
    assert result.status is RunStatus.COMPLETED


async def test_supervisor_rounds_error_names_max_rounds(runtime: Runtime) -> None:
    busy = FunctionModel(lambda r: call("delegate_to_w", {"task": "again"}))
    team = Supervisor(
        name="team", manager=Agent(name="m", model=busy), workers=[echo("w")], max_rounds=2
    )
    result = await runtime.run(team, "x")
    assert result.error is not None and "max_rounds=2" in result.error["message"]


@pytest.mark.parametrize("pattern", [Handoff, PeerNetwork])
def test_members_that_get_tools_must_be_agents(pattern: Any) -> None:
    inner = Sequential(name="inner", members=[echo("a")])
    with pytest.raises(UserError, match="'inner' is not an Agent"):
        pattern(name="p", agents=[echo("x"), inner])
