"""`RunResult`: what a run returned, as a value (an interrupt is not an exception)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, cast

from typing_extensions import TypeVar

from orchestrion._json import JSON, as_object, clean_data
from orchestrion.engine.interrupts import Interrupt
from orchestrion.engine.journal import Entry, RunRecord, RunStatus, StepStatus
from orchestrion.errors import NoOutput, RunFailed, describe
from orchestrion.messages import Usage

OutputT = TypeVar("OutputT", covariant=True)

_NOT_DONE: dict[RunStatus, str] = {
    RunStatus.CANCELLED: "it was cancelled (Runtime.cancel), so it has no output",
    RunStatus.RUNNING: (
        "it has not finished: it works in another process, or it crashed and waits to be "
        "resumed (Runtime.resume)"
    ),
}


@dataclass(frozen=True, slots=True)
class RunResult(Generic[OutputT]):
    """What a run returned: `Runtime.run(agent, ...)` gives a `RunResult[Invoice]` for
    an agent whose `output_type` is `Invoice`, so `result.output` is an `Invoice`."""

    run_id: str
    status: RunStatus
    value: OutputT | None = None
    """The output; None unless the run completed."""
    error: dict[str, JSON] | None = None
    """`{"type", "message", "cause_chain"}` when the run failed or stopped (a stopped
    run's also names its limit, e.g. `"budget": "tokens"`)."""
    interrupts: tuple[Interrupt, ...] = ()
    """The questions a human must answer before `Runtime.resume` can continue."""
    usage: Usage = field(default_factory=Usage)
    partial: dict[str, JSON] = field(default_factory=dict)
    """For a run stopped at a limit: the output of each member (agent or pattern) that
    finished, by its step-key scope, outermost only (`{"team/research": "...", ...}`)."""

    @property
    def output(self) -> OutputT:
        """The output of a completed run. Raises `RunFailed` if the run failed or
        stopped at a limit (its `partial` results stay readable), and its subclass
        `NoOutput` if it has none: it waits for a human (`interrupts` says what for),
        was cancelled, or has not finished."""
        status = self.status
        if status is RunStatus.COMPLETED:
            return cast(OutputT, self.value)  # None only where the output type allows it
        if status is RunStatus.FAILED or status is RunStatus.STOPPED:
            raise RunFailed(self.run_id, self.error or {}, status.value)
        if status is RunStatus.INTERRUPTED:
            why = (
                f"it waits for {len(self.interrupts)} answer(s) from a human (see "
                "`interrupts`): give them with Runtime.resume, then read the output"
            )
        else:
            why = _NOT_DONE[status]
        raise NoOutput(self.run_id, status.value, why)


def result_of(record: RunRecord) -> RunResult[Any]:
    """A run's result as its record stands (its output as journaled JSON, so
    `RunResult[Any]`: no runnable validated it back into its type)."""
    error = record.error if isinstance(record.error, dict) else None
    return RunResult(
        record.id,
        record.status,
        value=record.output,
        error=error,
        interrupts=tuple(Interrupt.from_json(p) for p in record.pending),
        usage=Usage.from_json(record.usage),
        partial=dict(as_object((error or {}).get("partial") or {}, "a run's partial outputs")),
    )


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of a run, as `Runtime.history` shows it."""

    seq: int
    key: str
    kind: str
    status: StepStatus
    started_at: float
    ended_at: float
    result: JSON
    attempts: tuple[JSON, ...] = ()
    """The failures of the attempts before the latest one (retries, fallbacks,
    an open circuit), oldest first: each `{"type", "message", "attempt", ...}`."""

    def to_json(self) -> dict[str, JSON]:
        return {
            "seq": self.seq,
            "key": self.key,
            "kind": self.kind,
            "status": self.status.value,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "result": self.result,
            "attempts": list(self.attempts),
        }


def step_history(entries: Iterable[Entry]) -> list[StepInfo]:
    """Every step of a journal in order, each at its latest state, with the failed
    attempts made before it."""
    steps: dict[str, StepInfo] = {}
    for e in entries:
        first = steps.get(e.key)
        seq, started = (first.seq, first.started_at) if first else (e.seq, e.started_at)
        attempts = first.attempts if first else ()
        if first is not None and first.status is StepStatus.FAILED:
            attempts = (*attempts, first.result)
        steps[e.key] = StepInfo(
            seq, e.key, e.kind, e.status, started, e.ended_at, e.result, attempts
        )
    return sorted(steps.values(), key=lambda s: s.seq)


def described(exc: BaseException) -> dict[str, JSON]:
    """`exc` as a run record's `error` holds it, in a form every store can hold."""
    return as_object(clean_data(describe(exc)))
