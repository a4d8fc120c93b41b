"""What a journal entry means: a closed union of typed records, and the one codec
between them and the form stores keep.

A store keeps an entry as its step's `kind`, a `status` and a `result` (JSON),
and treats them as opaque (`engine.journal.Entry`). The engine never reads or
writes `result` by hand: it builds a record and `encode`s it, `decode`s what it
reads back, and matches on the record's type. Each record has one status, so an
entry cannot say `completed` with a failure in it.

    kind                  status     record
    model                 completed  ModelResponded
    tool                  completed  ToolReturned
    tool                  started    WriteStarted
    model, tool           failed     AttemptFailed   (with `attempt`)
    any                   failed     StepRaised
    approval, interrupt   pending    InterruptAsked
    approval, interrupt   completed  Answered
    step                  completed  StepReturned
    clock, random, uuid   completed  ClockRead, RandomSeed, UuidMade
    fallback              completed  GaveUp

The stored form is that of schema version 1 for every record (versions 2 and 3
changed run records only): an old journal decodes as it was written. A field
added since (`ModelResponded.by`) is optional: older readers ignore it. How a
record type is added, changed or retired: docs/compatibility.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias, TypeVar, assert_never

from orchestrion._json import JSON, as_int, as_number, as_object, as_str
from orchestrion.engine.journal import Entry, StepStatus
from orchestrion.errors import DeterminismError, StoreError
from orchestrion.messages import ModelResponse

Described: TypeAlias = dict[str, Any]
"""An error as `errors.describe(exc)` gives it: `{"type", "message", "cause_chain"}`
and what the error class adds (`status_code`, `transient`, `where`, ...)."""

ValueKind = Literal["step", "clock", "random", "uuid"]
"""The kinds of step whose result is a value the run goes on with (`custom_step`)."""

COMPLETED, FAILED = StepStatus.COMPLETED, StepStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelResponded:
    """A model step's response."""

    status: ClassVar[StepStatus] = COMPLETED
    response: ModelResponse
    fallback: str | None = None
    """The model of the step's fallback chain that answered, when not the first one."""
    by: str | None = None
    """The model that answered, as the run names it (`openai:gpt-4.1-mini`): what usage
    and cost are reported by. None in journals written before it was kept."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolReturned:
    """A tool call's result as the model reads it."""

    status: ClassVar[StepStatus] = COMPLETED
    content: str
    is_error: bool = False
    """The model is told the call did not work (the tool's `ModelRetry`, a refusal,
    a timeout, an open circuit) and may try again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteStarted:
    """A write tool's attempt is about to run. Found without a completion on
    resume, the call runs again with the same idempotency key."""

    status: ClassVar[StepStatus] = StepStatus.STARTED
    origin_key: str | None = None
    """In a fork: the idempotency key of the parent run's call, which the fork's
    call keeps (the parent's attempt may have had its effect)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFailed:
    """One failed attempt of a model request or tool call, and what came next:
    a retry after `retry_in` seconds, the `fallback` model, or neither (the step
    failed). A resume goes on after the last one."""

    status: ClassVar[StepStatus] = FAILED
    error: Described
    attempt: int
    """1 for the first attempt at this model or tool."""
    model: str | None = None
    """The model that failed; None for a tool call."""
    retry_in: float | None = None
    fallback: str | None = None
    opened_circuit: bool = False
    """This failure opened the model's circuit breaker (so no retry followed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRaised:
    """A step failed: its function, tool or model raised. A resume runs it again."""

    status: ClassVar[StepStatus] = FAILED
    error: Described


@dataclass(frozen=True, slots=True, kw_only=True)
class InterruptAsked:
    """A question waiting for a human: an approval's `{"agent", "tool", "arguments",
    "call_id"}`, or a `ctx.interrupt` payload."""

    status: ClassVar[StepStatus] = StepStatus.PENDING
    payload: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """A human's answer, validated: an approval's `{"approved", ...}` or any JSON."""

    status: ClassVar[StepStatus] = COMPLETED
    answer: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class StepReturned:
    """What a `ctx.step` function returned."""

    status: ClassVar[StepStatus] = COMPLETED
    value: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockRead:
    """`ctx.now()`: seconds since the epoch."""

    status: ClassVar[StepStatus] = COMPLETED
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RandomSeed:
    """`ctx.random()`: the seed of its generator."""

    status: ClassVar[StepStatus] = COMPLETED
    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UuidMade:
    """`ctx.uuid()`, as text."""

    status: ClassVar[StepStatus] = COMPLETED
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp:
    """An agent failed and its fallback agent took over its input."""

    status: ClassVar[StepStatus] = COMPLETED
    error: Described
    agent: str
    fallback: str


Record: TypeAlias = (
    ModelResponded
    | ToolReturned
    | WriteStarted
    | AttemptFailed
    | StepRaised
    | InterruptAsked
    | Answered
    | StepReturned
    | ClockRead
    | RandomSeed
    | UuidMade
    | GaveUp
)

ValueRecord: TypeAlias = StepReturned | ClockRead | RandomSeed | UuidMade

R = TypeVar("R", bound=Record)

_ATTEMPT_FIELDS = ("model", "attempt", "opened_circuit", "retry_in", "fallback")
_GAVE_UP_FIELDS = ("agent", "fallback")


def model_responded(
    response: ModelResponse, fallback: str | None = None, by: str | None = None
) -> JSON:
    """`encode(ModelResponded(response=response, fallback=fallback, by=by))`, with no
    record made: every model step of a run writes one."""
    data = response.to_json()
    if fallback is not None:
        data["fallback"] = fallback
    if by is not None:
        data["by"] = by
    return data


def tool_returned(content: str, is_error: bool = False) -> JSON:
    """`encode(ToolReturned(content=content, is_error=is_error))`, with no record
    made: every tool call of a run writes one."""
    return {"content": content, "is_error": is_error}


def step_returned(value: JSON) -> JSON:
    """`encode(StepReturned(value=value))`, with no record made: every branch of a
    fan-out writes one. The value is stored as it is."""
    return value


def encode(record: Record) -> JSON:
    """The `result` an entry holding `record` stores (its status is `record.status`)."""
    match record:  # class patterns without sub-patterns: one isinstance each (hot path)
        case ModelResponded():
            return model_responded(record.response, record.fallback, record.by)
        case ToolReturned():
            return tool_returned(record.content, record.is_error)
        case WriteStarted(origin_key=origin):
            return None if origin is None else {"idempotency_key": origin}
        case AttemptFailed():
            return _attempt_json(record)
        case StepRaised(error=error):
            return error
        case InterruptAsked(payload=value) | Answered(answer=value):
            return value
        case StepReturned(value=value):
            return step_returned(value)
        case UuidMade(value=value):
            return value
        case ClockRead(value=number) | RandomSeed(value=number):
            return number
        case GaveUp(error=error, agent=agent, fallback=fallback):
            return {**error, "agent": agent, "fallback": fallback}
        case _:
            assert_never(record)


def _attempt_json(record: AttemptFailed) -> dict[str, JSON]:
    data: dict[str, JSON] = dict(record.error)
    if record.model is not None:
        data["model"] = record.model
    data["attempt"] = record.attempt
    if record.opened_circuit:
        data["opened_circuit"] = True
    if record.retry_in is not None:
        data["retry_in"] = record.retry_in
    elif record.fallback is not None:
        data["fallback"] = record.fallback
    return data


def value_record(kind: ValueKind, value: JSON) -> ValueRecord:
    """The record of a `custom_step` of `kind` that produced `value`."""
    match kind:
        case "step":
            return StepReturned(value=value)
        case "clock":
            return ClockRead(value=as_number(value, "a clock read"))
        case "random":
            return RandomSeed(value=as_int(value, "a random seed"))
        case "uuid":
            return UuidMade(value=as_str(value, "a uuid"))
        case _:
            assert_never(kind)


def decode(entry: Entry) -> Record:
    """The record `entry` holds; `StoreError` naming the entry if it holds none."""
    try:
        return _decode(entry.kind, entry.status, entry.result)
    except (KeyError, TypeError, ValueError) as exc:
        where = f"Journal entry {entry.seq} ({entry.key})"
        raise _unreadable(where, entry.kind, entry.status, exc) from None


def read(kind: str, status: StepStatus, result: JSON, where: str) -> Record:
    """The record of a step of `kind` in `status` whose stored result is `result`
    (as `Runtime.history` shows steps); `StoreError` naming `where` if it is none."""
    try:
        return _decode(kind, status, result)
    except (KeyError, TypeError, ValueError) as exc:
        raise _unreadable(where, kind, status, exc) from None


def _unreadable(where: str, kind: str, status: StepStatus, exc: Exception) -> StoreError:
    problem = f"it has no field {exc.args[0]!r}" if isinstance(exc, KeyError) else exc
    return StoreError(
        f"{where}, a {kind} step {status.value}, cannot be read: {problem}. The journal "
        "was changed outside orchestrion or damaged; fork the run at an earlier step "
        "to go on from there."
    )


def expect(entry: Entry, kind: type[R]) -> R:
    """The record `entry` holds, which the step replaying it knows must be a `kind`."""
    try:
        record = _decode(entry.kind, entry.status, entry.result)
    except (KeyError, TypeError, ValueError):
        record = decode(entry)  # raises, naming the entry
    if not isinstance(record, kind):
        raise _mismatch(entry, record, kind.__name__)
    return record


def _mismatch(entry: Entry, record: Record, expected: str) -> DeterminismError:
    return DeterminismError(
        f"Journal entry {entry.seq} ({entry.key}) holds a {type(record).__name__} where the "
        f"run expects a {expected}: the code asks for another kind of step at this key "
        "than the code that journaled it. Keep step names as they were, or fork the run."
    )


def _decode(kind: str, status: StepStatus, result: JSON) -> Record:
    # By status, then kind, the usual ones first: every replayed step comes through here.
    if status is COMPLETED:
        if kind == "model":
            data = as_object(result, "a model response")
            fallback, by = data.get("fallback"), data.get("by")
            return ModelResponded(
                response=ModelResponse.from_json(data),
                fallback=None if fallback is None else as_str(fallback, "its fallback"),
                by=None if by is None else as_str(by, "its model"),
            )
        if kind == "tool":
            data = as_object(result, "a tool result")
            content = as_str(data["content"], "its content")
            return ToolReturned(content=content, is_error=bool(data["is_error"]))
        if kind == "approval" or kind == "interrupt":
            return Answered(answer=result)
        if kind == "step":
            return StepReturned(value=result)
        if kind == "clock":
            return ClockRead(value=as_number(result, "a clock read"))
        if kind == "random":
            return RandomSeed(value=as_int(result, "a random seed"))
        if kind == "uuid":
            return UuidMade(value=as_str(result, "a uuid"))
        if kind == "fallback":
            data = as_object(result, "a fallback")
            error = {k: v for k, v in data.items() if k not in _GAVE_UP_FIELDS}
            agent = as_str(data["agent"], "its agent")
            return GaveUp(
                error=error, agent=agent, fallback=as_str(data["fallback"], "its fallback")
            )
    elif status is FAILED:
        error = as_object(result, "a failure")
        if (kind == "model" or kind == "tool") and "attempt" in error:
            return _attempt_failed(error)
        return StepRaised(error=error)
    elif status is StepStatus.STARTED and kind == "tool":
        origin = result.get("idempotency_key") if isinstance(result, dict) else None
        return WriteStarted(origin_key=None if origin is None else as_str(origin, "its key"))
    elif status is StepStatus.PENDING and (kind == "approval" or kind == "interrupt"):
        return InterruptAsked(payload=result)
    raise ValueError(f"no record is a {kind} step that is {status.value}")


def _attempt_failed(data: dict[str, JSON]) -> AttemptFailed:
    retry_in, model, fallback = data.get("retry_in"), data.get("model"), data.get("fallback")
    return AttemptFailed(
        error={k: v for k, v in data.items() if k not in _ATTEMPT_FIELDS},
        attempt=as_int(data["attempt"], "its attempt"),
        model=None if model is None else as_str(model, "its model"),
        retry_in=None if retry_in is None else as_number(retry_in, "its retry_in"),
        fallback=None if fallback is None else as_str(fallback, "its fallback"),
        opened_circuit=data.get("opened_circuit") is True,
    )


def value_of(entry: Entry) -> JSON:
    """The value a `custom_step`'s completed entry holds."""
    record = decode(entry)
    match record:
        case StepReturned(value=value) | ClockRead(value=value):
            return value
        case RandomSeed(value=value) | UuidMade(value=value):
            return value
    raise _mismatch(entry, record, "StepReturned")
