"""`LoopGuard`: what an agent does when it repeats a tool call, or keeps writing.

This is the configuration, a definition every agent and pattern can hold; finding
loops and acting on them is `orchestrion.loops`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrion.errors import UserError

LoopPolicy = Literal["warn", "stop", "ask"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LoopGuard:
    """Fingerprints tool calls (tool name and argument text). At the `repeats`-th
    identical call, or the `write_repeats`-th turn calling one write tool whatever
    its arguments: `warn` tells the agent, listing its earlier attempts and their
    results; `stop` ends the run with `LoopDetected`; `ask` asks a human whether
    to go on. `warn` is a warning, not a licence: an agent that gets the same
    result from the same call at twice `repeats` calls, or still calls a write
    tool at twice `write_repeats` turns, is stopped. For a write, every stop and
    question comes before it runs. Decided from journaled data only, so replay agrees."""

    repeats: int = 3
    write_repeats: int | None = 3
    """Turns of one run of the agent that call one write tool, with any arguments
    (several calls in one answer are one turn): a payment made again and again
    with new amounts changes the world each time, so it is a loop long before any
    two calls are identical. None turns it off (for an agent whose task is a
    series of writes)."""
    policy: LoopPolicy = "warn"

    def __post_init__(self) -> None:
        if self.repeats < 2:
            raise UserError(f"LoopGuard repeats={self.repeats} must be at least 2.")
        if self.write_repeats is not None and self.write_repeats < 2:
            raise UserError(
                f"LoopGuard write_repeats={self.write_repeats} must be at least 2 "
                "(or None to turn the write check off)."
            )
        if self.policy not in ("warn", "stop", "ask"):
            raise UserError(
                f"LoopGuard policy must be 'warn', 'stop' or 'ask', not {self.policy!r}."
            )
