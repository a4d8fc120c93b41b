"""`ReplayLog`: the journal of one run as one execution of it sees it.

It answers what the journal already holds (the latest entry of each step, a
step's failed attempts, the writes that started) and appends what the execution
adds, under this process's fencing token. It also keeps the claims: every step
key is reserved once (a key used twice is a determinism bug), and on resume a
step off the journal's path is refused (`engine.divergence`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from orchestrion import keys
from orchestrion._json import JSON, clean_data
from orchestrion.engine.divergence import NO_DIVERGENCE, Divergence
from orchestrion.engine.journal import Entry, StepStatus, latest_by_key
from orchestrion.engine.records import Record, WriteStarted, encode, expect
from orchestrion.engine.store import Store
from orchestrion.errors import DeterminismError

COMPLETED = StepStatus.COMPLETED
T = TypeVar("T")


class ReplayLog:
    """The journal of run `run_id` while one execution works on it."""

    __slots__ = (
        "_claimed",
        "_cut_off",
        "_fence",
        "_fenced",
        "_halted",
        "_live_writes",
        "_origin_keys",
        "_seq",
        "_store",
        "_sync",
        "_waits",
        "_writes",
        "divergence",
        "failures",
        "replay",
        "run_id",
        "steps",
        "token",
        "waiting_since",
    )

    def __init__(
        self,
        run_id: str,
        entries: list[Entry],
        *,
        store: Store,
        sync: bool,
        token: int | None = None,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.run_id = run_id
        self._store = store
        self._sync = sync
        """Every append is committed before the step goes on (`durability="sync"`)."""
        self.token = token
        """The fencing token of this process's lease on the run: every append carries it."""
        self._fence = fence
        """Confirms in the store that this process still owns the run (raises
        `LeaseLost` if not)."""
        self._halted: BaseException | None = None
        """Set when no new step may start here (`halt`, `stop_steps`): the next raises it."""
        self._fenced: BaseException | None = None
        """Set (to a `LeaseLost`) when this process lost the run: the next append raises it."""
        self.replay = latest_by_key(entries)
        """The latest journaled entry of each step, by key: fixed for this execution."""
        failures: dict[str, list[Entry]] = {}
        self.failures: Mapping[str, list[Entry]] = failures
        """Failed attempts journaled before this execution, by step key: where a
        step's retries and fallbacks resume."""
        self._writes: set[str] | None = None
        """Keys of the write-tool calls that started, journaled or live (made by the
        first: most runs make no write, and each run's empty sets add up)."""
        self._origin_keys: dict[str, str] = {}
        """Idempotency keys of writes that started in the run this one was forked from."""
        for e in entries:
            if e.status is StepStatus.FAILED:
                failures.setdefault(e.key, []).append(e)
            elif e.status is StepStatus.STARTED:
                self._started(e.key)
                origin = expect(e, WriteStarted).origin_key
                if origin is not None:
                    self._origin_keys[e.key] = origin
        self._seq = entries[-1].seq + 1 if entries else 0
        self.divergence = Divergence(entries, self.replay) if entries else NO_DIVERGENCE
        """Catches code that takes another path than the journal's on resume."""
        self._claimed: dict[str, str] = {}
        """Where each key claimed so far was claimed (the code site), by key."""
        self.steps = 0
        """Steps claimed in this execution (model requests, tool calls, answers, custom steps)."""
        self._cut_off: set[str] | None = None
        """Keys of write tools cancelled mid-call (e.g. by a branch's timeout)."""
        self._live_writes: set[str] | None = None
        """Keys of the write-tool calls under way in this execution (started, not ended)."""
        self._waits: set[asyncio.Future[object]] | None = None
        """The steps under way that only wait (`wait_for`): `stop_steps` ends them.
        Made by the first (most runs never wait: no set for them)."""
        self.waiting_since: float | None = None
        """Since when (`time.monotonic()`) a step that only waits has been under way, if one is."""

    # -- claims ------------------------------------------------------------

    def claim(
        self, key: str, site: str, *, nests: bool = False, marker: bool = False
    ) -> Entry | None:
        """Reserve `key` for this step; return its recorded completion, if any.
        `nests`: the step runs a function of the user's, which may claim steps too.
        `marker`: `key` is a `ctx.run` scope marker (`keys.scope_marker`), not a step."""
        if self._halted is not None and (self._fenced is not None or not self._in_write(key)):
            raise self._halted
        first = self._claimed.get(key)
        if first is not None:
            fix = (
                "Run the same member twice with distinct ctx.run(..., key=...)"
                if marker
                else "Give the two steps distinct names"
            )
            raise DeterminismError(
                f"Step key {key!r} was used twice in run {self.run_id}: first by {first}, "
                f"then by {site}. {fix}, and keep orchestration code deterministic (no random "
                "or time-dependent step names)."
            )
        self._claimed[key] = site
        if not marker:  # a `ctx.run` scope is not a step
            self.steps += 1
        if self.divergence.waiting:  # before the step runs: a new one off the path raises
            self.divergence.asked(key, self._claimed, self.run_id, nests=nests)
        done = self.replay.get(key)
        return done if done is not None and done.status is COMPLETED else None

    # -- appends -----------------------------------------------------------

    def record(
        self, key: str, kind: str, record: Record, started_at: float, *, durable: bool = False
    ) -> Awaitable[None]:
        """Append `record` as the state of the step at `key` (a `WriteStarted` also
        counts the write as started)."""
        if isinstance(record, WriteStarted):
            self._started(key)
            if self._live_writes is None:
                self._live_writes = set()
            self._live_writes.add(key)
        return self.append(key, kind, record.status, encode(record), started_at, durable)

    def append(
        self,
        key: str,
        kind: str,
        status: StepStatus,
        result: JSON,
        started_at: float,
        durable: bool,
    ) -> Awaitable[None]:
        """Append an entry whose `result` is already encoded (see `record`)."""
        if self._fenced is not None:
            raise self._fenced
        if status is StepStatus.FAILED:  # an exception's message may hold anything
            result = clean_data(result)
        if self._live_writes and status is not StepStatus.STARTED:
            self._live_writes.discard(key)
        entry = Entry(self._seq, key, kind, status, result, started_at, time.time())
        self._seq += 1
        return self._store.append(
            self.run_id, (entry,), durable=durable or self._sync, token=self.token
        )

    # -- ownership ---------------------------------------------------------

    def halt(self, error: BaseException) -> None:
        """This process lost the run: its next step or append raises `error`, and so
        do the steps under way that only wait (`wait_for`)."""
        self._halted = self._fenced = error
        for waiting in self._waits or ():
            waiting.cancel()

    def stop_steps(self, error: BaseException) -> None:
        """No new step starts: the next one raises `error`. Steps under way finish
        and are journaled (a worker that stops lets its runs reach a step boundary),
        and so do the steps inside a write tool's call under way (its `ctx.now()`),
        but the steps that only wait (`wait_for`) end at once."""
        if self._halted is None:
            self._halted = error
        for waiting in self._waits or ():
            waiting.cancel()

    async def wait_for(self, step: Awaitable[T]) -> T:
        """Await a step that only waits (for mail, say) and changes nothing that a
        second try would not redo: `stop_steps` ends it at once with its error,
        rather than letting it finish."""
        waiting: asyncio.Future[T] = asyncio.ensure_future(step)
        waits = self._waits = self._waits or set()
        waits.add(waiting)  # type: ignore[arg-type]  # kept to be cancelled
        if self.waiting_since is None:
            self.waiting_since = time.monotonic()
        try:
            return await waiting
        except asyncio.CancelledError:
            current, halted = asyncio.current_task(), self._halted
            if halted is not None and current is not None and not current.cancelling():
                raise halted from None  # cut off by `stop_steps`, not cancelled itself
            raise
        finally:
            waits.discard(waiting)
            waiting.cancel()
            if not waits:
                self.waiting_since = None

    @property
    def writing(self) -> bool:
        """A write-tool call of this execution is under way."""
        return bool(self._live_writes)

    def _in_write(self, key: str) -> bool:
        return any(keys.is_below(key, w) for w in self._live_writes or ())

    async def confirm_owner(self) -> None:
        """Confirm in the store that this process still owns the run (`LeaseLost` if
        not): for a write about to run again with no journal entry first."""
        if self._fence is not None:
            await self._fence()

    # -- what the journal says --------------------------------------------

    def writes_below(self, key: str) -> list[str]:
        """The write-tool calls below `key` that started (journaled or live), sorted."""
        return sorted(k for k in self._writes or () if keys.is_below(k, key))

    def _started(self, key: str) -> None:
        if self._writes is None:
            self._writes = set()
        self._writes.add(key)

    def cut_off(self, key: str) -> None:
        """The write tool at `key` was cancelled mid-call: its effect is unknown."""
        if self._cut_off is None:
            self._cut_off = set()
        self._cut_off.add(key)

    def cut_off_below(self, key: str) -> list[str]:
        """The write tools below `key` cancelled mid-call, sorted."""
        if not self._cut_off:
            return []
        return sorted(k for k in self._cut_off if keys.is_below(k, key))

    def idempotency_key(self, key: str) -> str:
        """The idempotency key of the step at `key`: a write that started in the run
        this one was forked from keeps that run's key."""
        if self._origin_keys:
            origin = self._origin_keys.get(key)
            if origin is not None:
                return origin
        return idempotency_key_of(self.run_id, key)


class StepsStopped(BaseException):
    """Raised where a run's next step would start, after `ReplayLog.stop_steps`: the
    worker that works on the run is stopping, and the run goes back to its queue.
    Not an `Exception`, so that no retry, fallback or step failure records it."""


def idempotency_key_of(run_id: str, key: str) -> str:
    """The idempotency key of the step at `key` in run `run_id`: stable across resumes."""
    return hashlib.blake2b(f"{run_id}\x00{key}".encode(), digest_size=16).hexdigest()
