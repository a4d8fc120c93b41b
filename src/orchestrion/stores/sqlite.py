"""The embedded default store: one SQLite file in WAL mode, written by one thread.

Every operation goes through one queue drained by a dedicated thread that owns
the only connection. The thread takes everything queued, applies all writes
(from every concurrent run) in ONE transaction, commits, then answers reads.
So non-durable appends cost the caller a JSON encode and a queue put; durable
calls wait for the group commit that includes them.

Tables (layout version in `PRAGMA user_version`, payloads are JSON text):

    runs(id PK, name, status, created_at, updated_at, idempotency_key, data,
         owner, token, lease_since, lease_until, queue, priority)
    journal(run_id, seq, key, kind, status, data, PK (run_id, seq))

Failures. A journal is always a gap-free prefix and a write's failure reaches
the run it belongs to:

- A batch that fails because the file is locked (SQLITE_BUSY) is retried in the
  writer with a short backoff, for up to `busy_timeout` more seconds, before it
  fails; nothing is dropped meanwhile.
- The writer checks each append continues its run's journal (seq = the next
  one); a duplicate seq means the run is being resumed twice at once.
- When a write of a run finally fails (the whole batch, or its own append), the
  failure is kept for THAT run (`_Writer.failed`): every later write of the run
  is refused without touching the database, and its next call (append,
  update_run or load) raises the error, as does a durable call in the failed
  batch. Other runs never see it. The first `load` of the run after the error
  was raised clears the failure: a resume reads the saved prefix and appends
  from its end.
- A write refused for a stale fencing token (`LeaseLost`) is its old owner's
  failure only: it refuses the later writes carrying that token, never the
  writes of the run's new owner (another runtime on this store) nor a load.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, cast

from orchestrion._json import JSON, dumps_str
from orchestrion.engine.breakers import BreakerState, Circuit, Permit, Transition
from orchestrion.engine.journal import Entry, Lease, RunRecord, RunStatus
from orchestrion.engine.rate_limits import Allowance
from orchestrion.engine.store import DEFAULT_LEASE_TTL
from orchestrion.errors import BreakerOpen, StoreError, UserError
from orchestrion.policy import Breaker, RateLimit
from orchestrion.redact import redact_url
from orchestrion.stores._failures import lost_writes
from orchestrion.stores._sqlite_file import DEFAULT_PATH, next_claimable
from orchestrion.stores._sqlite_ops import (
    Allow,
    Append,
    Claim,
    ClaimNext,
    Count,
    Create,
    Find,
    Get,
    List,
    Load,
    Op,
    Release,
    Renew,
    RunRow,
    SqlRow,
    Stop,
    Trip,
    Update,
    Waiter,
)
from orchestrion.stores._sqlite_writer import _open_writers, _Writer

P = ParamSpec("P")


class SQLiteStore:
    """Runs and journals in one SQLite file (WAL), written by one group-committing thread.

    `busy_timeout` is how long (seconds) to wait for another process's lock. A
    group commit that still finds the file locked is retried for as long again;
    then the writes of the runs in it fail with `StoreError` (see the module
    docstring for how each run hears of it). `read_only` opens an existing file
    for reading only (`orchestrion runs` and `show`): nothing is created or changed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        busy_timeout: float = 5.0,
        read_only: bool = False,
    ):
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self._writer = _Writer(os.path.abspath(self.path), busy_timeout, read_only=read_only)
        self._put = self._writer.queue.put
        self._known = self._writer.known
        self._failed = self._writer.failed
        _open_writers.add(self._writer)
        self._watch: sqlite3.Connection | None = None
        """A reader of the file for `wait_for_runs`, opened on first use."""

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> SQLiteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
        prefix = "sqlite:///"
        path = url[len(prefix) :] if url.startswith(prefix) else ""
        if not path or path == ":memory:":
            raise UserError(
                f"SQLite store URL {redact_url(url)!r} names no file: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (or memory:// for a store that is not kept)."
            )
        return cls(path, read_only=read_only)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @property
    def commits(self) -> int:
        """Transactions committed so far (one per group commit)."""
        return self._writer.commits

    # -- plumbing ------------------------------------------------------------

    def _refuse(self, run_id: str, token: int | None) -> None:
        """Raise the failure of `run_id`'s earlier writes, if any: its writes are
        refused until a load of the run (see the module docstring)."""
        failure = self._failed.get(run_id)
        if failure is not None and failure.refuses(token):
            failure.reported = True
            raise failure.error()

    def _check_open(self) -> None:
        if self._writer.closing:
            raise StoreError(f"The store {self.path} is closed: open it again to use it.")

    async def _call(
        self, op: Callable[Concatenate[Waiter, P], Op], *args: P.args, **kwargs: P.kwargs
    ) -> Any:
        """Queue the operation `op(future, *args)` and wait for its result."""
        self._check_open()
        fut = asyncio.get_running_loop().create_future()
        self._put(op(fut, *args, **kwargs))
        return await fut

    # -- Store protocol ------------------------------------------------------

    async def create_run(
        self,
        run: RunRecord,
        entries: Sequence[Entry] = (),
        *,
        owner: str | None = None,
        ttl: float = DEFAULT_LEASE_TTL,
    ) -> Lease | None:
        fields = run.to_json()
        del fields["lease"], fields["token"]  # kept in their own columns
        data = self._encode(run.id, fields)
        now = time.time()
        lease = None if owner is None else Lease(owner, 1, now, now + ttl)
        row = RunRow(
            id=run.id,
            name=run.name,
            status=run.status.value,
            created_at=run.created_at,
            updated_at=run.updated_at,
            idempotency_key=run.idempotency_key,
            data=data,
            owner=owner,
            token=0 if lease is None else 1,
            lease_since=None if lease is None else lease.since,
            lease_until=None if lease is None else lease.until,
            queue=run.queue,
            priority=run.priority,
        )
        first = tuple(entries)
        await self._call(Create, row, first, self._rows(run.id, first))
        return lease

    async def claim(
        self, run_id: str, owner: str, *, ttl: float = DEFAULT_LEASE_TTL, steal: bool = False
    ) -> RunRecord:
        record: RunRecord = await self._call(
            Claim, run_id=run_id, owner=owner, ttl=ttl, steal=steal
        )
        return record

    async def renew(self, leases: Mapping[str, int], *, ttl: float = DEFAULT_LEASE_TTL) -> set[str]:
        lost: set[str] = await self._call(Renew, dict(leases), ttl)
        return lost

    async def release(self, run_id: str, token: int) -> None:
        await self._call(Release, run_id, token)

    async def claim_next(
        self, owner: str, queues: Sequence[str], *, ttl: float = DEFAULT_LEASE_TTL, limit: int = 1
    ) -> list[RunRecord]:
        claimed: list[RunRecord] = await self._call(ClaimNext, owner, tuple(queues), ttl, limit)
        return claimed

    def rate_limits(self) -> SQLiteLimits:
        """Rate-limit allowances shared by every runtime on this file (a runtime on
        this store uses them unless given its own)."""
        return SQLiteLimits(self)

    async def _allow(self, key: str, change: Callable[[Allowance, float], object]) -> object:
        return await self._call(Allow, key, change)

    def breakers(self) -> SQLiteBreakers:
        """Circuit breakers shared by every runtime on this file (a runtime on this
        store uses them unless given its own)."""
        return SQLiteBreakers(self)

    async def _trip(
        self, name: str, config: Breaker, change: Callable[[Circuit, float], object]
    ) -> object:
        return await self._call(Trip, name, config, change)

    async def wait_for_runs(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a run of `queues` may be claimed, or after `timeout` seconds.

        SQLite has no notifications: every 20 ms this looks whether any connection
        (of this process or another) committed since (`PRAGMA data_version`, no
        read of the tables), and if so, or each half second (a lease that ends
        commits nothing), whether a run is claimable: one indexed read, no lock."""
        self._check_open()
        watch = self._watch
        if watch is None:  # the writer's path: absolute, whatever the working directory is now
            watch = sqlite3.connect(self._writer.path, timeout=0.05, isolation_level=None)
            self._watch = watch
        deadline = time.monotonic() + timeout
        version, looked = -1, 0.0
        try:
            while True:
                now = time.monotonic()
                seen = watch.execute("PRAGMA data_version").fetchone()[0]
                if seen != version or now - looked >= 0.5:
                    version, looked = seen, now
                    if next_claimable(watch, queues, time.time()) is not None:
                        return
                if now >= deadline:
                    return
                await asyncio.sleep(min(0.02, deadline - now))
        except sqlite3.Error:
            await asyncio.sleep(max(deadline - time.monotonic(), 0))  # the claim will say why

    async def get_run(self, run_id: str) -> RunRecord | None:
        record: RunRecord | None = await self._call(Get, run_id)
        return record

    async def find_run(self, *, idempotency_key: str) -> RunRecord | None:
        record: RunRecord | None = await self._call(Find, idempotency_key)
        return record

    async def run_counts(self, queues: Sequence[str]) -> dict[tuple[str, str], int]:
        if not queues:
            return {}
        counts: dict[tuple[str, str], int] = await self._call(Count, tuple(dict.fromkeys(queues)))
        return counts

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        runs: list[RunRecord] = await self._call(
            List, None if status is None else RunStatus(status).value, limit
        )
        return runs

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        output: JSON = None,
        error: JSON = None,
        pending: list[JSON] | None = None,
        usage: list[JSON] | None = None,
        token: int | None = None,
        release: bool = False,
        trace: str | None = None,
    ) -> None:
        if self._failed:
            self._refuse(run_id, token)
        status = RunStatus(status)
        now = time.time()
        patch: dict[str, JSON] = {
            "status": status.value,
            "output": output,
            "error": error,
            "pending": list(pending or []),
            "updated_at": now,
        }
        if usage is not None:
            patch["usage"] = list(usage)
        if trace is not None:
            patch["trace"] = trace  # kept only where the run has none (`_sqlite_ops`)
        await self._call(
            Update,
            run_id=run_id,
            status=status.value,
            updated_at=now,
            patch=self._encode(run_id, patch),
            token=token,
            release=release,
        )

    async def append(
        self, run_id: str, entries: Sequence[Entry], *, durable: bool, token: int | None = None
    ) -> None:
        if self._failed:
            self._refuse(run_id, token)
        if self._writer.closing:
            self._check_open()
        # Queued as a tuple: a caller's list may change before the writer reads it.
        queued = entries if isinstance(entries, tuple) else tuple(entries)
        rows = self._rows(run_id, queued)
        if not durable and run_id in self._known:
            self._put(Append(None, run_id, queued, rows, token))
            return
        # Durable, or the first append to a run this store has not seen: wait,
        # so appending to a missing run fails here as it does in every store.
        await self._call(Append, run_id, queued, rows, token)

    async def load(self, run_id: str) -> list[Entry]:
        # Reads go through the same queue as writes, behind every append made
        # before them (durable or not), so a load always sees them. If earlier
        # writes of the run failed, the first load after that raises the failure
        # and the next one (a resume's) clears it: appends continue the saved prefix.
        entries: list[Entry] = await self._call(Load, run_id)
        return entries

    async def close(self) -> None:
        """Commit pending writes and stop the thread; closing twice is harmless.
        Raises the failures of writes whose runs have not heard of them yet."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        writer = self._writer
        if not writer.closing:
            writer.closing = True
            fut = asyncio.get_running_loop().create_future()
            self._put(Stop(fut))  # not `_call`: the store counts as closed already
            await fut
        writer.thread.join()
        lost = lost_writes(writer.take_unreported())
        if lost is not None:
            raise lost

    # -- encoding (in the caller, so bad input fails before it is queued) -----

    @staticmethod
    def _encode(run_id: str, value: JSON) -> str:
        try:
            return dumps_str(value)
        except TypeError as exc:
            raise StoreError(f"Cannot store run {run_id!r}: a value is not JSON: {exc}") from exc

    @staticmethod
    def _rows(run_id: str, entries: Sequence[Entry]) -> list[SqlRow]:
        try:
            return [
                (run_id, e.seq, e.key, e.kind, e.status.value, dumps_str(e.to_json()))
                for e in entries
            ]
        except TypeError as exc:
            raise StoreError(
                f"Cannot append to run {run_id!r}: an entry's result is not JSON: {exc}"
            ) from exc


class SQLiteLimits:
    """The `Limits` of every runtime on one SQLite file: the processes of a machine
    (workers on the file) draw from one allowance per model, changed in the
    writer's transactions (see `engine.rate_limits`)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def take(self, key: str, limit: RateLimit) -> float:
        wait = await self._store._allow(key, lambda a, now: a.take(limit, now))
        assert isinstance(wait, float)
        return wait

    async def spend(self, key: str, limit: RateLimit, tokens: int, cost: float | None) -> None:
        await self._store._allow(key, lambda a, now: a.spend(limit, tokens, cost, now))


class SQLiteBreakers:
    """The `Breakers` of every runtime on one SQLite file: a circuit opened by one
    process's failures refuses the calls of every process on the file. Each
    `acquire` and `release` is a change in the writer's transactions, under
    `engine.breakers.Circuit`'s rules; times are wall-clock (one machine, one clock)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._configs: dict[str, Breaker] = {}
        """Each breaker's configuration, from the policies of this process's calls."""

    async def acquire(self, name: str, config: Breaker) -> Permit:
        self._configs[name] = config
        return cast(Permit, await self._change(name, config, lambda c, now: c.admit(name, now)))

    async def release(self, permit: Permit, outcome: bool | None) -> Transition | None:
        config = self._configs[permit.name]
        change = await self._change(
            permit.name, config, lambda c, now: c.settle(permit, outcome, now)
        )
        return cast("Transition | None", change)

    async def states(self) -> list[BreakerState]:
        """The breakers this process has policies for (read in the writer's order)."""
        shown = [
            await self._change(name, config, _shown(name))
            for name, config in sorted(self._configs.items())
        ]
        return cast(list[BreakerState], shown)

    async def _change(
        self, name: str, config: Breaker, change: Callable[[Circuit, float], object]
    ) -> object:
        result = await self._store._trip(name, config, change)
        if isinstance(result, BreakerOpen):
            raise result
        return result


def _shown(name: str) -> Callable[[Circuit, float], object]:
    return lambda circuit, now: circuit.shown(name, now)
