"""An agent's loop guard: repeated identical tool calls, a write tool called again
and again (any arguments), and delegations that go in circles (a worker
returning a result it already gave, however it was asked).

Decided from the conversation only (journaled responses and tool results), so
a replay finds the same loops at the same turns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrion import keys
from orchestrion.agent import Agent
from orchestrion.engine.execution import Context
from orchestrion.guards import LoopGuard
from orchestrion.loops import react
from orchestrion.messages import ToolCall, ToolResult
from orchestrion.tools.roles import Delegate, FinalResult, Transfer


@dataclass(slots=True)
class CallMemory:
    """What one agent run has called so far."""

    attempts: dict[str, list[str]] = field(default_factory=dict)
    """Results of each distinct call (tool name and argument text)."""
    outcomes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """Tasks given to each worker that returned a given result."""
    delegations: list[str] = field(default_factory=list)
    """Workers in the order they were delegated to."""
    writes: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    """(turn, argument text, result) of each call of each write tool."""


async def guard_calls(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    calls: tuple[ToolCall, ...],
    results: list[ToolResult],
    memory: CallMemory,
    written: Mapping[int, str],
) -> list[ToolResult]:
    """This turn's results, with a note added to each one that closes a loop
    (`written`: the notes `guard_writes` gave before the tools ran)."""
    guarded: list[ToolResult] = []
    for i, (c, result) in enumerate(zip(calls, results, strict=True)):
        role = agent.tool_roles.get(c.name)
        if isinstance(role, FinalResult | Transfer):
            guarded.append(result)
            continue
        note = await _repeated_call(ctx, agent, guard, i, c, result, memory)
        if not note and isinstance(role, Delegate) and not result.is_error:
            note = await _circling_delegation(ctx, agent, guard, i, c, role, result, memory)
        tool = agent.tool_map.get(c.name)
        if tool is not None and tool.effect == "write":
            memory.writes.setdefault(c.name, []).append((ctx.key, c.arguments, result.content))
            note = note or written.get(i, "")
        guarded.append(
            ToolResult(result.call_id, result.name, result.content + note, result.is_error)
            if note
            else result
        )
    return guarded


async def _repeated_call(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    result: ToolResult,
    memory: CallMemory,
) -> str:
    tries = memory.attempts.setdefault(f"{c.name}\x00{c.arguments.strip()}", [])
    tries.append(result.content)
    if len(tries) < guard.repeats:
        return ""
    fix = "or use LoopGuard(policy='warn')"
    if guard.policy == "warn" and tries.count(result.content) >= 2 * guard.repeats:
        # Warned since the `repeats`-th call, and the same answer again: stuck, not polling.
        guard = replace(guard, policy="stop")
        fix = (
            f"or raise LoopGuard(repeats=...): it got the same result "
            f"{tries.count(result.content)} times, though warned since the {_nth(guard.repeats)}"
        )
    await react(
        ctx,
        guard,
        kind="tool",
        subject=c.name,
        times=len(tries),
        question={"agent": agent.name, "tool": c.name, "arguments": c.arguments},
        name=keys.numbered("loop-guard", i),
        stop=(
            f"Agent {agent.name!r} called {c.name} with the same arguments {len(tries)} times "
            f"({c.arguments[:200]}); its loop guard stopped the run. Improve its instructions "
            f"or tools, {fix}."
        ),
    )
    earlier = "\n".join(f"- attempt {k}: {t[:300]}" for k, t in enumerate(tries[:-1], 1))
    return (
        f"\n\n[loop guard] You have called {c.name} with these arguments {len(tries)} times. "
        f"Earlier results:\n{earlier}\nDo not repeat it: use what you have, try something "
        "different, or give your answer."
    )


async def guard_writes(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    calls: tuple[ToolCall, ...],
    memory: CallMemory,
) -> dict[int, str]:
    """Before this turn's tools run: a write tool the agent now calls in its
    `write_repeats`-th turn. Several calls in one answer are one decision (a batch);
    calling again after seeing the results is the loop. `stop` and `ask` act before
    the write happens; `warn` returns the note to add to the call's result, by index,
    and at twice `write_repeats` turns stops the run before the write."""
    notes: dict[int, str] = {}
    if guard.write_repeats is None:
        return notes
    seen: set[str] = set()
    for i, c in enumerate(calls):
        tool = agent.tool_map.get(c.name)
        if tool is None or tool.effect != "write" or c.name in seen:
            continue
        seen.add(c.name)
        made = memory.writes.get(c.name, [])
        turns = len({turn for turn, _, _ in made}) + 1
        if turns >= guard.write_repeats:
            notes[i] = await _write_loop(ctx, agent, guard, i, c, made, turns)
    return notes


async def _write_loop(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    made: list[tuple[str, str, str]],
    turns: int,
) -> str:
    earlier = [f"{args[:200]} -> {result[:200]}" for _, args, result in made]
    repeats = guard.write_repeats
    assert repeats is not None
    why = ""
    if guard.policy == "warn" and turns >= 2 * repeats:
        # Warned since its `write_repeats`-th turn and writing still: not left to go on.
        guard = replace(guard, policy="stop")
        why = f"though warned since its {_nth(repeats)}, "
    await react(
        ctx,
        guard,
        kind="write",
        subject=c.name,
        times=turns,
        question={
            "agent": agent.name,
            "tool": c.name,
            "arguments": c.arguments,
            "earlier": list(earlier),
        },
        name=keys.numbered("write-guard", i),
        stop=(
            f"Agent {agent.name!r} was about to call write tool {c.name} in a {_nth(turns)} "
            f"turn, {why}with arguments {c.arguments[:200]} (earlier: "
            f"{'; '.join(earlier)[:400]}); its loop guard stopped the run before the call. "
            "Check what it did, then improve its instructions, limit the tool with "
            "@tool(max_calls=...), or raise LoopGuard(write_repeats=...)."
        ),
    )
    return (
        f"\n\n[loop guard] You have now called {c.name} in {turns} turns, and each call "
        "changes things outside (it is a write). Earlier calls and their results:\n"
        + "\n".join(f"- {e}" for e in earlier)
        + f"\nDo not call {c.name} again unless the task asks for one more, different change: "
        "never to redo or adjust a change already made. If the task is done, give your answer."
    )


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


async def _circling_delegation(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    role: Delegate,
    result: ToolResult,
    memory: CallMemory,
) -> str:
    worker = role.worker
    memory.delegations.append(worker)
    tasks = memory.outcomes.setdefault((worker, result.content.strip()), [])
    tasks.append(c.arguments)
    if len(tasks) < guard.repeats:
        return ""
    path = " -> ".join(memory.delegations[-2 * guard.repeats :])
    await react(
        ctx,
        guard,
        kind="delegation",
        subject=worker,
        times=len(tasks),
        question={"agent": agent.name, "worker": worker, "delegations": path},
        name=keys.numbered("loop-guard", i),
        stop=(
            f"Agent {agent.name!r} got the same result from worker {worker!r} {len(tasks)} "
            f"times (delegations: {path}); its loop guard stopped the run. Tell the manager "
            "when to stop delegating, or use LoopGuard(policy='warn')."
        ),
    )
    asked = "\n".join(f"- {task[:300]}" for task in tasks[:-1])
    return (
        f"\n\n[loop guard] {worker} has now given this same result {len(tasks)} times, "
        f"for these earlier tasks:\n{asked}\nYour delegations ({path}) are going in circles: "
        "asking again will not change it. Use what you have, try another worker, or answer."
    )
