"""Rate limits of model calls: the allowance's arithmetic, journaled waits, a run
stopped rather than left waiting too long, and one allowance shared by two
runtimes on one PostgreSQL store (as two workers share it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrion import (
    Agent,
    Policy,
    RateLimit,
    RunStatus,
    Runtime,
    UserError,
    tool,
)
from orchestrion.engine.rate_limits import Allowance, MemoryLimits
from orchestrion.engine.records import AttemptFailed, decode
from orchestrion.engine.store import Store
from orchestrion.testing import ScriptedModel, call
from tests.conftest import drop_schema, make_store


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@tool
async def lookup(i: int) -> str:
    """Look up item i."""
    return f"item {i}"


def agent(calls: int, limit: RateLimit) -> Agent[None, str]:
    script = [call("lookup", {"i": i}) for i in range(calls - 1)] + ["done"]
    return Agent(
        name="looker",
        model=ScriptedModel(script * 10),
        tools=[lookup],
        policy=Policy(rate_limit=limit),
    )


def test_an_allowance_drains_at_its_rate_and_says_how_long_to_wait() -> None:
    limit = RateLimit(requests=2, tokens=100, per=10)
    allowance = Allowance(at=0.0)
    assert allowance.take(limit, 0.0) == 0 and allowance.take(limit, 0.0) == 0
    assert allowance.take(limit, 0.0) == pytest.approx(5.0)  # one request drains in 5 s
    assert allowance.take(limit, 5.0) == 0
    allowance.spend(limit, 150, None, 5.0)  # a response over the token limit
    assert allowance.take(limit, 5.0) == pytest.approx(5.0, abs=0.01)  # 50 tokens to drain
    assert allowance.take(limit, 10.01) == 0
    spend = RateLimit(cost=1.0, per=100)
    paid = Allowance(at=0.0)
    paid.spend(spend, 0, 1.5, 0.0)
    assert paid.take(spend, 0.0) == pytest.approx(50.0, abs=0.01)


def test_a_rate_limit_without_a_limit_or_with_bad_numbers_is_refused() -> None:
    with pytest.raises(UserError, match="give requests="):
        RateLimit()
    with pytest.raises(UserError, match="requests=0"):
        RateLimit(requests=0)
    with pytest.raises(UserError, match="per="):
        RateLimit(requests=1, per=0)
    with pytest.raises(UserError, match="rate_limit="):
        Policy(rate_limit=3)  # type: ignore[arg-type]


async def test_calls_over_the_limit_wait_and_each_wait_is_journaled(runtime: Runtime) -> None:
    limited = agent(4, RateLimit(requests=2, per=0.4))
    result = await runtime.run(limited, "go")
    assert result.status is RunStatus.COMPLETED
    entries = await runtime.store.load(result.run_id)
    waits = [decode(e) for e in entries if e.status.value == "failed"]
    assert waits and all(isinstance(w, AttemptFailed) for w in waits)
    assert all(w.error["type"] == "RateLimited" and w.retry_in for w in waits)  # type: ignore[union-attr,index]
    assert all(w.attempt == 0 for w in waits)  # type: ignore[union-attr]
    assert result.usage.requests == 4


async def test_a_wait_past_max_wait_stops_the_run_and_a_later_resume_goes_on(
    store: Store,
) -> None:
    clock = Clock()
    runtime = Runtime(store, rate_limits=MemoryLimits(clock))
    limited = agent(3, RateLimit(requests=1, per=60, max_wait=1))
    result = await runtime.run(limited, "go")
    assert result.status is RunStatus.STOPPED
    assert result.error is not None and result.error["type"] == "RateLimitReached"
    assert result.error["rate_limit"] == "test:scripted" and "max_wait" in result.error["message"]
    assert result.usage.requests == 1

    clock.now = 120  # the allowance has refilled (two calls' worth)
    resumed = await runtime.resume(result.run_id, runnable=limited)
    assert resumed.status is RunStatus.STOPPED  # one call, then over again
    clock.now = 300
    resumed = await runtime.resume(result.run_id, runnable=limited)
    assert resumed.status is RunStatus.COMPLETED
    assert resumed.usage.requests == 3


async def test_models_with_one_key_share_one_allowance(runtime: Runtime) -> None:
    shared = RateLimit(requests=2, per=60, max_wait=0.5, key="fleet")
    first = await runtime.run(agent(2, shared), "a")
    assert first.status is RunStatus.COMPLETED
    other = Agent(
        name="other",
        model=ScriptedModel(["hi"], name="another-model"),
        policy=Policy(rate_limit=shared),
    )
    second = await runtime.run(other, "b")
    assert second.status is RunStatus.STOPPED
    assert second.error is not None and second.error["rate_limit"] == "fleet"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_runtimes_on_one_shared_store_draw_from_one_allowance(
    tmp_path: Path, kind: str
) -> None:
    first_store = make_store(kind, tmp_path)
    second_store = make_store(kind, tmp_path)  # the same file; for PostgreSQL, see below
    if kind == "postgres":
        second_store.schema = first_store.schema  # type: ignore[attr-defined]
    limit = RateLimit(requests=3, per=60, max_wait=0.5)
    try:
        a, b = Runtime(first_store), Runtime(second_store)
        results = await asyncio.gather(a.run(agent(2, limit), "a"), b.run(agent(2, limit), "b"))
        # Four calls wanted, three allowed a minute between both: one run stops.
        statuses = sorted(r.status.value for r in results)
        assert statuses == ["completed", "stopped"]
        assert sum(r.usage.requests for r in results) == 3
    finally:
        await second_store.close()
        await first_store.close()
        await drop_schema(first_store)
