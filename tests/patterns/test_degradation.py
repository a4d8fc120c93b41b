"""Graceful degradation under injected faults: a fan-out returns what it could, a
supervisor re-plans around a broken worker, and a run that cannot go on fails
with its cause chain instead of hanging."""

from __future__ import annotations

import asyncio

from orchestrion import (
    Agent,
    Breaker,
    Concurrent,
    MemoryBreakers,
    Policy,
    Retry,
    RunStatus,
    Runtime,
    Supervisor,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.testing import Faults, FaultyModel, FunctionModel, Hang, ServerError, call

FAST = Policy(retry=Retry(attempts=2, initial=0.001, jitter=0))


def echo(name: str) -> FunctionModel:
    def answer(request: ModelRequest) -> str:
        first = request.messages[0]
        assert isinstance(first, UserMessage)
        return f"{name}: {first.content}"

    return FunctionModel(answer, name=name)


def down(name: str) -> FaultyModel:
    return FaultyModel(echo(name), Faults.rate(1.0, kinds=[ServerError(503)]))


async def test_a_fan_out_returns_partial_results_when_a_provider_is_down(store: Store) -> None:
    analysts = [
        Agent(name="logs", model=echo("logs")),
        Agent(name="metrics", model=down("metrics")),
        Agent(name="deploys", model=echo("deploys")),
    ]
    fan = Concurrent(name="fan", branches=analysts, min_success=2)
    result = await Runtime(store, policy=FAST).run(fan, "INC-1")
    assert result.status is RunStatus.COMPLETED
    by_name = {r["name"]: r for r in result.output}
    assert by_name["logs"]["output"] == "logs: INC-1"
    failed = by_name["metrics"]
    assert failed["ok"] is False
    assert failed["error"]["type"] == "ModelError" and failed["error"]["status_code"] == 503


async def test_a_supervisor_re_plans_when_a_workers_circuit_is_open(store: Store) -> None:
    def plan(request: ModelRequest) -> object:
        done = [m for m in request.messages if isinstance(m, ToolResult)]
        if not done:
            return call("delegate_to_primary_desk", {"task": "balance?"}, id="d1")
        if len(done) == 1:
            assert done[0].is_error and "Worker 'primary_desk' failed" in done[0].content
            return call("delegate_to_backup_desk", {"task": "balance?"}, id="d2")
        return f"answered: {done[-1].content}"

    breaker = Policy(retry=False, breaker=Breaker(failures=1, cooldown=60))
    primary = Agent(name="primary_desk", model=down("primary"), policy=breaker)
    team = Supervisor(
        name="team",
        manager=Agent(name="lead", model=FunctionModel(plan)),
        workers=[primary, Agent(name="backup_desk", model=echo("backup"))],
    )
    runtime = Runtime(store, breakers=MemoryBreakers())
    first = await runtime.run(team, "go")
    assert first.output == "answered: backup: balance?"
    # The circuit is open now: the next run re-plans the same way without a request.
    calls_before = team.workers[0].model.faults.calls  # type: ignore[union-attr]
    second = await runtime.run(team, "go")
    assert second.output == "answered: backup: balance?"
    assert team.workers[0].model.faults.calls == calls_before  # type: ignore[union-attr]


async def test_a_run_that_cannot_go_on_fails_with_its_cause_chain_and_never_hangs(
    store: Store,
) -> None:
    stuck = FaultyModel(echo("stuck"), Faults.rate(1.0, kinds=[Hang()]))
    policy = Policy(timeout=0.02, retry=Retry(attempts=2, initial=0.001))
    agent = Agent(name="a", model=stuck, policy=policy)
    # The guard only catches a hang; the policy's timeouts end the run long before.
    result = await asyncio.wait_for(Runtime(store).run(agent, "go"), timeout=30)
    assert result.status is RunStatus.FAILED
    assert result.error is not None
    assert result.error["type"] == "ModelError"
    assert "did not answer within 0.02 s" in result.error["message"]
    assert result.error["cause_chain"][0]["type"] == "TimeoutError"
    assert stuck.faults.calls == 2
