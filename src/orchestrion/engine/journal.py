"""Journal records: what a run persists, as versioned JSON data.

A run is a `RunRecord` plus an append-only list of `Entry`s. An entry records
one state of one step (`started`, `completed`, `failed`, `pending`); the
latest entry for a key is that step's state. What its `result` means is a typed
record of `engine.records`, which encodes and decodes it; stores keep it as
opaque JSON. Compatibility policy (docs/compatibility.md): a reader accepts every
schema version up to its own; fields are only ever added, with defaults, and `v`
is bumped when one is.

Versions: 1, the first; 2, a run can be `stopped` (it reached a limit) and
usage carries a fourth number, the cost in USD; 3, a run record carries the
lease of the process that works on it (`lease`); 4, a run can be `queued` for
workers, and a record carries its `queue`, `priority` and `attempts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from orchestrion._json import JSON

SCHEMA_VERSION = 4


class RunStatus(StrEnum):
    QUEUED = "queued"
    """Waiting on its queue for a worker (`Runtime.submit`, or put back by a worker
    that stopped, or by answers given to it)."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    STOPPED = "stopped"
    """Ended cleanly at a limit (a budget, a loop guard); `error` names it. Resumable."""


class StepStatus(StrEnum):
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    PENDING = "pending"
    """Waiting for a human's answer."""


class Entry(NamedTuple):
    """One state of one step, appended to a run's journal, in its stored form (a
    tuple: cheap and immutable). `engine.records.decode` gives the record it holds."""

    seq: int
    """Position in the run's journal, from 0."""
    key: str
    kind: str
    """`model`, `tool`, `approval` (a human's sign-off on a tool call), `interrupt`
    (a free question to a human), `step` (a custom `ctx.step`), `fallback` (an agent
    gave up), or `clock`, `random`, `uuid` (`ctx.now()`, `ctx.random()`, `ctx.uuid()`)."""
    status: StepStatus
    result: JSON = None
    """The record's stored form (`engine.records.encode`)."""
    started_at: float = 0.0
    ended_at: float = 0.0
    v: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, JSON]:
        return {
            "v": self.v,
            "seq": self.seq,
            "key": self.key,
            "kind": self.kind,
            "status": self.status.value,
            "result": self.result,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        version = data.get("v", 1)
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"journal entry has schema version {version}, newer than this orchestrion "
                f"understands ({SCHEMA_VERSION}); upgrade orchestrion"
            )
        return cls(
            seq=data["seq"],
            key=data["key"],
            kind=data["kind"],
            status=StepStatus(data["status"]),
            result=data.get("result"),
            started_at=data.get("started_at", 0.0),
            ended_at=data.get("ended_at", 0.0),
            v=version,
        )


@dataclass(frozen=True, slots=True)
class Lease:
    """A process's ownership of a run, granted by the store for a while.

    Every claim increments the run's fencing `token`; the store refuses a write
    carrying an older token, so a process that lost its lease (it stalled past
    `until`, or the run was cancelled elsewhere) cannot write any more."""

    owner: str
    """Who holds it: `host:pid:nonce` of the process's runtime."""
    token: int
    since: float
    """When it was claimed (epoch seconds)."""
    until: float
    """When it ends unless renewed (epoch seconds)."""

    def live(self, now: float) -> bool:
        return now < self.until

    def to_json(self) -> dict[str, JSON]:
        return {"owner": self.owner, "token": self.token, "since": self.since, "until": self.until}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        return cls(data["owner"], int(data["token"]), data["since"], data["until"])


@dataclass(slots=True)
class RunRecord:
    """A run's identity, input, status and outcome."""

    id: str
    name: str
    """The name of the agent or pattern that runs."""
    status: RunStatus
    input: JSON = None
    target: str | None = None
    """An import string (`path.py:attr`, `module:attr`) to find the runnable again."""
    output: JSON = None
    error: JSON = None
    """`{"type", "message", "cause_chain"}` for failed runs."""
    pending: list[JSON] = field(default_factory=list)
    """Interrupts waiting for an answer (`Interrupt.to_json()` each)."""
    created_at: float = 0.0
    updated_at: float = 0.0
    parent_id: str | None = None
    """For a fork, the run it was forked from."""
    fork_at: str | None = None
    idempotency_key: str | None = None
    usage: list[JSON] = field(default_factory=lambda: [0, 0, 0])
    """Input tokens, output tokens, model requests and, when priced, cost in USD."""
    lease: Lease | None = None
    """The lease of the process working on the run, if one holds it (live or expired)."""
    token: int = 0
    """The run's fencing token: the number of claims so far."""
    queue: str | None = None
    """The queue of a submitted run: workers on that queue work on it, and take it
    over when its lease ends. None for a run started in-process."""
    priority: int = 0
    """Higher first, among a queue's runs; then oldest first."""
    attempts: int = 0
    """Times a worker took the run since it last stopped working cleanly (with a
    status: waiting, done, put back). Each death of a worker that held it counts."""
    trace: str | None = None
    """The W3C `traceparent` of the span the run's traces hang under (its submitter's,
    or its first traced execution's), so that every execution of it, in any process,
    is part of one trace; None until something traces it."""
    v: int = SCHEMA_VERSION
    journal_size: int | None = field(default=None, compare=False)
    """How many entries the run's journal held when the store gave this record, where
    the store says (a worker's claim: an empty journal needs no read); None if not
    known. Not stored: it is true as of the read only."""

    def orphaned_since(self, now: float) -> float | None:
        """When a `running` run lost its owner (its lease ended, or it has none),
        or None while an owner holds it or the run is not `running`."""
        if self.status is not RunStatus.RUNNING:
            return None  # a queued run is not orphaned: workers take it
        if self.lease is None:
            return self.updated_at
        return None if self.lease.live(now) else self.lease.until

    def to_json(self) -> dict[str, JSON]:
        return {
            "v": self.v,
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "input": self.input,
            "target": self.target,
            "output": self.output,
            "error": self.error,
            "pending": self.pending,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "parent_id": self.parent_id,
            "fork_at": self.fork_at,
            "idempotency_key": self.idempotency_key,
            "usage": self.usage,
            "lease": None if self.lease is None else self.lease.to_json(),
            "token": self.token,
            "queue": self.queue,
            "priority": self.priority,
            "attempts": self.attempts,
            "trace": self.trace,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        version = data.get("v", 1)
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"run record has schema version {version}, newer than this orchestrion "
                f"understands ({SCHEMA_VERSION}); upgrade orchestrion"
            )
        return cls(
            id=data["id"],
            name=data["name"],
            status=RunStatus(data["status"]),
            input=data.get("input"),
            target=data.get("target"),
            output=data.get("output"),
            error=data.get("error"),
            pending=list(data.get("pending") or []),
            created_at=data.get("created_at", 0.0),
            updated_at=data.get("updated_at", 0.0),
            parent_id=data.get("parent_id"),
            fork_at=data.get("fork_at"),
            idempotency_key=data.get("idempotency_key"),
            usage=list(data.get("usage") or [0, 0, 0]),
            lease=Lease.from_json(data["lease"]) if data.get("lease") else None,
            token=int(data.get("token") or 0),
            queue=data.get("queue"),
            priority=int(data.get("priority") or 0),
            attempts=int(data.get("attempts") or 0),
            trace=data.get("trace"),
            v=version,
        )


def latest_by_key(entries: list[Entry]) -> dict[str, Entry]:
    """The current state of every step: the last entry appended for each key."""
    return {e.key: e for e in entries}
