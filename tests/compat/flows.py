"""The runnables the `v3/` corpus was written by, shared by its generator and its
test: a resume needs the same code, step for step, as the run it continues.

`ledger_flow` journals one of nearly everything: a clock read, a random seed, a
uuid, a custom step that fails and one that returns, a fallback agent taking
over (`gave-up`), model attempts retried and failed over to a fallback model (one
opening a circuit, one meeting it open), a read tool retried, an approval
answered, a write tool started and completed, and a free interrupt left pending.
`crash_flow` is killed mid-way: a write tool started and not finished, a model
attempt waiting for its retry, a custom step completed.

What the models and tools do is decided by `Ledger` and by the models passed in,
so the generator (which made the runs) and the test (which resumes them) script
them differently while the step keys stay the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from orchestrion import Agent, Breaker, Policy, Retry, RetryLater, RunContext, tool, workflow
from orchestrion.models.base import Model

FAST = Retry(attempts=3, initial=0.001, jitter=0)


@dataclass
class Ledger:
    """The outside world of the corpus runs: what tools did, and how they behave."""

    payments: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    """The idempotency key of every write tool call, in call order."""
    lookups: int = 0
    hang: bool = False
    """The write tool of `crash_flow` never returns (the generator kills the process)."""
    pause: float = 0.0
    """Seconds `crash_flow`'s custom step takes."""


@tool
async def lookup(ctx: RunContext[Ledger], account: str) -> str:
    """The balance of an account; busy the first time it is asked."""
    ctx.deps.lookups += 1
    if ctx.deps.lookups == 1:
        raise RetryLater("the ledger is busy")
    return f"{account}: 120.00"


@tool(effect="write", approval=True)
async def pay(ctx: RunContext[Ledger], amount: float) -> str:
    """Pay `amount` from the account."""
    ctx.deps.keys.append(ctx.idempotency_key)
    ctx.deps.payments.append(amount)
    return f"paid {amount:.2f}"


@tool(effect="write")
async def transfer(ctx: RunContext[Ledger], amount: float) -> str:
    """Transfer `amount` to savings."""
    ctx.deps.keys.append(ctx.idempotency_key)
    if ctx.deps.hang:
        await asyncio.sleep(3600)
    ctx.deps.payments.append(amount)
    return f"transferred {amount:.2f}"


@dataclass(frozen=True)
class Models:
    """The models of the corpus's agents, by role."""

    triage: Model
    backup_desk: Model
    clerk: Model
    clerk_backup: Model
    writer: Model
    reader: Model


def ledger_flow(models: Models) -> Any:
    backup_desk = Agent(name="backup-desk", model=models.backup_desk)
    triage = Agent(
        name="triage", model=models.triage, policy=Policy(retry=False, fallback=[backup_desk])
    )
    clerk = Agent(
        name="clerk",
        model=models.clerk,
        tools=[lookup, pay],
        policy=Policy(
            retry=FAST,
            breaker=Breaker(failures=2, cooldown=3600),
            fallback=[models.clerk_backup],
        ),
    )

    async def audit() -> str:
        raise ValueError("the auditor is out")

    async def note() -> dict[str, Any]:
        return {"note": "customer prefers email", "priority": 2}

    @workflow(name="ledger-flow")
    async def flow(ctx: RunContext[Ledger], request: str) -> str:
        at = await ctx.now()
        rng = await ctx.random()
        receipt = await ctx.uuid()
        with contextlib.suppress(ValueError):  # optional; it fails every time it runs
            await ctx.step("audit", audit)
        noted = await ctx.step("note", note)
        desk = await ctx.run(triage, request)
        paid = await ctx.run(clerk, request)
        more = await ctx.interrupt({"question": "Anything else?"}, name="more")
        return (
            f"{desk} | {paid} | {noted['note']} | {more} | {receipt} "
            f"{rng.randrange(1000)} {at.year}"
        )

    return flow


def crash_flow(models: Models) -> Any:
    writer = Agent(name="writer", model=models.writer, tools=[transfer])
    reader = Agent(
        name="reader", model=models.reader, policy=Policy(retry=Retry(initial=5.0, jitter=0))
    )

    @workflow(name="crash-flow")
    async def flow(ctx: RunContext[Ledger], request: str) -> str:
        async def slow() -> str:
            await asyncio.sleep(ctx.deps.pause)
            return "slow done"

        done, wrote, read = await ctx.gather(
            ctx.step("slow", slow), ctx.run(writer, request), ctx.run(reader, request)
        )
        return f"{done} | {wrote} | {read}"

    return flow
