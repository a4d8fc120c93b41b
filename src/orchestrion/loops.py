"""What happens when a loop guard finds a loop: one policy switch for every kind.

Agents (repeated tool calls, a write tool called again and again, delegations
that return the same result again), `Handoff` (control bouncing between two
agents), `GroupChat` (a participant repeating itself) and `PeerNetwork` (a round
of mail seen before) find loops their own way, from journaled data only, then
call `react`.
"""

from __future__ import annotations

from typing import Any, Literal

from orchestrion._json import JSON
from orchestrion.context import RunContext
from orchestrion.errors import LoopDetected
from orchestrion.guards import LoopGuard

LoopKind = Literal["tool", "write", "delegation", "handoff", "no_progress"]


async def react(
    ctx: RunContext[Any],
    guard: LoopGuard,
    *,
    kind: LoopKind,
    subject: str,
    times: int,
    question: dict[str, JSON],
    name: str,
    stop: str,
) -> None:
    """Apply `guard.policy`: return (the caller then warns), or raise `LoopDetected`
    with the message `stop` (which says what looped and how to fix it). `ask` first asks a human, through an interrupt called
    `name`, whether to go on; `question` is its payload."""
    action = guard.policy
    if action == "ask":
        answer = await ctx.interrupt(
            {**question, "loop": kind, "times": times},
            name=name,
            answer_type=Literal["continue", "stop"],
        )
        action = "warn" if answer == "continue" else "stop"
    ctx.loop_detected(kind, subject, times, action)
    if action == "stop":
        raise LoopDetected(stop)
