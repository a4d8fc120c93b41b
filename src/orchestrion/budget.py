"""`Budget`: limits on what one run may spend, checked before each model call."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrion.errors import UserError
from orchestrion.messages import Usage


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """Any limit left None is unlimited. Replayed steps count: a resumed run
    does not get its budget back."""

    tokens: int | None = None
    """Input plus output tokens over every model request of the run."""
    cost: float | None = None
    """USD over every model request, priced by the runtime's `Prices`; a model
    without a known price cannot run under a cost budget."""
    model_calls: int | None = None
    steps: int | None = None
    """Journaled steps: model requests, tool calls, answers, custom steps."""
    seconds: float | None = None
    """Wall time since the run was created (resumes included)."""

    def __post_init__(self) -> None:
        for name in ("tokens", "cost", "model_calls", "steps", "seconds"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"Budget {name}={value!r} must be positive (or None for no limit).")

    def exceeded(self, usage: Usage, steps: int, elapsed: float) -> tuple[str, str] | None:
        """(limit name, what happened) for the first limit reached, or None."""
        if self.tokens is not None and usage.total_tokens >= self.tokens:
            return "tokens", f"used {usage.total_tokens} tokens of {self.tokens}"
        if self.cost is not None and usage.cost >= self.cost:
            return "cost", f"spent ${usage.cost:.4f} of ${self.cost:g}"
        if self.model_calls is not None and usage.requests >= self.model_calls:
            return "model_calls", f"made {usage.requests} model calls of {self.model_calls}"
        if self.steps is not None and steps >= self.steps:
            return "steps", f"took {steps} steps of {self.steps}"
        if self.seconds is not None and elapsed >= self.seconds:
            return "seconds", f"ran {elapsed:.1f} s of {self.seconds:g}"
        return None
