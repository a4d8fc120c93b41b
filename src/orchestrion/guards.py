"""`LoopGuard`: what an agent does when it repeats the same tool call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from orchestrion.errors import UserError

LoopPolicy = Literal["warn", "stop", "ask"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LoopGuard:
    """Fingerprints tool calls (tool name and argument text). At the `repeats`-th
    identical call: `warn` tells the agent, listing its earlier attempts and
    their results; `stop` ends the run with `LoopDetected`; `ask` asks a human
    whether to go on. Decided from journaled data only, so replay agrees."""

    repeats: int = 3
    policy: LoopPolicy = "warn"

    def __post_init__(self) -> None:
        if self.repeats < 2:
            raise UserError(f"LoopGuard repeats={self.repeats} must be at least 2.")
        if self.policy not in ("warn", "stop", "ask"):
            raise UserError(
                f"LoopGuard policy must be 'warn', 'stop' or 'ask', not {self.policy!r}."
            )
