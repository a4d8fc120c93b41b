"""A run's budget inside patterns: reached in a branch or in a worker, it ends the
run cleanly (resumable, not a member's failure); usage counted on a resume agrees
with an uninterrupted run, so limits agree too."""

from __future__ import annotations

import asyncio

import pytest

from orchestrion import Agent, Budget, Concurrent, RunStatus, Runtime, Supervisor
from orchestrion.messages import ModelRequest, ToolResult
from orchestrion.testing import FunctionModel, call


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
