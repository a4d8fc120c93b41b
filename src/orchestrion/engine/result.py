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
    """`{"type", "message", "cause_chain"}` when the run failed or stopped (a stopped
    run's also names its limit, e.g. `"budget": "tokens"`)."""
    interrupts: tuple[Interrupt, ...] = ()
    """The questions a human must answer before `Runtime.resume` can continue."""
    usage: Usage = field(default_factory=Usage)
    partial: dict[str, Any] = field(default_factory=dict)
    """For a run stopped at a limit: the output of each member (agent or pattern) that
    finished, by its step-key scope, outermost only (`{"team/research": "...", ...}`)."""

    @property
    def output(self) -> T | None:
        """The output of a completed run; raises `RunFailed` if the run failed or
        stopped at a limit (its `partial` results stay readable), None while it
        waits for a human."""
        if self.status is RunStatus.FAILED or self.status is RunStatus.STOPPED:
            raise RunFailed(self.run_id, self.error or {}, self.status.value)
        return self.value
