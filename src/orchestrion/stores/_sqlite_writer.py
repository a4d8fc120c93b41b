"""The SQLite store's writer thread: batching, group commit, retries, per-run failures.

The thread drains the queue of operations (`orchestrion.stores._sqlite_ops`)
batch by batch: it applies a batch's writes in one transaction (retried while
another connection holds the lock), commits, then answers its reads, and hands
each waiting caller its result in the caller's event loop. See
`orchestrion.stores.sqlite` for the design.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

from orchestrion.errors import LeaseLost, OrchestrionError, StoreError
from orchestrion.stores._failures import WriteFailure
from orchestrion.stores._sqlite_file import (
    RUN_COLUMNS,
    is_busy,
    moved_error,
    open_file,
    store_error,
)
from orchestrion.stores._sqlite_ops import (
    RUN_WRITES,
    WRITES,
    Append,
    Load,
    Op,
    Read,
    Reads,
    Stop,
    SyncWaiter,
    Transaction,
    Update,
    Write,
)

_MAX_BATCH = 20_000
_RETRY_MIN_WINDOW = 0.1
"""Seconds a batch that failed on a locked file is retried, at least (else `busy_timeout`)."""
_RETRY_MAX_PAUSE = 0.05


class _Delivery(NamedTuple):
    """A result to hand to a caller waiting in an event loop."""

    future: asyncio.Future[Any]
    result: object
    failure: WriteFailure | None
    """The run's failure that `result` raises: marked as reported once it is."""


def _resolve(items: list[_Delivery]) -> None:
    """Runs in the caller's event loop: hand each waiting caller its result."""
    for fut, result, failure in items:
        if fut.done():  # the caller was cancelled: a run's failure stays unreported
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
            if failure is not None:
                failure.reported = True
        else:
            fut.set_result(result)


def _copy(error: StoreError) -> StoreError:
    """A new exception with the same message and cause (one instance per caller)."""
    copy = type(error)(str(error))
    copy.__cause__ = error.__cause__
    return copy


def _lost(
    run_id: str,
    ops: Sequence[Append | Update],
    cause: StoreError,
    fix: str = "fix the database problem, then ",
) -> WriteFailure:
    """The failure of a run whose writes `ops` (in order) were not saved."""
    entries = next((op.entries for op in ops if isinstance(op, Append) and op.entries), None)
    if entries:
        what = f"its journal from step {entries[0].key!r} (seq {entries[0].seq}) on"
    else:
        status = next((op.status for op in ops if isinstance(op, Update)), "?")
        what = f"its status update to {status!r}"
    text = (
        f"Run {run_id!r} lost writes: {what} was not saved. {cause} Its later writes are "
        f"refused so that its journal keeps no gap; the run stays resumable: {fix}"
        f"`orchestrion resume {run_id}`."
    )
    return WriteFailure(text, cause.__cause__)


class _Writer:
    """The one thread and connection that touch the database file."""

    def __init__(self, path: str, busy_timeout: float, *, read_only: bool = False) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.run_columns = RUN_COLUMNS
        self._identity: tuple[int, int] = (0, 0)
        """(device, inode) of the file opened: a file deleted or replaced under
        this process is noticed at the next write (`moved_error`)."""
        self._synchronous = ""
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self.known: set[str] = set()
        """Ids of runs known to exist; written by this thread, read by callers."""
        self.failed: dict[str, WriteFailure] = {}
        """Runs whose writes failed (see the module docstring); written by this
        thread, read by callers."""
        self.next_seq: dict[str, int] = {}
        """The seq the next append of a run must have, for runs whose journal end
        this thread knows (created, loaded or appended to here)."""
        self.commits = 0
        self.closing = False
        self._conn: sqlite3.Connection | None = None
        self._reads: Reads
        """The read handlers, on the connection (set by the thread once it opened it)."""
        self._ready = threading.Event()
        self._init_error: OrchestrionError | None = None
        self.thread = threading.Thread(target=self._main, name="orchestrion-sqlite", daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._init_error is not None:
            self.thread.join()
            raise self._init_error

    # -- thread ------------------------------------------------------------

    def _main(self) -> None:
        try:
            opened = open_file(self.path, self.busy_timeout, read_only=self.read_only)
            conn = self._conn = opened.conn
            self.run_columns, self._identity = opened.run_columns, opened.identity
            self._synchronous = "NORMAL"
            self._reads = Reads(conn, self)
        except Exception as exc:  # never leave the constructor waiting
            self._init_error = (
                exc
                if isinstance(exc, OrchestrionError)
                else store_error(self.path, exc, "opening it", self.busy_timeout)
            )
            self._ready.set()
            return
        self._ready.set()
        stop: Stop | None = None
        try:
            stop = self._serve()
        finally:
            conn.close()
            self.closing = True
            self._drain_closed()
            if stop is not None:
                self._deliver([stop], [None])

    def _set_synchronous(self, conn: sqlite3.Connection, level: str) -> None:
        """FULL fsyncs each commit (it survives an OS crash or power loss);
        NORMAL may lose the last commits then (still safe against a process kill)."""
        if level != self._synchronous:
            conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def _serve(self) -> Stop:
        """Drain the queue batch by batch until a stop operation; return it. What
        is queued after the stop stays queued (failed as "closed" by `_drain_closed`)."""
        get, get_nowait = self.queue.get, self.queue.get_nowait
        while True:
            batch: list[Write | Read] = []
            op = get()
            while True:
                if isinstance(op, Stop):
                    self._process(batch)
                    return op
                batch.append(op)
                if len(batch) == _MAX_BATCH:
                    break
                try:
                    op = get_nowait()
                except queue.Empty:
                    break
            self._process(batch)

    def _drain_closed(self) -> None:
        ops: list[Op] = []
        while True:
            try:
                ops.append(self.queue.get_nowait())
            except queue.Empty:
                break
        closed = StoreError(f"The store {self.path} is closed: open it again to use it.")
        for op in ops:
            if isinstance(op, Append) and op.waiter is None:  # the run must hear of it
                self.failed.setdefault(op.run_id, _lost(op.run_id, [op], closed, fix=""))
        self._deliver(ops, [None if isinstance(op, Stop) else _copy(closed) for op in ops])

    def _process(self, batch: list[Write | Read]) -> None:
        if self.failed:
            # A load that clears a run's failure must neither let through a write
            # queued before it nor refuse one queued after it (writes are applied
            # before reads): apply the batch up to that load first.
            start = 0
            for i, op in enumerate(batch):
                failure = self.failed.get(op.run_id) if isinstance(op, Load) else None
                if failure is not None and failure.reported:
                    self._run(batch[start : i + 1], clears=True)
                    start = i + 1
            batch = batch[start:]
        if batch:
            self._run(batch, clears=False)

    def _run(self, batch: list[Write | Read], *, clears: bool) -> None:
        """Apply the writes of `batch` in one transaction, then answer its reads.
        With `clears`, the last operation is a load that clears its run's failure."""
        writes: list[Write] = [op for op in batch if isinstance(op, WRITES)]
        if len(writes) == len(batch):  # the usual batch: writes only
            self._deliver(batch, self._write(writes))
            return
        written = iter(self._write(writes) if writes else [])  # writes first, then reads
        results: list[object] = []
        last = len(batch) - 1
        for i, op in enumerate(batch):
            if isinstance(op, WRITES):
                results.append(next(written))
                continue
            if isinstance(op, Load):
                if clears and i == last:
                    self.failed.pop(op.run_id, None)
                failure = self.failed.get(op.run_id)
                # The run's next call hears of its failure; a stale token's refusal is
                # for its old owner's next write, not for a load (a new owner's, a reader's).
                if failure is not None and not issubclass(failure.kind, LeaseLost):
                    results.append(failure)
                    continue
            try:
                results.append(self._reads.read(op))
            except Exception as exc:  # a bug here must not leave the caller waiting
                results.append(store_error(self.path, exc, "reading", 0))
        self._deliver(batch, results)

    def _deliver(self, batch: Sequence[Op], results: list[object]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Delivery]] = {}
        for op, result in zip(batch, results, strict=True):
            waiter = op.waiter
            if waiter is None:
                continue  # a write nobody waits for: its failure is kept in self.failed
            failure = None
            if isinstance(result, WriteFailure):
                failure, result = result, result.error()
            if isinstance(waiter, SyncWaiter):
                waiter.set(result)
                if failure is not None:
                    failure.reported = True
            else:
                by_loop.setdefault(waiter.get_loop(), []).append(_Delivery(waiter, result, failure))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items)

    def take_unreported(self) -> list[tuple[str, WriteFailure]]:
        """The failures no caller has heard of yet, marked as heard. A write refused
        for a stale token is none: the run went on elsewhere, nothing of it is lost."""
        unreported = [
            (r, f)
            for r, f in list(self.failed.items())
            if not f.reported and not issubclass(f.kind, LeaseLost)
        ]
        for _, failure in unreported:
            failure.reported = True
        return unreported

    # -- writes ------------------------------------------------------------

    def _write(self, ops: list[Write]) -> list[object]:
        """Apply `ops` in one transaction: a result per op (see `Transaction`).
        Retried while another connection holds the lock."""
        conn = self._conn
        assert conn is not None
        if self.read_only:
            return self._fail(
                ops,
                StoreError(
                    f"The store {self.path} was opened read-only (for runs and show): it cannot "
                    "write. Open it without read_only to run or resume."
                ),
            )
        moved = moved_error(self.path, self._identity)
        if moved is not None:
            return self._fail(ops, moved)
        # A durable append (a write tool's start and end, an answer) and a status
        # change are fsync'd: they must survive an OS crash or a power cut, since a
        # write re-asked of a real model after one would come back with a new call
        # id, hence a new idempotency key. The fsync also flushes the model and
        # read-tool steps committed before it. Those alone, run creations and
        # leases are not fsync'd: a power cut kills every process that shares this
        # file, so no lease outlives it, and a run created but not yet stepped is
        # nothing lost.
        fsync = any(
            type(op) is Update or (type(op) is Append and op.waiter is not None) for op in ops
        )
        self._set_synchronous(conn, "FULL" if fsync else "NORMAL")
        done = self._commit(conn, ops)
        if isinstance(done, StoreError):
            return self._fail(ops, done)
        self.commits += 1
        # What the committed attempt teaches this thread: failures cleared by a
        # creation or a claim go first, the attempt's own refusals are kept after.
        for run_id in done.cleared:
            self.failed.pop(run_id, None)
        for run_id in done.claimed:
            self.next_seq.pop(run_id, None)
        self.known.update(done.ends)
        self.next_seq.update(done.ends)
        for run_id in done.released:
            self.known.discard(run_id)
            self.next_seq.pop(run_id, None)
        self.failed.update(done.fenced)
        return done.results

    def _commit(self, conn: sqlite3.Connection, ops: list[Write]) -> Transaction | StoreError:
        """Apply `ops` and commit, retrying the whole batch while another connection
        holds the lock (up to `busy_timeout` more seconds); the error if it gives up."""
        started = time.monotonic()
        deadline: float | None = None
        pause = 0.005
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    txn = Transaction(conn, self, isolate=False)
                    try:
                        txn.apply(ops)
                    except sqlite3.IntegrityError:
                        # Rare (a duplicate id, key, or a seq another process wrote):
                        # redo op by op, each in a savepoint, so only the offending op fails.
                        conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                        txn = Transaction(conn, self, isolate=True)
                        txn.apply(ops)
                    conn.execute("COMMIT")
                    return txn
                except Exception as exc:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    now = time.monotonic()
                    if not is_busy(exc):
                        return store_error(self.path, exc, "writing", now - started)
                    if deadline is None:
                        deadline = now + max(self.busy_timeout, _RETRY_MIN_WINDOW)
                    if now >= deadline:
                        return store_error(self.path, exc, "writing", now - started)
                    # Nothing was written: wait a little and try the whole batch again.
                    time.sleep(min(pause, deadline - now))
                    pause = min(pause * 2, _RETRY_MAX_PAUSE)
                    left = max(deadline - time.monotonic(), 0.0)
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
        finally:
            if deadline is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    def _fail(self, ops: list[Write], cause: StoreError) -> list[object]:
        """The batch `ops` was not written: fail every run that had a write in it."""
        by_run: dict[str, list[Append | Update]] = {}
        for op in ops:
            # A run that was not created, or a lease not taken, has nothing to lose.
            if isinstance(op, RUN_WRITES):
                by_run.setdefault(op.run_id, []).append(op)
        for run_id, run_ops in by_run.items():
            if run_id not in self.failed:  # else the first failure stays the one reported
                self.failed[run_id] = _lost(run_id, run_ops, cause)
        return [
            self.failed[op.run_id] if isinstance(op, RUN_WRITES) else _copy(cause) for op in ops
        ]

    # -- shutdown from outside any event loop --------------------------------

    def stop_sync(self) -> None:
        if not self.thread.is_alive():
            return
        self.closing = True
        self.queue.put(Stop(SyncWaiter()))
        self.thread.join()


_open_writers: weakref.WeakSet[_Writer] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    """Commit what stores that were never closed still hold (the thread is a daemon),
    and say which runs lost writes nobody heard of."""
    for writer in list(_open_writers):
        writer.stop_sync()
        for _, failure in writer.take_unreported():
            sys.stderr.write(f"orchestrion: {failure.message}\n")
