"""Events: one closed union of typed records, emitted as a run works.

Sinks (the CLI's live view, `Runtime.stream`, later tracing and metrics)
receive them in order. The engine builds events only when a sink listens.

An event's `error` text is redacted when the event is built (`orchestrion.redact`):
whoever builds one, no sink sees a secret in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from orchestrion._json import JSON
from orchestrion.redact import redact

if TYPE_CHECKING:
    from orchestrion.engine.interrupts import Interrupt
    from orchestrion.engine.result import RunResult


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    name: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class StepStarted:
    run_id: str
    key: str
    kind: str
    size: int = 0
    """For model steps, the estimated tokens of the request (4 characters a token)."""


@dataclass(frozen=True, slots=True)
class StepCompleted:
    run_id: str
    key: str
    kind: str
    result: JSON
    duration: float
    """Seconds; 0.0 for a replayed step."""
    replayed: bool


@dataclass(frozen=True, slots=True)
class StepFailed:
    run_id: str
    key: str
    kind: str
    error: str

    def __post_init__(self) -> None:
        _redact_error(self)


@dataclass(frozen=True, slots=True)
class ModelDelta:
    """A piece of text streamed by a model while step `key` runs."""

    run_id: str
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class InterruptRequested:
    run_id: str
    interrupt: Interrupt


@dataclass(frozen=True, slots=True)
class LoopGuardTriggered:
    """A loop guard found a loop at `key` and acted (`action`: `warn` or `stop`).

    `kind` says what looped: `tool` (the same call `times` times; `subject` is the
    tool), `write` (one write tool called `times` times, any arguments; the tool),
    `delegation` (a worker returning the same result again; the worker),
    `handoff` (control bouncing; the two agents), `no_progress` (a chat or network
    repeating itself; the pattern)."""

    run_id: str
    key: str
    kind: str
    subject: str
    times: int
    action: str


@dataclass(frozen=True, slots=True)
class Transferred:
    """Agent `source` handed the conversation to `target` at turn `key`."""

    run_id: str
    key: str
    source: str
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class Retrying:
    """The call at step `key` (`kind`: model or tool) to `target` (a model name or
    `tool:<name>`) failed transiently; attempt `attempt + 1` follows in `wait` seconds.
    The `ModelDelta`s the failed attempt streamed are void: the next attempt streams
    its answer from the start (so does the model a `FallbackUsed` names)."""

    run_id: str
    key: str
    kind: str
    target: str
    attempt: int
    error: str
    wait: float

    def __post_init__(self) -> None:
        _redact_error(self)


@dataclass(frozen=True, slots=True)
class FallbackUsed:
    """At `key`, `failed` (a model or agent) gave up and `used` takes over."""

    run_id: str
    key: str
    failed: str
    used: str
    error: str

    def __post_init__(self) -> None:
        _redact_error(self)


@dataclass(frozen=True, slots=True)
class BreakerChanged:
    """The circuit `name` went from state `old` to `new` during step `key`."""

    run_id: str
    key: str
    name: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    result: RunResult[object]


Event: TypeAlias = (
    RunStarted
    | StepStarted
    | StepCompleted
    | StepFailed
    | ModelDelta
    | InterruptRequested
    | LoopGuardTriggered
    | Transferred
    | Retrying
    | FallbackUsed
    | BreakerChanged
    | RunFinished
)

Sink = Callable[[Event], None]
"""A callable receiving each event; it must not block."""


def _redact_error(event: StepFailed | Retrying | FallbackUsed) -> None:
    object.__setattr__(event, "error", redact(event.error))  # frozen: set once, while built
