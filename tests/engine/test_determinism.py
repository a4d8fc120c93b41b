"""Code that takes another path on resume fails before its new step runs; the
journaled helpers (`ctx.now`, `ctx.random`, `ctx.uuid`) keep it on the path."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from orchestrion import (
    Agent,
    Concurrent,
    DeterminismError,
    GroupChat,
    MaxTurns,
    RunContext,
    RunStatus,
    Runtime,
    UserError,
    workflow,
)
from orchestrion.engine.store import Store
from orchestrion.messages import ModelRequest
from orchestrion.testing import FunctionModel

from ._support import Crash


def counting(name: str, calls: Counter[str]) -> Agent[str]:
    """An agent answering `<name> done`, counting its model requests."""

    def answer(request: ModelRequest) -> str:
        calls[name] += 1
        return f"{name} done"

    return Agent(name=name, model=FunctionModel(answer))


async def entries_of(store: Store, run_id: str) -> list[tuple[int, str, str]]:
    return [(e.seq, e.key, e.status.value) for e in await store.load(run_id)]


# -- code that takes another path ------------------------------------------------------


async def test_a_step_named_from_random_fails_on_resume_before_it_runs_again(
    runtime: Runtime,
) -> None:
    charges: list[str] = []

    @workflow
    async def checkout(ctx: RunContext[None], order: str) -> str:
        async def charge() -> str:
            charges.append(order)  # the side effect: a card is charged
            return "charged"

        await ctx.step(f"charge-{random.randrange(10**12)}", charge)
        approved = await ctx.interrupt({"ship": order})
        return f"shipped {order}: {approved}"

    first = await runtime.run(checkout, "order-7", run_id="r")
    assert first.status is RunStatus.INTERRUPTED
    [charged] = [s.key for s in await runtime.history("r") if s.key.startswith("checkout/charge-")]
    before = await entries_of(runtime.store, "r")

    with pytest.raises(DeterminismError) as info:
        await Runtime(runtime.store).resume("r", {first.interrupts[0].id: "yes"}, runnable=checkout)

    assert charges == ["order-7"]  # not charged again
    message = str(info.value)
    [new] = {k for k in message.split("'") if k.startswith("checkout/charge-") and k != charged}
    assert f"asks for step '{new}', which its journal does not have" in message
    assert f"while '{charged}', journaled in the same scope 'checkout', was never asked for" in (
        message
    )
    assert "ctx.now(), ctx.random() or ctx.uuid()" in message
    assert f"orchestrion fork r --at {charged}" in message
    record = await runtime.get("r")
    assert record.status is RunStatus.FAILED
    assert record.error is not None and record.error["type"] == "DeterminismError"
    assert await entries_of(runtime.store, "r") == before  # nothing journaled for the new step


async def test_a_step_named_from_the_clock_fails_on_resume_after_a_crash(runtime: Runtime) -> None:
    sent: list[str] = []
    crash = {"armed": True}

    @workflow
    async def report(ctx: RunContext[None], _: None) -> str:
        async def send() -> str:
            sent.append("report")
            return "sent"

        async def archive() -> str:
            if crash["armed"]:
                crash["armed"] = False
                raise Crash("the process dies")
            return "archived"

        await ctx.step(f"send-{time.time_ns()}", send)
        return str(await ctx.step("archive", archive))

    with pytest.raises(Crash):
        await runtime.run(report, None, run_id="c")
    diverged = r"asks for step 'report/send-\d+'.*while 'report/send-"
    with pytest.raises(DeterminismError, match=diverged):
        await Runtime(runtime.store).resume("c", runnable=report)
    assert sent == ["report"]
    assert (await runtime.get("c")).status is RunStatus.FAILED


async def test_a_member_picked_at_random_fails_before_its_model_is_asked(runtime: Runtime) -> None:
    calls: Counter[str] = Counter()
    members = [counting("alice", calls), counting("bob", calls)]
    picks = iter([0, 1])  # what random.choice gave in the first process, then in the second

    @workflow
    async def assign(ctx: RunContext[None], task: str) -> str:
        done = await ctx.run(members[next(picks)], task)
        return str(done) + " / " + await ctx.interrupt("close the ticket?")

    first = await runtime.run(assign, "ticket", run_id="m")
    assert calls == Counter(alice=1)
    with pytest.raises(DeterminismError) as info:
        await Runtime(runtime.store).resume("m", {first.interrupts[0].id: "ok"}, runnable=assign)
    assert calls == Counter(alice=1)  # bob's model never asked
    message = str(info.value)
    assert "asks for step 'assign/bob/turn-1/model'" in message
    assert "while 'assign/alice/turn-1/model', journaled in the same scope 'assign'" in message


async def test_a_workflow_member_picked_at_random_fails_before_its_first_step(
    runtime: Runtime,
) -> None:
    effects: list[str] = []

    def member(name: str) -> Any:
        @workflow(name=name)
        async def flow(ctx: RunContext[None], task: str) -> str:
            async def prepare() -> str:
                effects.append(name)
                return "ready"

            await ctx.step("prepare", prepare)
            return await ctx.interrupt(f"{name}: go?")

        return flow

    members = [member("alice"), member("bob")]
    picks = iter([0, 1])

    @workflow
    async def assign(ctx: RunContext[None], task: str) -> str:
        return str(await ctx.run(members[next(picks)], task))

    first = await runtime.run(assign, "ticket", run_id="w")
    with pytest.raises(DeterminismError, match=r"'assign/bob/prepare'.*'assign/alice/prepare'"):
        await Runtime(runtime.store).resume("w", {first.interrupts[0].id: "go"}, runnable=assign)
    assert effects == ["alice"]


async def test_a_speaker_function_picking_at_random_fails_on_resume(runtime: Runtime) -> None:
    calls: Counter[str] = Counter()
    picks = iter(["a", "b", "b"])  # one process picks a, then b; its resume starts with b
    crash = {"armed": True}

    def b_dies_once(request: ModelRequest) -> str:
        if crash["armed"]:
            crash["armed"] = False
            raise Crash("the process dies")
        return "b done"

    chat = GroupChat(
        name="chat",
        participants=[counting("a", calls), Agent(name="b", model=FunctionModel(b_dies_once))],
        speaker=lambda state, names: next(picks),
        termination=MaxTurns(2),
        loop_guard=None,
    )
    with pytest.raises(Crash):
        await runtime.run(chat, "topic", run_id="g")
    with pytest.raises(DeterminismError, match=r"'chat/turn-1/b/turn-1/model'.*'chat/turn-1/a/"):
        await Runtime(runtime.store).resume("g", runnable=chat)
    assert calls == Counter(a=1)
    assert crash == {"armed": False}


async def test_divergence_inside_a_concurrent_branch_is_caught_too(runtime: Runtime) -> None:
    effects: list[str] = []

    @workflow
    async def notify(ctx: RunContext[None], text: str) -> str:
        async def page() -> str:
            effects.append("page")
            return "paged"

        await ctx.step(f"page-{random.randrange(10**12)}", page)
        return await ctx.interrupt("acknowledged?")

    calls: Counter[str] = Counter()
    fan = Concurrent(name="fan", branches=[notify, counting("logs", calls)])
    first = await runtime.run(fan, "incident", run_id="f")
    assert first.status is RunStatus.INTERRUPTED
    with pytest.raises(DeterminismError, match=r"same scope 'fan/branch-0/notify'"):
        await Runtime(runtime.store).resume("f", {first.interrupts[0].id: "yes"}, runnable=fan)
    assert effects == ["page"]
    assert calls == Counter(logs=1)


# -- other paths that are right ---------------------------------------------------------


async def test_a_step_that_failed_and_succeeds_on_resume_may_lead_elsewhere(
    runtime: Runtime,
) -> None:
    state = {"down": True, "crash": True}

    @workflow
    async def flow(ctx: RunContext[None], _: None) -> str:
        async def fetch() -> str:
            if state["down"]:
                raise ConnectionError("the service is down")
            return "live"

        async def cached() -> str:
            return "cached"

        try:
            data = await ctx.step("fetch", fetch)
        except ConnectionError:
            data = await ctx.step("cached", cached)

        async def publish() -> str:
            if state["crash"]:
                state["crash"] = False
                raise Crash("the process dies")
            return str(data)

        return str(await ctx.step("publish", publish))

    with pytest.raises(Crash):
        await runtime.run(flow, None, run_id="f")
    state["down"] = False
    # The failed step runs again on resume, succeeds, and the journaled fallback is moot.
    result = await Runtime(runtime.store).resume("f", runnable=flow)
    assert result.output == "live"


async def test_steps_awaited_with_a_plain_asyncio_gather_resume(runtime: Runtime) -> None:
    crash = {"armed": True}
    runs: Counter[str] = Counter()

    @workflow
    async def flow(ctx: RunContext[None], _: None) -> list[str]:
        async def slow() -> str:
            runs["slow"] += 1
            for _ in range(3):
                await asyncio.sleep(0)
            if crash["armed"]:
                crash["armed"] = False
                raise Crash("the process dies")
            return "slow"

        async def fast() -> str:
            runs["fast"] += 1
            return "fast"

        # Not ctx.gather: on resume "slow" is asked for before "fast", whose task
        # has not started yet; the check cannot see that it will, so stays silent.
        return list(await asyncio.gather(ctx.step("slow", slow), ctx.step("fast", fast)))

    with pytest.raises(Crash):
        await runtime.run(flow, None, run_id="g")
    assert [s.key for s in await runtime.history("g")] == ["flow/fast"]
    result = await Runtime(runtime.store).resume("g", runnable=flow)
    assert result.output == ["slow", "fast"]
    assert runs == Counter(slow=2, fast=1)


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
