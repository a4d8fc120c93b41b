"""The journaled helpers `ctx.now`, `ctx.random`, `ctx.uuid`: a resume sees the
values of the first run."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from orchestrion import (
    Agent,
    RunContext,
    RunStatus,
    Runtime,
    UserError,
    workflow,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest
from orchestrion.testing import FunctionModel


def counting(name: str, calls: Counter[str]) -> Agent[str]:
    """An agent answering `<name> done`, counting its model requests."""

    def answer(request: ModelRequest) -> str:
        calls[name] += 1
        return f"{name} done"

    return Agent(name=name, model=FunctionModel(answer))


async def entries_of(store: Store, run_id: str) -> list[tuple[int, str, str]]:
    return [(e.seq, e.key, e.status.value) for e in await store.load(run_id)]


# -- the journaled helpers ---------------------------------------------------------------


async def test_now_random_and_uuid_resume_with_the_values_of_the_first_run(
    runtime: Runtime,
) -> None:
    calls: Counter[str] = Counter()
    members = [counting("alice", calls), counting("bob", calls), counting("carol", calls)]
    seen: list[tuple[datetime, float, UUID, str]] = []
    sent: Counter[str] = Counter()

    @workflow
    async def dispatch(ctx: RunContext[None], task: str) -> str:
        now = await ctx.now()
        rng = await ctx.random()
        request_id = await ctx.uuid()
        member = rng.choice(members)
        draw = rng.random()
        seen.append((now, draw, request_id, member.name))

        async def send() -> str:
            sent[str(request_id)] += 1  # an id sent to the outside, the same on every replay
            return "sent"

        await ctx.step(f"send-{request_id}", send)
        done = await ctx.run(member, task)
        answer = await ctx.interrupt({"close": str(request_id)})
        return f"{done} at {now:%Y} ({answer})"

    first = await runtime.run(dispatch, "ticket", run_id="h")
    result = await Runtime(runtime.store).resume(
        "h", {first.interrupts[0].id: "ok"}, runnable=dispatch
    )

    assert result.status is RunStatus.COMPLETED
    assert len(seen) == 2 and seen[0] == seen[1]
    now, _, request_id, member = seen[0]
    assert now.tzinfo is UTC
    assert request_id.version == 4
    assert sent == Counter({str(request_id): 1})
    assert calls == Counter({member: 1})
    history = {s.key: s for s in await runtime.history("h")}
    kinds = [history[f"dispatch/{k}-1"].kind for k in ("now", "random", "uuid")]
    assert kinds == ["clock", "random", "uuid"]
    assert history["dispatch/uuid-1"].result == str(request_id)
    assert datetime.fromtimestamp(history["dispatch/now-1"].result, UTC) == now


async def test_unnamed_helpers_are_numbered_per_kind(runtime: Runtime) -> None:
    @workflow
    async def stamps(ctx: RunContext[None], _: None) -> list[str]:
        await ctx.now()
        await ctx.random()
        await ctx.now()
        await ctx.uuid(name="order-id")
        return []

    result = await runtime.run(stamps, None)
    keys = [s.key for s in await runtime.history(result.run_id)]
    assert keys == ["stamps/now-1", "stamps/random-1", "stamps/now-2", "stamps/order-id"]


async def test_helpers_inside_gather_need_a_name(runtime: Runtime) -> None:
    @workflow
    async def unnamed(ctx: RunContext[None], _: None) -> Any:
        async def branch() -> datetime:
            return await ctx.now()

        return await ctx.gather(branch(), branch())

    with pytest.raises(UserError, match=r"ctx\.now inside ctx\.gather needs name=\.\.\."):
        await runtime.run(unnamed, None)

    @workflow
    async def named(ctx: RunContext[None], _: None) -> list[str]:
        async def branch(i: int) -> str:
            return str(await ctx.uuid(name=f"id-{i}"))

        return await ctx.gather(branch(0), branch(1))

    result = await runtime.run(named, None)
    history = {s.key: s.result for s in await runtime.history(result.run_id)}
    assert result.output == [history["named/id-0"], history["named/id-1"]]


async def test_a_fork_that_edits_a_journaled_random_seed_takes_the_new_path(
    runtime: Runtime,
) -> None:
    calls: Counter[str] = Counter()
    members = [counting(name, calls) for name in ("alice", "bob", "carol", "dave")]

    @workflow
    async def pick(ctx: RunContext[None], task: str) -> str:
        rng = await ctx.random()
        return str(await ctx.run(rng.choice(members), task))

    first = await runtime.run(pick, "task", run_id="p")
    seed = next(s.result for s in await runtime.history("p") if s.key == "pick/random-1")
    other = next(s for s in range(100) if random.Random(s).choice(members).name not in calls)
    forked = await runtime.fork("p", at="pick/random-1", edit=other, runnable=pick)
    assert forked.status is RunStatus.COMPLETED
    assert forked.output != first.output
    assert forked.output == f"{random.Random(other).choice(members).name} done"
    assert random.Random(seed).choice(members).name in str(first.output)
