"""Events: one closed union of typed records, emitted as a run works.

Sinks (the CLI's live view, `Runtime.stream`, later tracing and metrics)
receive them in order. The engine emits through `Events`, one method per event
it emits: an `Emitter` builds the event and hands it to the run's sink, and
`NO_EVENTS`, for a run no sink listens to, builds nothing.

An event's `error` text is redacted when the event is built (`orchestrion.redact`):
whoever builds one, no sink sees a secret in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

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


class Events(Protocol):
    """What a run emits, one method per event; the engine calls these and never
    builds an event itself, so a run no sink listens to builds none."""

    @property
    def listening(self) -> bool:
        """Whether anything hears each step start and end (a sink, metrics): the
        engine calls `step_started` and `step_completed` only then."""
        ...

    @property
    def streaming(self) -> bool:
        """Whether a sink receives the events: only then does the engine estimate
        request sizes and stream model responses, work no one else reads."""
        ...

    def run_started(self, name: str, resumed: bool) -> None: ...

    def step_started(self, key: str, kind: str, size: int = 0) -> None: ...

    def step_replayed(self, key: str, kind: str, result: JSON) -> None: ...

    def step_completed(self, key: str, kind: str, result: JSON, started_at: float) -> None: ...

    def step_failed(self, key: str, kind: str, error: BaseException) -> None: ...

    def model_delta(self, key: str, text: str) -> None: ...

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None: ...

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None: ...

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None: ...

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None: ...

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None: ...

    def run_finished(self, result: RunResult[object]) -> None:
        """The run stopped working here: its interrupts, if any, then `RunFinished`."""
        ...


class NoEvents:
    """`Events` for a run no sink listens to: every method does nothing (and builds
    nothing: the engine's hot path calls them once or twice a step)."""

    __slots__ = ()

    listening = False
    streaming = False

    def run_started(self, name: str, resumed: bool) -> None:
        pass

    def step_started(self, key: str, kind: str, size: int = 0) -> None:
        pass

    def step_replayed(self, key: str, kind: str, result: JSON) -> None:
        pass

    def step_completed(self, key: str, kind: str, result: JSON, started_at: float) -> None:
        pass

    def step_failed(self, key: str, kind: str, error: BaseException) -> None:
        pass

    def model_delta(self, key: str, text: str) -> None:
        pass

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        pass

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None:
        pass

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None:
        pass

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None:
        pass

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None:
        pass

    def run_finished(self, result: RunResult[object]) -> None:
        pass


NO_EVENTS: Final[Events] = NoEvents()


class Emitter:
    """`Events` for a run a sink listens to: each method builds its event and hands
    it to the sink at once."""

    __slots__ = ("run_id", "sink")

    listening = True
    streaming = True

    def __init__(self, run_id: str, sink: Sink) -> None:
        self.run_id = run_id
        self.sink = sink

    def run_started(self, name: str, resumed: bool) -> None:
        self.sink(RunStarted(self.run_id, name, resumed))

    def step_started(self, key: str, kind: str, size: int = 0) -> None:
        self.sink(StepStarted(self.run_id, key, kind, size))

    def step_replayed(self, key: str, kind: str, result: JSON) -> None:
        self.sink(StepCompleted(self.run_id, key, kind, result, 0.0, True))

    def step_completed(self, key: str, kind: str, result: JSON, started_at: float) -> None:
        duration = time.time() - started_at
        self.sink(StepCompleted(self.run_id, key, kind, result, duration, False))

    def step_failed(self, key: str, kind: str, error: BaseException) -> None:
        self.sink(StepFailed(self.run_id, key, kind, _message(error)))

    def model_delta(self, key: str, text: str) -> None:
        self.sink(ModelDelta(self.run_id, key, text))

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        self.sink(Retrying(self.run_id, key, kind, target, attempt, _message(error), wait))

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None:
        self.sink(FallbackUsed(self.run_id, key, failed, used, _message(error)))

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None:
        self.sink(BreakerChanged(self.run_id, key, name, old, new))

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None:
        self.sink(LoopGuardTriggered(self.run_id, key, kind, subject, times, action))

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None:
        self.sink(Transferred(self.run_id, key, source, target, reason))

    def run_finished(self, result: RunResult[object]) -> None:
        for interrupt in result.interrupts:
            self.sink(InterruptRequested(self.run_id, interrupt))
        self.sink(RunFinished(self.run_id, result))


class Relay:
    """`Events` that pass every event on to `inner`: the base of those that also do
    something with some of them (trace, count, log), each overriding just those."""

    __slots__ = ("inner", "listening", "streaming")

    def __init__(self, inner: Events, *, listening: bool = False) -> None:
        self.inner = inner
        self.listening = inner.listening or listening
        self.streaming = inner.streaming

    def run_started(self, name: str, resumed: bool) -> None:
        self.inner.run_started(name, resumed)

    def step_started(self, key: str, kind: str, size: int = 0) -> None:
        self.inner.step_started(key, kind, size)

    def step_replayed(self, key: str, kind: str, result: JSON) -> None:
        self.inner.step_replayed(key, kind, result)

    def step_completed(self, key: str, kind: str, result: JSON, started_at: float) -> None:
        self.inner.step_completed(key, kind, result, started_at)

    def step_failed(self, key: str, kind: str, error: BaseException) -> None:
        self.inner.step_failed(key, kind, error)

    def model_delta(self, key: str, text: str) -> None:
        self.inner.model_delta(key, text)

    def retrying(
        self, key: str, kind: str, target: str, attempt: int, error: BaseException, wait: float
    ) -> None:
        self.inner.retrying(key, kind, target, attempt, error, wait)

    def fallback_used(self, key: str, failed: str, used: str, error: BaseException) -> None:
        self.inner.fallback_used(key, failed, used, error)

    def breaker_changed(self, key: str, name: str, old: str, new: str) -> None:
        self.inner.breaker_changed(key, name, old, new)

    def loop_guard_triggered(
        self,
        key: str,
        kind: str,
        subject: str,
        times: int,
        action: str,
        replayed: bool = False,
    ) -> None:
        self.inner.loop_guard_triggered(key, kind, subject, times, action, replayed)

    def transferred(
        self, key: str, source: str, target: str, reason: str, replayed: bool = False
    ) -> None:
        self.inner.transferred(key, source, target, reason, replayed)

    def run_finished(self, result: RunResult[object]) -> None:
        self.inner.run_finished(result)


def events_for(run_id: str, sink: Sink | None) -> Events:
    """What run `run_id` emits through: to `sink`, or nowhere."""
    return NO_EVENTS if sink is None else Emitter(run_id, sink)


def _message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def fan_out(sinks: Sequence[Sink]) -> Sink | None:
    """One sink that gives every event to each of `sinks` (None for none)."""
    if not sinks:
        return None
    if len(sinks) == 1:
        return sinks[0]

    def each(event: Event) -> None:
        for sink in sinks:
            sink(event)

    return each
