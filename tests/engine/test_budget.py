"""Per-run budgets: checked before each live model call, ending the run cleanly."""

from __future__ import annotations

import pytest

from orchestrion import Agent, Budget, Price, RunStatus, Runtime, UserError, tool
from orchestrion.engine.store import Store
from orchestrion.testing import FunctionModel, ScriptedModel, call


@tool
def look(n: int) -> str:
    return f"saw {n}"


def looper(calls: int) -> Agent[str]:
    return Agent(
        name="a",
        model=ScriptedModel([call("look", {"n": i}) for i in range(calls)] + ["done"]),
        tools=[look],
        max_turns=50,
    )


@pytest.mark.parametrize(
    ("budget", "limit", "model_calls"),
    [
        (Budget(model_calls=3), "model_calls", 3),
        (Budget(steps=4), "steps", 2),  # model, tool, model, tool: the next model call would be the 5th
        (Budget(tokens=1), "tokens", 1),
    ],
)
async def test_a_reached_limit_ends_the_run_naming_it(
    runtime: Runtime, budget: Budget, limit: str, model_calls: int
) -> None:
    agent = looper(10)
    result = await runtime.run(agent, "go", budget=budget)
    assert result.status is RunStatus.STOPPED
    assert result.error is not None
    assert result.error["type"] == "BudgetExceeded" and result.error["budget"] == limit
    assert f"(Budget {limit})" in result.error["message"]
    assert len(agent.model.requests) == model_calls  # type: ignore[union-attr]
    steps = await runtime.history(result.run_id)
    assert all(s.status.value == "completed" for s in steps), "the work done is kept"


async def test_resume_with_a_larger_budget_goes_on_without_repeating(runtime: Runtime) -> None:
    agent = looper(3)
    first = await runtime.run(agent, "go", budget=Budget(model_calls=2))
    assert first.status is RunStatus.STOPPED
    done = await runtime.resume(first.run_id, budget=Budget(model_calls=10))
    assert done.output == "done"
    assert len(agent.model.requests) == 4  # type: ignore[union-attr]  # 2 before, 2 after: none repeated


async def test_wall_time_counts_from_the_runs_creation(runtime: Runtime) -> None:
    slow = Agent(name="a", model=FunctionModel(lambda r: call("look", {"n": 1})), tools=[look])
    result = await runtime.run(slow, "go", budget=Budget(seconds=1e-9))
    assert result.error is not None and result.error["budget"] == "seconds"


async def test_the_runtime_default_applies_unless_a_run_has_its_own(runtime: Runtime) -> None:
    limited = Runtime(runtime.store, budget=Budget(model_calls=1))
    result = await limited.run(looper(2), "go")
    assert result.error is not None and result.error["budget"] == "model_calls"
    result = await limited.run(looper(2), "go", budget=Budget(model_calls=10))
    assert result.output == "done"


def test_limits_must_be_positive() -> None:
    with pytest.raises(UserError, match="Budget tokens=0 must be positive"):
        Budget(tokens=0)


# -- cost ----------------------------------------------------------------------

PRICED = {"test:scripted": Price(input=1_000_000.0, output=1_000_000.0)}  # $1 a token: easy sums


async def test_each_response_is_priced_and_the_cost_is_journaled(store: Store) -> None:
    runtime = Runtime(store, prices=PRICED)
    result = await runtime.run(looper(2), "go")
    tokens = result.usage.total_tokens
    assert result.usage.cost == pytest.approx(tokens)
    record = await runtime.get(result.run_id)
    assert record.usage[3] == pytest.approx(tokens), "the run record keeps the cost"
    models = [s for s in await runtime.history(result.run_id) if s.kind == "model"]
    assert sum(s.result["usage"][3] for s in models) == pytest.approx(tokens)


async def test_a_cost_budget_stops_the_run_before_the_next_model_call(store: Store) -> None:
    runtime = Runtime(store, prices=PRICED)
    agent = looper(10)
    result = await runtime.run(agent, "go", budget=Budget(cost=10.0))
    assert result.status is RunStatus.STOPPED
    assert result.error is not None and result.error["budget"] == "cost"
    assert "spent $" in result.error["message"] and "of $10" in result.error["message"]
    costs = [s.result["usage"][3] for s in await runtime.history(result.run_id) if s.kind == "model"]
    assert sum(costs[:-1]) < 10.0 <= sum(costs) == pytest.approx(result.usage.cost)
    assert len(agent.model.requests) == len(costs)  # type: ignore[union-attr]  # none after it

    resumed = await runtime.resume(result.run_id, budget=Budget(cost=1_000.0))
    assert resumed.output == "done"
    assert resumed.usage.cost > result.usage.cost, "a resume counts what was already spent"


async def test_a_cost_budget_refuses_a_model_without_a_price(runtime: Runtime) -> None:
    agent = looper(1)
    with pytest.raises(UserError, match=r"model 'test:scripted' has no known price.*Runtime\(prices="):
        await runtime.run(agent, "go", budget=Budget(cost=1.0))
    assert agent.model.requests == []  # type: ignore[union-attr]  # refused before any call
