"""Replay determinism, property-based: crash a run at any live step, resume it, and
get exactly the uninterrupted run's output, journal and effects."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion import Agent, RunContext, RunStatus, Runtime, tool
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest, ModelResponse
from orchestrion.testing import FunctionModel, call

from ..conftest import make_store

# A plan: turns of 1-3 tool calls, each (tool, argument); then a final answer.
calls_st = st.lists(
    st.tuples(st.sampled_from(["look", "pay"]), st.integers(0, 99)), min_size=1, max_size=3
)
plans = st.lists(calls_st, min_size=0, max_size=5)


class Crash(BaseException):
    """A simulated process death at a chosen live step."""


@dataclass
class World:
    """Everything outside the journal: a ledger honouring idempotency keys."""

    crash_at: int | None = None
    live: int = 0
    ledger: dict[str, int] = field(default_factory=dict)
    executions: dict[str, int] = field(default_factory=dict)
    model_requests: int = 0

    def tick(self) -> None:
        self.live += 1
        if self.crash_at is not None and self.live == self.crash_at:
            self.crash_at = None
            raise Crash


def build(plan: list[list[tuple[str, int]]], world: World) -> Agent[str]:
    @tool
    async def look(n: int) -> str:
        world.tick()
        return f"saw {n}"

    @tool(effect="write")
    async def pay(ctx: RunContext[None], n: int) -> str:
        key = ctx.idempotency_key
        world.executions[key] = world.executions.get(key, 0) + 1
        world.ledger.setdefault(key, n)  # the downstream dedupes by key
        world.tick()  # dying here = effect done, completion not journaled
        return f"paid {n}"

    def decide(request: ModelRequest) -> Any:
        world.model_requests += 1
        world.tick()
        turn = sum(isinstance(m, ModelResponse) for m in request.messages)
        if turn < len(plan):
            return [
                call(name, {"n": n}, id=f"c{turn}_{i}") for i, (name, n) in enumerate(plan[turn])
            ]
        return f"done after {turn} turns"

    # No loop guard: a plan may repeat a call six times, which the guard would stop,
    # and this test is about replay, not about loops.
    return Agent(
        name="p", model=FunctionModel(decide), tools=[look, pay], max_turns=10, loop_guard=None
    )


async def execute(
    plan: list[list[tuple[str, int]]], crash_at: int | None, open_store: Callable[[], Store]
) -> tuple[Any, ...]:
    """Run the plan, crashing at live step `crash_at`; resume from a fresh runtime."""
    world = World(crash_at=crash_at)
    agent = build(plan, world)
    async with Runtime(open_store()) as runtime:
        try:
            result = await runtime.run(agent, "go", run_id="r")
        except Crash:
            result = None
    crashed = result is None
    async with Runtime(open_store()) as runtime:  # a new process, as far as the run can tell
        if crashed:
            result = await runtime.resume("r", runnable=agent)
        history = [(s.key, s.status, s.result) for s in await runtime.history("r")]
    return result, history, world, crashed


def opener(store_kind: str, tmp: Path) -> Callable[[], Store]:
    if store_kind == "memory":
        store = make_store("memory", tmp)  # one object: memory does not outlive it
        return lambda: store
    return lambda: make_store("sqlite", tmp)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=plans, crash=st.integers(1, 25), store_kind=st.sampled_from(["memory", "sqlite"]))
def test_resume_after_a_crash_anywhere_equals_the_uninterrupted_run(
    plan: list[list[tuple[str, int]]],
    crash: int,
    store_kind: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    async def both() -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        reference = await execute(plan, None, opener(store_kind, tmp_path_factory.mktemp("ref")))
        crashed = await execute(plan, crash, opener(store_kind, tmp_path_factory.mktemp("crash")))
        return reference, crashed

    (ref, ref_history, ref_world, _), (got, history, world, crashed) = asyncio.run(both())

    assert ref.status is RunStatus.COMPLETED
    assert got.status is RunStatus.COMPLETED
    assert got.value == ref.value
    # The same steps with the same final states and results. Journal order may
    # differ where parallel tool calls finished in another order: keys do not.
    assert sorted(history) == sorted(ref_history)
    # Every payment landed exactly once downstream, under the same keys.
    assert world.ledger == ref_world.ledger
    # Nothing ran twice except the one step the crash cut off.
    extra_model = world.model_requests - ref_world.model_requests
    extra_writes = sum(world.executions.values()) - sum(ref_world.executions.values())
    allowed = {(0, 0), (1, 0), (0, 1)} if crashed else {(0, 0)}
    assert (extra_model, extra_writes) in allowed
