"""Per-run budgets: checked before each live model call, ending the run cleanly."""

from __future__ import annotations

import pytest

from orchestrion import Agent, Budget, Price, RunStatus, Runtime, UserError, tool
from orchestrion.budget import DEFAULT_MODEL_CALLS
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, ModelResponse, ToolCall
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
        (
            Budget(steps=4),
            "steps",
            2,
        ),  # model, tool, model, tool: the next model call would be the 5th
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
    costs = [
        s.result["usage"][3] for s in await runtime.history(result.run_id) if s.kind == "model"
    ]
    assert sum(costs[:-1]) < 10.0 <= sum(costs) == pytest.approx(result.usage.cost)
    assert len(agent.model.requests) == len(costs)  # type: ignore[union-attr]  # none after it

    resumed = await runtime.resume(result.run_id, budget=Budget(cost=1_000.0))
    assert resumed.output == "done"
    assert resumed.usage.cost > result.usage.cost, "a resume counts what was already spent"


async def test_a_cost_budget_refuses_a_model_without_a_price(runtime: Runtime) -> None:
    agent = looper(1)
    with pytest.raises(
        UserError, match=r"model 'test:scripted' has no known price.*Runtime\(prices="
    ):
        await runtime.run(agent, "go", budget=Budget(cost=1.0))
    assert agent.model.requests == []  # type: ignore[union-attr]  # refused before any call


# -- the default limit -----------------------------------------------------------


def forever(stop_after: int | None = None) -> tuple[Agent[str], FunctionModel]:
    """An agent whose model calls a tool again and again (and answers after
    `stop_after` calls, if given): a runaway unless something stops it."""

    def decide(request: ModelRequest) -> ModelResponse | ToolCall | str:
        if stop_after is not None and len(model.requests) > stop_after:
            return "done"
        # A bare response with no usage: the engine counts the call all the same.
        return ModelResponse(tool_calls=(ToolCall(f"c{len(model.requests)}", "look", '{"n": 1}'),))

    model = FunctionModel(decide)
    agent = Agent(name="a", model=model, tools=[look], max_turns=10_000, loop_guard=None)
    return agent, model


async def test_a_run_calling_the_model_forever_stops_at_the_default_limit(runtime: Runtime) -> None:
    assert Budget().model_calls == DEFAULT_MODEL_CALLS == 100
    agent, model = forever()
    result = await runtime.run(agent, "go", run_id="runaway")  # no budget given anywhere
    assert result.status is RunStatus.STOPPED
    assert len(model.requests) == DEFAULT_MODEL_CALLS
    assert result.usage.requests == DEFAULT_MODEL_CALLS
    assert result.error is not None
    assert result.error["type"] == "BudgetExceeded" and result.error["budget"] == "model_calls"
    message = result.error["message"]
    assert "made 100 model calls of 100 (the default limit) (Budget model_calls)" in message
    assert "runtime.resume('runaway', budget=Budget(model_calls=200))" in message
    assert "orchestrion resume runaway --max-model-calls 200" in message
    assert "Budget(model_calls=None) removes the limit" in message
    assert (await runtime.get("runaway")).status is RunStatus.STOPPED


@pytest.mark.parametrize(
    "budget", [Budget(model_calls=None), Budget.unlimited(), Budget(model_calls=500)]
)
async def test_the_default_limit_can_be_raised_or_removed(runtime: Runtime, budget: Budget) -> None:
    agent, model = forever(stop_after=150)
    assert (await runtime.run(agent, "go")).status is RunStatus.STOPPED
    agent, model = forever(stop_after=150)
    result = await runtime.run(agent, "go", budget=budget)
    assert result.output == "done"
    assert len(model.requests) == 151


async def test_a_runtime_without_the_default_limit(store: Store) -> None:
    agent, _ = forever(stop_after=120)
    assert (await Runtime(store).run(agent, "go")).status is RunStatus.STOPPED
    agent, _ = forever(stop_after=120)
    result = await Runtime(store, budget=Budget.unlimited()).run(agent, "go")
    assert result.output == "done"


async def test_other_limits_keep_the_default_model_calls(runtime: Runtime) -> None:
    agent, model = forever()
    result = await runtime.run(agent, "go", budget=Budget(tokens=10**9, seconds=10**6))
    assert result.error is not None and result.error["budget"] == "model_calls"
    assert len(model.requests) == DEFAULT_MODEL_CALLS


async def test_a_run_stopped_at_the_default_limit_resumes_with_a_larger_budget(
    runtime: Runtime,
) -> None:
    agent, model = forever(stop_after=130)
    stopped = await runtime.run(agent, "go")
    assert stopped.status is RunStatus.STOPPED and len(model.requests) == 100
    again = await runtime.resume(stopped.run_id)  # the same limit: stopped again, at once
    assert again.status is RunStatus.STOPPED and len(model.requests) == 100
    done = await runtime.resume(stopped.run_id, budget=Budget(model_calls=200))
    assert done.output == "done"
    assert len(model.requests) == 131, "the 100 calls made before are replayed, not repeated"
    assert done.usage.requests == 131


@pytest.mark.parametrize("value", [True, float("nan")])
def test_a_limit_must_be_a_positive_number(value: object) -> None:
    with pytest.raises(UserError, match="must be positive"):
        Budget(model_calls=value)  # type: ignore[arg-type]
