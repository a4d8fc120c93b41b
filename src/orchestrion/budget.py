"""`Budget`: limits on what one run may spend, checked before each model call."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrion.errors import UserError
from orchestrion.messages import Usage

DEFAULT_MODEL_CALLS = 100
"""Model calls a run may make when nobody said otherwise. One agent makes at most
`max_turns` (20) calls per run of it, so 100 lets a team of five use all their
turns (the largest demo needs 30), yet stops a runaway team within minutes and
a dollar or two on a hosted model. Pydantic AI stops one agent at 50 requests,
LangGraph a graph at 25 super-steps, the OpenAI Agents SDK a run at 10 turns."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Budget:
    """Limits on one run; a limit set to None is no limit. Every run has one:
    `Budget()` (what a runtime uses when given none) allows 100 model calls and
    sets no other limit. `Budget(tokens=50_000)` keeps the 100 model calls;
    `Budget(model_calls=None)` or `Budget.unlimited()` lifts them. Replayed
    steps count: a resumed run does not get its budget back."""

    tokens: int | None = None
    """Input plus output tokens over every model request of the run."""
    cost: float | None = None
    """USD over every model request, priced by the runtime's `Prices`; a model
    without a known price cannot run under a cost budget."""
    model_calls: int | None = DEFAULT_MODEL_CALLS
    """Model requests answered, over every agent of the run (see `DEFAULT_MODEL_CALLS`)."""
    steps: int | None = None
    """Journaled steps: model requests, tool calls, answers, custom steps."""
    seconds: float | None = None
    """Wall time since the run was created (resumes included)."""

    def __post_init__(self) -> None:
        for name in ("tokens", "cost", "model_calls", "steps", "seconds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise UserError(f"Budget {name}={value!r} must be positive (or None for no limit).")

    @classmethod
    def unlimited(cls) -> Budget:
        """No limit at all, not even the default model calls: for runs bounded
        some other way (a supervisor's rounds, termination conditions)."""
        return cls(model_calls=None)

    def exceeded(self, usage: Usage, steps: int, elapsed: float) -> tuple[str, str] | None:
        """(limit name, what happened) for the first limit reached, or None."""
        if self.tokens is not None and usage.total_tokens >= self.tokens:
            return "tokens", f"used {usage.total_tokens} tokens of {self.tokens}"
        if self.cost is not None and usage.cost >= self.cost:
            return "cost", f"spent ${usage.cost:.4f} of ${self.cost:g}"
        if self.model_calls is not None and usage.requests >= self.model_calls:
            default = " (the default limit)" if self.model_calls == DEFAULT_MODEL_CALLS else ""
            return (
                "model_calls",
                f"made {usage.requests} model calls of {self.model_calls}{default}",
            )
        if self.steps is not None and steps >= self.steps:
            return "steps", f"took {steps} steps of {self.steps}"
        if self.seconds is not None and elapsed >= self.seconds:
            return "seconds", f"ran {elapsed:.1f} s of {self.seconds:g}"
        return None

    def raise_hint(self, limit: str, run_id: str) -> str:
        """How to go on past `limit`, with a concrete larger value to copy."""
        current = getattr(self, limit)
        larger = f"{current * 2:g}" if isinstance(current, float) else str(current * 2)
        hint = (
            f"resume it with a larger budget to go on, e.g. "
            f"runtime.resume({run_id!r}, budget=Budget({limit}={larger}))"
        )
        if limit == "model_calls":
            hint += (
                f" or `orchestrion resume {run_id} --max-model-calls {larger}`; "
                "Budget(model_calls=None) removes the limit"
            )
        return hint
