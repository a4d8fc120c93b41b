"""An agent's loop guard: repeated identical tool calls, and delegations that go
in circles (a worker returning a result it already gave, however it was asked).

Decided from the conversation only (journaled responses and tool results), so
a replay finds the same loops at the same turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrion.agent import DELEGATE, FINAL_RESULT_TOOL, TRANSFER, Agent
from orchestrion.engine.execution import Context
from orchestrion.guards import LoopGuard
from orchestrion.loops import react
from orchestrion.messages import ToolCall, ToolResult


@dataclass(slots=True)
class CallMemory:
    """What one agent run has called so far."""

    attempts: dict[str, list[str]] = field(default_factory=dict)
    """Results of each distinct call (tool name and argument text)."""
    outcomes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """Tasks given to each worker that returned a given result."""
    delegations: list[str] = field(default_factory=list)
    """Workers in the order they were delegated to."""


async def guard_calls(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    calls: tuple[ToolCall, ...],
    results: list[ToolResult],
    memory: CallMemory,
) -> list[ToolResult]:
    """This turn's results, with a note added to each one that closes a loop."""
    guarded: list[ToolResult] = []
    for i, (c, result) in enumerate(zip(calls, results, strict=True)):
        if c.name == FINAL_RESULT_TOOL or c.name.startswith(TRANSFER):
            guarded.append(result)
            continue
        note = await _repeated_call(ctx, agent, guard, i, c, result, memory)
        if not note and c.name.startswith(DELEGATE) and not result.is_error:
            note = await _circling_delegation(ctx, agent, guard, i, c, result, memory)
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
    await react(
        ctx,
        guard,
        kind="tool",
        subject=c.name,
        times=len(tries),
        question={"agent": agent.name, "tool": c.name, "arguments": c.arguments},
        name=f"loop-guard-{i}",
        stop=(
            f"Agent {agent.name!r} called {c.name} with the same arguments {len(tries)} times "
            f"({c.arguments[:200]}); its loop guard stopped the run. Improve its instructions "
            "or tools, or use LoopGuard(policy='warn')."
        ),
    )
    earlier = "\n".join(f"- attempt {k}: {t[:300]}" for k, t in enumerate(tries[:-1], 1))
    return (
        f"\n\n[loop guard] You have called {c.name} with these arguments {len(tries)} times. "
        f"Earlier results:\n{earlier}\nDo not repeat it: use what you have, try something "
        "different, or give your answer."
    )


async def _circling_delegation(
    ctx: Context[Any],
    agent: Agent[Any],
    guard: LoopGuard,
    i: int,
    c: ToolCall,
    result: ToolResult,
    memory: CallMemory,
) -> str:
    worker = c.name.removeprefix(DELEGATE)
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
        name=f"loop-guard-{i}",
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
