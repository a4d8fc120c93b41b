"""No false determinism errors: every built-in pattern, crashed at each of its live
model requests in turn and resumed, ends with the output of an uninterrupted run.

Branches answer after different numbers of event-loop turns, so concurrent steps
are journaled in another order than they are asked for on resume.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrion import (
    Agent,
    Approve,
    Concurrent,
    GroupChat,
    Handoff,
    MaxTurns,
    PeerNetwork,
    Policy,
    RunContext,
    RunResult,
    RunStatus,
    Runtime,
    Sequential,
    StepStatus,
    Supervisor,
    tool,
    workflow,
)
from orchestrion.errors import ModelError
from orchestrion.messages import ModelRequest, ToolResult, UserMessage
from orchestrion.runnable import Runnable
from orchestrion.testing import FunctionModel, call

from ..engine._support import Crash


@dataclass
class World:
    """Everything outside the journal: the crash switch and a ledger of writes."""

    crash_at: int | None = None
    live: int = 0
    ledger: Counter[str] = field(default_factory=Counter)

    def tick(self) -> None:
        self.live += 1
        if self.live == self.crash_at:
            self.crash_at = None
            raise Crash(f"the process dies at live model request {self.live}")


Plan = Callable[[ModelRequest], Any]


def agent(world: World, name: str, plan: Plan, *, delay: int = 0, **kwargs: Any) -> Agent[Any]:
    """An agent whose model answers with `plan` after `delay` event-loop turns."""

    async def answer(request: ModelRequest) -> Any:
        for _ in range(delay):
            await asyncio.sleep(0)
        world.tick()
        return plan(request)

    return Agent(name=name, model=FunctionModel(answer, name=name), **kwargs)


def task_of(request: ModelRequest) -> str:
    first = request.messages[0]
    assert isinstance(first, UserMessage)
    return first.content


def results(request: ModelRequest) -> list[str]:
    return [m.content for m in request.messages if isinstance(m, ToolResult)]


def echo(world: World, name: str, *, delay: int = 0) -> Agent[Any]:
    return agent(world, name, lambda r: f"{name}({task_of(r)})", delay=delay)


def looker(world: World, name: str, *, delay: int = 0) -> Agent[Any]:
    """Looks two things up at once, then answers with what it saw."""

    @tool
    async def look(q: str) -> str:
        return f"{q}!"

    def plan(request: ModelRequest) -> Any:
        seen = results(request)
        if not seen:
            return [call("look", {"q": f"{name}-{i}"}, id=f"l{i}") for i in (1, 2)]
        return f"{name}: {' '.join(seen)}"

    return agent(world, name, plan, delay=delay, tools=[look], description=f"The {name} desk.")


def payer(world: World, name: str, *, approval: bool = False, delay: int = 0) -> Agent[Any]:
    """Reads and pays at once (the payment a write tool, approved by a human if asked)."""

    @tool
    async def balance() -> str:
        return "4800"

    @tool(effect="write", approval=approval)
    async def pay(ctx: RunContext[None], amount: int) -> str:
        world.ledger[ctx.idempotency_key] += 1
        return f"paid {amount}"

    def plan(request: ModelRequest) -> Any:
        seen = results(request)
        if not seen:
            return [call("balance", id="b1"), call("pay", {"amount": 120}, id="p1")]
        return f"{name}: {' and '.join(seen)}"

    return agent(world, name, plan, delay=delay, tools=[balance, pay], description=f"{name} desk")


def sequential(world: World) -> Runnable:
    return Sequential(
        name="pipe",
        members=[looker(world, "extract"), echo(world, "summarize"), payer(world, "file")],
    )


def concurrent(world: World) -> Runnable:
    return Concurrent(
        name="fan",
        branches=[
            looker(world, "slow", delay=6),
            payer(world, "mid", delay=3),
            echo(world, "fast"),
        ],
        aggregator=echo(world, "join"),
    )


def supervisor(world: World) -> Runnable:
    def plan(request: ModelRequest) -> Any:
        done = results(request)
        if not done:
            return [
                call("delegate_to_slow", {"task": "look"}, id="d1"),
                call("delegate_to_payer", {"task": "pay"}, id="d2"),
                call("delegate_to_fast", {"task": "echo"}, id="d3"),
            ]
        return " | ".join(done)

    return Supervisor(
        name="team",
        manager=agent(world, "manager", plan),
        workers=[
            looker(world, "slow", delay=5),
            payer(world, "payer", approval=True, delay=2),
            echo(world, "fast"),
        ],
    )


def handoff(world: World) -> Runnable:
    def triage(request: ModelRequest) -> Any:
        return call("transfer_to_billing", {"reason": "refund"}, id="t1")

    return Handoff(
        name="support",
        agents=[agent(world, "triage", triage), payer(world, "billing", approval=True)],
    )


def group_chat(world: World) -> Runnable:
    def select(request: ModelRequest) -> str:
        return ["writer", "critic", "writer"][task_of(request).count("\n[") - 1]

    return GroupChat(
        name="review",
        participants=[looker(world, "writer"), echo(world, "critic")],
        speaker=agent(world, "selector", select),
        termination=MaxTurns(3),
    )


def peer_network(world: World) -> Runnable:
    def alice(request: ModelRequest) -> Any:
        if results(request):
            return "asked"
        if "from user" in task_of(request):
            return [
                call("send_message", {"to": "bob", "content": "balance?"}, id="a1"),
                call("send_message", {"to": "carol", "content": "loan?"}, id="a2"),
            ]
        return call("finish", {"answer": task_of(request).replace("\n", " ")}, id="a3")

    def reply(name: str) -> Plan:
        def plan(request: ModelRequest) -> Any:
            if results(request):
                return "replied"
            return call("send_message", {"to": "alice", "content": f"{name} says ok"}, id="r1")

        return plan

    return PeerNetwork(
        name="net",
        agents=[
            agent(world, "alice", alice),
            agent(world, "bob", reply("bob"), delay=4),
            agent(world, "carol", reply("carol")),
        ],
        edges={"alice": ["bob", "carol"], "bob": ["alice"], "carol": ["alice"]},
    )


def approvals(world: World) -> Runnable:
    return payer(world, "teller", approval=True)


def fallback(world: World) -> Runnable:
    """An agent that looks things up, then fails for good: its fallback agent takes over."""

    @tool
    async def look(q: str) -> str:
        return f"{q}!"

    def breaks_in_turn_2(request: ModelRequest) -> Any:
        if results(request):
            raise ModelError("the provider is down for good")
        return call("look", {"q": "primary"}, id="l1")

    policy = Policy(retry=False, fallback=[looker(world, "backup")])
    return agent(world, "primary", breaks_in_turn_2, tools=[look], policy=policy)


def custom_workflow(world: World) -> Runnable:
    members = [looker(world, "a", delay=3), payer(world, "b", approval=True), echo(world, "c")]

    @workflow
    async def flow(ctx: RunContext[None], task: str) -> list[Any]:
        async def fetch() -> str:
            return "fetched"

        started = await ctx.now()
        gathered = await ctx.gather(
            ctx.run(members[0], task, key="left"),
            ctx.run(members[1], task, key="right"),
            ctx.step("fetch", fetch),
        )
        rng = await ctx.random()
        last = await ctx.run(members[2], str(gathered), key=f"pick-{rng.randrange(10**6)}")
        return [started.year > 2000, *gathered, last]

    return flow


def step_around_a_run(world: World) -> Runnable:
    """A `ctx.step` whose function runs an agent in the workflow's own scope (no key)."""
    reviewer, writer = looker(world, "reviewer"), looker(world, "writer")

    @workflow
    async def flow(ctx: RunContext[None], task: str) -> Any:
        reviewed = await ctx.step("review", lambda: ctx.run(reviewer, task))
        return await ctx.run(writer, reviewed)

    return flow


def nested(world: World) -> Runnable:
    """A pipeline of a fan-out and a team: patterns inside patterns."""
    return Sequential(name="outer", members=[concurrent(world), supervisor(world)])


PATTERNS: dict[str, Callable[[World], Runnable]] = {
    "sequential": sequential,
    "concurrent": concurrent,
    "supervisor": supervisor,
    "handoff": handoff,
    "group_chat": group_chat,
    "peer_network": peer_network,
    "approvals": approvals,
    "fallback": fallback,
    "workflow": custom_workflow,
    "step_around_a_run": step_around_a_run,
    "nested": nested,
}


async def drive(
    runtime: Runtime, build: Callable[[World], Runnable], world: World, run_id: str
) -> RunResult[Any]:
    """Run to the end, approving every interrupt and resuming after every crash, each
    resume from a fresh runtime (a new process, as far as the run can tell)."""
    result: RunResult[Any] | None
    try:
        result = await runtime.run(build(world), "go", run_id=run_id)
    except Crash:
        result = None
    for _ in range(10):
        if result is not None and result.status is not RunStatus.INTERRUPTED:
            return result
        answers = {i.id: Approve() for i in result.interrupts} if result is not None else {}
        try:
            result = await Runtime(runtime.store).resume(run_id, answers, runnable=build(world))
        except Crash:
            result = None
    raise AssertionError(f"run {run_id} did not end")


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_a_crash_at_any_model_request_then_resume_completes_as_a_straight_run(
    runtime: Runtime, pattern: str
) -> None:
    build = PATTERNS[pattern]
    reference = World()
    straight = await drive(runtime, build, reference, "straight")
    assert straight.status is RunStatus.COMPLETED, straight.error
    assert reference.live > 1
    for crash_at in range(1, reference.live + 1):
        world = World(crash_at=crash_at)
        result = await drive(runtime, build, world, f"crash-{crash_at}")
        assert result.status is RunStatus.COMPLETED, (crash_at, result.error)
        assert result.value == straight.value, crash_at
        assert world.crash_at is None, crash_at  # the crash did happen
        assert sorted(world.ledger.values()) == sorted(reference.ledger.values()), crash_at


async def finish(runtime: Runtime, result: RunResult[Any], runnable: Runnable) -> RunResult[Any]:
    """Approve whatever the run waits for until it ends."""
    for _ in range(10):
        if result.status is not RunStatus.INTERRUPTED:
            return result
        answers = {i.id: Approve() for i in result.interrupts}
        result = await runtime.resume(result.run_id, answers, runnable=runnable)
    raise AssertionError(f"run {result.run_id} did not end")


@pytest.mark.parametrize("pattern", PATTERNS)
async def test_a_fork_at_any_model_step_with_that_step_edited_completes(
    runtime: Runtime, pattern: str
) -> None:
    build = PATTERNS[pattern]
    straight = await drive(runtime, build, World(), "straight")
    history = await runtime.history("straight")
    models = [s for s in history if s.kind == "model" and s.status is StepStatus.COMPLETED]
    assert models
    for i, step in enumerate(models):
        runnable = build(World())
        forked = await runtime.fork(
            "straight", at=step.key, edit=step.result, new_run_id=f"fork-{i}", runnable=runnable
        )
        forked = await finish(runtime, forked, runnable)
        assert forked.status is RunStatus.COMPLETED, (step.key, forked.error)
        assert forked.value == straight.value, step.key
