"""Circuit breakers kept in the store: on PostgreSQL and on a SQLite file, a circuit
opened by one process's failures refuses the calls of the others, and outlives them."""

from __future__ import annotations

from orchestrion import Agent, Policy, RunStatus, Runtime
from orchestrion.errors import ModelError
from orchestrion.policy import Breaker
from orchestrion.testing import FunctionModel


async def test_a_breaker_opened_by_one_process_short_circuits_the_others(
    process_store_url: str,
) -> None:
    """Runtimes on one store stand for processes (each has its own pool or writer)."""
    calls: list[str] = []

    def down(request: object) -> str:
        calls.append("sent")
        raise ModelError("503 from the provider", status_code=503, transient=True)

    policy = Policy(retry=None, breaker=Breaker(failures=2, window=60, cooldown=60))
    agent = Agent(name="a", model=FunctionModel(down, name="flaky-model"), policy=policy)
    first, second = Runtime(process_store_url), Runtime(process_store_url)
    for _ in range(2):  # two transient failures in the first process open the circuit
        assert (await first.run(agent, "go")).status is RunStatus.FAILED
    assert len(calls) == 2
    other = await second.run(agent, "go")
    assert other.status is RunStatus.FAILED
    assert len(calls) == 2, "the second process's call was not sent"
    assert isinstance(other.error, dict) and other.error["type"] == "BreakerOpen"
    assert "circuit for test:flaky-model is open" in str(other.error["message"])
    [state] = await second.breakers()
    assert (state.name, state.state, state.probe_in > 50) == ("test:flaky-model", "open", True)
    await first.close()
    await second.close()
    third = Runtime(process_store_url)  # the state outlives the processes: it is in the store
    assert (await third.run(agent, "go")).status is RunStatus.FAILED
    assert len(calls) == 2
    await third.close()
