"""An in-process store for tests and ephemeral runs; nothing survives the process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from orchestrion._json import JSON, dumps_str, loads
from orchestrion.engine.journal import Entry, Lease, RunRecord, RunStatus, StepStatus
from orchestrion.engine.store import DEFAULT_LEASE_TTL
from orchestrion.errors import RunBusy, RunNotFound, StoreError, lease_lost

Kept: TypeAlias = tuple[int, str, str, StepStatus, str, float, float, int]
"""An entry as this store keeps it: its result as JSON (see `_kept`)."""


def _kept(entry: Entry) -> Kept:
    """`entry` with its result as JSON, as the other stores keep it: a fraction of
    the objects' size (10,000 runs at once held 5.9 KB of journal each as objects),
    and nothing the engine holds is shared with the store."""
    seq, key, kind, status, result, started_at, ended_at, v = entry
    # As text: the bytes orjson returns keep its whole output buffer (about 4 KB).
    return seq, key, kind, status, dumps_str(result), started_at, ended_at, v


def duplicate_seq_error(run_id: str, seq: int) -> StoreError:
    """Why appending a seq that a run's journal already holds is refused."""
    return StoreError(
        f"Cannot append seq {seq} to run {run_id!r}: its journal already has an entry at "
        f"seq {seq}. The run is being resumed twice at once (by two processes, or twice in "
        "one): let the other resume finish, then check the run with "
        f"`orchestrion show {run_id}`."
    )


def seq_error(run_id: str, seq: int, expected: int) -> StoreError:
    """Why appending `seq` to a run whose journal must continue at `expected` is refused.

    Shared by the built-in stores so that both say the same thing."""
    if seq < expected:
        return duplicate_seq_error(run_id, seq)
    missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
    return StoreError(
        f"Cannot append seq {seq} to run {run_id!r}: its journal continues at seq {expected}, "
        f"so {missing} would be missing. Entries are appended in seq order "
        f"without gaps; if earlier writes of this run failed, resume it from what was saved: "
        f"`orchestrion resume {run_id}`."
    )


def idempotency_key_error(run_id: str, key: str, owner: str | None) -> StoreError:
    """Why creating a run with an idempotency key that is already used is refused."""
    by = f"run {owner!r}" if owner is not None else "another run"
    return StoreError(
        f"Cannot create run {run_id!r}: idempotency key {key!r} is already used by {by}; "
        "look that run up with find_run(idempotency_key=...)."
    )


_ACTIVE = ("queued", "running", "interrupted")
"""The statuses `run_counts` counts."""


class MemoryStore:
    url = "memory://"

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> MemoryStore:
        return cls()

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._journals: dict[str, list[Kept]] = {}
        self._queued: asyncio.Event | None = None
        """Set when a run is queued or put back (for `wait_for_runs`)."""
        self._queued_loop: asyncio.AbstractEventLoop | None = None
        self._waiting: frozenset[str] = frozenset()
        """The queues `wait_for_runs` waits for."""

    async def create_run(
        self,
        run: RunRecord,
        entries: Sequence[Entry] = (),
        *,
        owner: str | None = None,
        ttl: float = DEFAULT_LEASE_TTL,
    ) -> Lease | None:
        if run.id in self._runs:
            raise StoreError(f"A run with id {run.id!r} already exists; choose another id.")
        key = run.idempotency_key
        if key is not None:
            used_by = next((r.id for r in self._runs.values() if r.idempotency_key == key), None)
            if used_by is not None:
                raise idempotency_key_error(run.id, key, used_by)
        now = time.time()
        lease = None if owner is None else Lease(owner, 1, now, now + ttl)
        self._runs[run.id] = dataclasses.replace(
            run, pending=list(run.pending), lease=lease, token=0 if lease is None else 1
        )
        self._journals[run.id] = [_kept(e) for e in entries]
        if run.status == RunStatus.QUEUED:
            self._wake(run.queue)
        return lease

    async def claim(
        self, run_id: str, owner: str, *, ttl: float = DEFAULT_LEASE_TTL, steal: bool = False
    ) -> RunRecord:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id, self.url)
        now = time.time()
        held = run.lease
        if held is not None and held.live(now) and held.owner != owner and not steal:
            raise RunBusy(run_id, held.owner, held.since, held.until)
        run.token += 1
        run.lease = Lease(owner, run.token, now, now + ttl)
        return dataclasses.replace(run, pending=list(run.pending))

    async def claim_next(
        self, owner: str, queues: Sequence[str], *, ttl: float = DEFAULT_LEASE_TTL, limit: int = 1
    ) -> list[RunRecord]:
        now = time.time()
        waiting = [
            r
            for r in self._runs.values()
            if r.queue in queues
            and (
                r.status == RunStatus.QUEUED
                or (r.status == RunStatus.RUNNING and (r.lease is None or not r.lease.live(now)))
            )
        ]
        waiting.sort(key=lambda r: (-r.priority, r.created_at))
        claimed = []
        for run in waiting[:limit]:
            run.status = RunStatus.RUNNING  # marked running as it is claimed
            run.attempts += 1
            record = await self.claim(run.id, owner, ttl=ttl)
            record.journal_size = len(self._journals[run.id])
            claimed.append(record)
        return claimed

    async def wait_for_runs(self, queues: Sequence[str], timeout: float) -> None:
        event = self._queued
        loop = asyncio.get_running_loop()
        if event is None or self._queued_loop is not loop:  # an Event serves one loop
            event = self._queued = asyncio.Event()
            self._queued_loop = loop
        self._waiting = frozenset(queues)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        event.clear()

    def _wake(self, queue: str | None) -> None:
        if self._queued is not None and queue in self._waiting:
            self._queued.set()

    async def renew(self, leases: Mapping[str, int], *, ttl: float = DEFAULT_LEASE_TTL) -> set[str]:
        lost: set[str] = set()
        until = time.time() + ttl
        for run_id, token in leases.items():
            run = self._runs.get(run_id)
            if run is None or run.lease is None or run.lease.token != token:
                lost.add(run_id)
            else:
                run.lease = dataclasses.replace(run.lease, until=until)
        return lost

    async def release(self, run_id: str, token: int) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.lease is not None and run.lease.token == token:
            run.lease = None

    def _fence(self, run_id: str, token: int | None, doing: str) -> RunRecord:
        """The run to write, if `token` (when given) is still its fencing token."""
        run = self._runs.get(run_id)
        if run is None:
            raise StoreError(f"Cannot {doing} run {run_id!r}: it does not exist.")
        if token is not None and token != run.token:
            raise lease_lost(run_id, token, run.token)
        return run

    async def get_run(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        return None if run is None else dataclasses.replace(run, pending=list(run.pending))

    async def find_run(self, *, idempotency_key: str) -> RunRecord | None:
        for run in self._runs.values():
            if run.idempotency_key == idempotency_key:
                return dataclasses.replace(run)
        return None

    async def run_counts(self, queues: Sequence[str]) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for run in self._runs.values():
            if run.queue is not None and run.queue in queues and run.status.value in _ACTIVE:
                key = (str(run.status.value), run.queue)
                counts[key] = counts.get(key, 0) + 1
        return counts

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        runs = [r for r in self._runs.values() if status is None or r.status == status]
        runs.reverse()  # newest first, ties by insertion order like the SQL stores
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return [dataclasses.replace(r) for r in runs[:limit]]

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
        run = self._fence(run_id, token, "update")
        if run.trace is None:
            run.trace = trace
        if release:
            run.lease, run.attempts = None, 0
        run.status = status
        run.output = output
        run.error = error
        run.pending = list(pending or [])
        if usage is not None:
            run.usage = list(usage)
        run.updated_at = time.time()
        if status == RunStatus.QUEUED:
            self._wake(run.queue)

    async def append(
        self, run_id: str, entries: Sequence[Entry], *, durable: bool, token: int | None = None
    ) -> None:
        journal = self._journals.get(run_id)
        if journal is None:
            raise StoreError(f"Cannot append to run {run_id!r}: it does not exist.")
        if token is not None:
            self._fence(run_id, token, "append to")
        # A journal is a gap-free prefix: each entry's seq is the journal's length
        # when it is appended. Checked for all entries before any is added.
        expected = len(journal)
        for i, e in enumerate(entries):
            if e.seq != expected + i:
                raise seq_error(run_id, e.seq, expected + i)
        journal.extend(map(_kept, entries))

    async def load(self, run_id: str) -> list[Entry]:
        return [
            Entry(seq, key, kind, status, loads(result), started_at, ended_at, v)
            for seq, key, kind, status, result, started_at, ended_at, v in self._journals.get(
                run_id, ()
            )
        ]

    async def close(self) -> None:
        return None
