"""Running any runnable at a scope: the one place that knows agents from workflows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any

from orchestrion import keys
from orchestrion._json import JSON, to_jsonable
from orchestrion.agent import Agent, fallback_chain
from orchestrion.engine.agent_loop import run_agent
from orchestrion.engine.divergence import THREAD, Thread
from orchestrion.engine.execution import Context, Execution
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.records import GaveUp
from orchestrion.errors import NestingTooDeep, RunError, RunHalted, describe
from orchestrion.runnable import Runnable

MAX_NESTING = 50
"""How deep members may nest (a pattern in a pattern, a worker's agent, ...): far
beyond any real team, well before Python's recursion limit."""

_depth: ContextVar[int] = ContextVar("orchestrion_nesting", default=0)
"""The members being run around this point; a context variable, so each branch
of a gather counts its own."""


async def run_child(ex: Execution, scope: str, key: str, runnable: Runnable, input: JSON) -> Any:
    """Run `runnable` in `scope` with its steps keyed under `key`, its member key
    (`keys.member_keys`: `<scope>/<its name>`, or its bare name at the root of a run)."""
    depth = _depth.get() + 1 if scope else 1  # a run started inside a tool starts over
    if depth > MAX_NESTING:
        raise NestingTooDeep(
            f"Run {ex.run_id} nests members {depth} deep, past the limit of {MAX_NESTING}, "
            f"at {keys.shorten(key)}: a workflow or agent that runs itself needs a condition "
            "that ends it."
        )
    token = _depth.set(depth)
    # The run itself: its task is the run's first sequential thread (as `thread("")`
    # makes it, without a coroutine more for each run held at once).
    root = None if scope else THREAD.set(Thread(asyncio.current_task(), ""))
    try:
        if isinstance(runnable, Agent):
            if runnable.fallback_agents:
                work: Awaitable[Any] = _with_fallback(ex, key, runnable, input)
            else:
                work = run_agent(ex, key, runnable, input)
        else:
            work = runnable.invoke(Context(ex, key), input)
        tracing = ex.env.tracing
        if tracing is not None and scope:  # (the run itself is its execution's span)
            work = tracing.member(ex.run_id, key, runnable, work)
        output = await work
    finally:
        _depth.reset(token)
        if root is not None:
            THREAD.reset(root)
    if scope:  # a member, not the run itself: a run stopped at a limit returns these
        ex.outputs[key] = output
    return output


async def _with_fallback(ex: Execution, primary: str, agent: Agent[Any, Any], input: JSON) -> Any:
    """Run `agent` (at `primary`), and on failure each of its fallback agents in turn (theirs too),
    on the same input, keyed under `<agent's key>/fallback/`. Giving up on one is the
    journaled step `<its key>/gave-up`, so a resume goes straight to the agent that
    was working. An agent whose write tool ran is not replaced: its replacement
    would repeat the write under another idempotency key."""
    chain = fallback_chain(agent)
    for i, member in enumerate(chain):
        key = primary if i == 0 else keys.fallback_key(primary, member.name)
        if i == len(chain) - 1:
            return await run_agent(ex, key, member, input)
        mark = keys.gave_up_key(key)
        site = f"the fallback from agent {member.name!r}"
        recorded = ex.log.replay.get(mark)
        if recorded is not None and recorded.status is StepStatus.COMPLETED:
            ex.log.claim(mark, site)  # a step only where the agent did give up
            # What the agent spent before it gave up; its fallbacks' steps replay themselves.
            besides = keys.fallback_scope(primary) if i == 0 else None
            ex.accounts.spent_below(key, besides=besides)
            ex.log.divergence.skipped(key, besides=besides)
            ex.events.step_replayed(mark, "fallback", recorded.result)
            continue
        started = time.time()
        try:
            return await run_agent(ex, key, member, input)
        except RunHalted:
            raise  # a limit of the whole run: no fallback may go on
        except RunError as exc:
            following = chain[i + 1].name
            wrote = ex.log.writes_below(key)
            if wrote:
                raise RunError(
                    f"Agent {member.name!r} failed after its write tool call {wrote[0]} ran, "
                    f"so its fallback {following!r} was not started: it would repeat the "
                    f"write under another idempotency key. The failure: {exc}"
                ) from exc
            gave_up = GaveUp(error=describe(exc), agent=member.name, fallback=following)
            ex.log.claim(mark, site)
            await ex.completed(mark, "fallback", gave_up, started)
            ex.events.fallback_used(key, member.name, following, exc)
    raise AssertionError("unreachable: the last agent of the chain returns or raises")


def partial_outputs(outputs: dict[str, Any]) -> dict[str, JSON]:
    """The outputs of the members that finished (`Execution.outputs`), outermost
    only: a finished member's own members are part of its output. A run stopped at
    a limit returns them."""
    outer = set(outputs)
    return {
        key: to_jsonable(value)
        for key, value in outputs.items()
        if not any(scope in outer for scope in keys.ancestors(key))
    }
