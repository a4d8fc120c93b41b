"""`RunResult`: what a run returned, as a value (an interrupt is not an exception)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from orchestrion.engine.interrupts import Interrupt
from orchestrion.engine.journal import RunStatus
from orchestrion.errors import RunFailed
from orchestrion.messages import Usage

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunResult(Generic[T]):
    run_id: str
    status: RunStatus
    value: T | None = None
    """The output; None unless the run completed."""
    error: dict[str, Any] | None = None
    """`{"type", "message", "cause_chain"}` when the run failed."""
    interrupts: tuple[Interrupt, ...] = ()
    """The questions a human must answer before `Runtime.resume` can continue."""
    usage: Usage = field(default_factory=Usage)

    @property
    def output(self) -> T | None:
        """The output of a completed run; raises `RunFailed` if the run failed,
        None while it waits for a human."""
        if self.status is RunStatus.FAILED:
            raise RunFailed(self.run_id, self.error or {})
        return self.value
