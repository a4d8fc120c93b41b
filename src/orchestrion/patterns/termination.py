"""Termination conditions for conversations, composable with `|` (either) and `&` (both).

A condition looks at the conversation so far and returns why it should stop,
or None. Conditions only read journaled data (messages, usage, the clock read
at each turn), so a resumed run stops exactly where the original did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrion.errors import UserError
from orchestrion.messages import Usage


@dataclass(frozen=True, slots=True)
class ChatState:
    """What a condition sees: the transcript as (speaker, text), the run's usage,
    and the seconds since the conversation started (read from a journaled clock)."""

    transcript: tuple[tuple[str, str], ...]
    usage: Usage
    elapsed: float = 0.0

    @property
    def turns(self) -> int:
        """Messages spoken by participants (the opening task excluded)."""
        return len(self.transcript) - 1


class Condition:
    """Base of termination conditions; `check(state)` is the reason to stop, or None."""

    def check(self, state: ChatState) -> str | None:
        raise NotImplementedError

    def __or__(self, other: Condition | Callable[[ChatState], str | None]) -> Condition:
        return _Any(self, _wrap(other))

    def __and__(self, other: Condition | Callable[[ChatState], str | None]) -> Condition:
        return _All(self, _wrap(other))


@dataclass(frozen=True)
class MaxTurns(Condition):
    turns: int

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise UserError(f"MaxTurns({self.turns}): turns must be >= 1.")

    def check(self, state: ChatState) -> str | None:
        return f"reached {self.turns} turns" if state.turns >= self.turns else None


@dataclass(frozen=True)
class TextMention(Condition):
    """Stop when the last message contains `text` (e.g. "TERMINATE" or "APPROVED")."""

    text: str

    def check(self, state: ChatState) -> str | None:
        last = state.transcript[-1][1] if state.turns else ""
        return f"{state.transcript[-1][0]} said {self.text!r}" if self.text in last else None


@dataclass(frozen=True)
class TokenBudget(Condition):
    """Stop once the run has used `tokens` (input plus output)."""

    tokens: int

    def check(self, state: ChatState) -> str | None:
        used = state.usage.total_tokens
        return f"used {used} of {self.tokens} tokens" if used >= self.tokens else None


@dataclass(frozen=True)
class CostBudget(Condition):
    """Stop once the run has spent `usd` on model calls (priced by `Runtime(prices=...)`,
    else by genai-prices)."""

    usd: float

    def __post_init__(self) -> None:
        if self.usd <= 0:
            raise UserError(f"CostBudget({self.usd}): usd must be positive.")

    def check(self, state: ChatState) -> str | None:
        usage = state.usage
        if usage.requests and not usage.cost:
            raise UserError(
                f"CostBudget({self.usd:g}) sees {usage.requests} model requests and no cost: "
                "their models have no known price. Give them one: "
                "Runtime(prices={'provider:model': Price(input=..., output=...)})."
            )
        return f"spent ${usage.cost:.4f} of ${self.usd:g}" if usage.cost >= self.usd else None


@dataclass(frozen=True)
class Timeout(Condition):
    """Stop once `seconds` have passed since the conversation started (waits for
    humans included): checked between turns, it does not cut a turn short."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise UserError(f"Timeout({self.seconds}): seconds must be positive.")

    def check(self, state: ChatState) -> str | None:
        if state.elapsed >= self.seconds:
            return f"ran {state.elapsed:.1f} s of {self.seconds:g}"
        return None


@dataclass(frozen=True)
class When(Condition):
    """A user function of the state, returning a reason to stop or None."""

    function: Callable[[ChatState], str | None]

    def check(self, state: ChatState) -> str | None:
        return self.function(state)


@dataclass(frozen=True)
class _Any(Condition):
    left: Condition
    right: Condition

    def check(self, state: ChatState) -> str | None:
        return self.left.check(state) or self.right.check(state)


@dataclass(frozen=True)
class _All(Condition):
    left: Condition
    right: Condition

    def check(self, state: ChatState) -> str | None:
        left, right = self.left.check(state), self.right.check(state)
        return f"{left} and {right}" if left and right else None


def _wrap(condition: Condition | Callable[[ChatState], str | None]) -> Condition:
    return condition if isinstance(condition, Condition) else When(condition)
