"""The SQLite store's writer thread: group commit, retries, per-run failures.

See `orchestrion.stores.sqlite` for the design.
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
from typing import Any, NamedTuple

from orchestrion._json import dumps_str, loads
from orchestrion.engine.journal import Entry, RunRecord
from orchestrion.errors import (
    LeaseLost,
    OrchestrionError,
    RunBusy,
    RunNotFound,
    StoreError,
    lease_lost,
)
from orchestrion.stores._sqlite_file import (
    INSERT_ENTRY,
    INSERT_RUN,
    ORDER,
    RUN_COLUMNS,
    UNLEASE,
    is_busy,
    moved_error,
    open_file,
    run_record,
    store_error,
)
from orchestrion.stores.memory import duplicate_seq_error, idempotency_key_error, seq_error

# Operation codes. An operation is a plain tuple `(code, argument, waiter)`:
# the non-durable append is the hot path and a tuple is the cheapest record.
_CREATE, _UPDATE, _APPEND, _GET, _FIND, _LIST, _LOAD, _STOP, _CLAIM, _RENEW, _RELEASE = range(11)
_LEASES = frozenset({_CLAIM, _RENEW, _RELEASE})
"""Writes of leases: never refused for a run's earlier lost writes."""
_WRITES = frozenset({_CREATE, _UPDATE, _APPEND}) | _LEASES
_MAX_BATCH = 20_000

Op = tuple[int, Any, Any]
Row = tuple[str, int, str, str, str, str]


class Claim(NamedTuple):
    run_id: str
    owner: str
    ttl: float
    steal: bool


class Renew(NamedTuple):
    leases: dict[str, int]
    ttl: float


class Release(NamedTuple):
    run_id: str
    token: int


class _SyncWaiter:
    """Waits for an operation from a thread with no event loop (the atexit flush)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: object = None

    def set(self, result: object) -> None:
        self.result = result
        self.done.set()


_RETRY_MIN_WINDOW = 0.1
"""Seconds a batch that failed on a locked file is retried, at least (else `busy_timeout`)."""
_RETRY_MAX_PAUSE = 0.05


class _Failure:
    """Why a write of a run failed. Until a load of the run after the error was
    raised, the run's later writes are refused, so that its journal stays a prefix."""

    __slots__ = ("cause", "kind", "message", "reported", "token")

    def __init__(
        self,
        message: str,
        cause: BaseException | None,
        kind: type[StoreError] = StoreError,
        token: int | None = None,
    ) -> None:
        self.message = message
        self.cause = cause
        self.kind = kind
        """The class of the error raised (`LeaseLost` for a refused token)."""
        self.token = token
        """For `LeaseLost`: the stale token refused."""
        self.reported = False
        """Set once the error was raised to a caller (in that caller's thread)."""

    def refuses(self, token: int | None) -> bool:
        """Whether a write of the run carrying `token` is refused for this failure. A
        stale token's refusal concerns only its old owner: the run's new owner (another
        runtime on this store) writes on."""
        return token == self.token or not issubclass(self.kind, LeaseLost)

    def error(self) -> StoreError:
        error = self.kind(self.message)
        error.__cause__ = self.cause
        return error


Delivery = tuple[asyncio.Future[Any], object, _Failure | None]


def _resolve(items: list[Delivery]) -> None:
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
    run_id: str, ops: list[Op], cause: StoreError, fix: str = "fix the database problem, then "
) -> _Failure:
    """The failure of a run whose writes `ops` (in order) were not saved."""
    rows = next((op[1][1] for op in ops if op[0] == _APPEND and op[1][1]), None)
    if rows:
        what = f"its journal from step {rows[0][2]!r} (seq {rows[0][1]}) on"
    else:
        status = next((op[1][1] for op in ops if op[0] == _UPDATE), "?")
        what = f"its status update to {status!r}"
    text = (
        f"Run {run_id!r} lost writes: {what} was not saved. {cause} Its later writes are "
        f"refused so that its journal keeps no gap; the run stays resumable: {fix}"
        f"`orchestrion resume {run_id}`."
    )
    return _Failure(text, cause.__cause__)


class _Writer:
    """The one thread and connection that touch the database file."""

    def __init__(self, path: str, busy_timeout: float, *, read_only: bool = False) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self.run_columns = RUN_COLUMNS
        self._identity: tuple[int, int] = (0, 0)
        """(device, inode) of the file opened: a file deleted or replaced under
        this process is noticed at the next write (`_check_file`)."""
        self._synchronous = ""
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self.known: set[str] = set()
        """Ids of runs known to exist; written by this thread, read by callers."""
        self.failed: dict[str, _Failure] = {}
        """Runs whose writes failed (see the module docstring); written by this
        thread, read by callers."""
        self.next_seq: dict[str, int] = {}
        """The seq the next append of a run must have, for runs whose journal end
        this thread knows (created, loaded or appended to here)."""
        self.commits = 0
        self.retries = 0
        """Attempts repeated because another connection held the lock."""
        self.closing = False
        self._conn: sqlite3.Connection | None = None
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
        except Exception as exc:  # never leave the constructor waiting
            self._init_error = (
                exc
                if isinstance(exc, OrchestrionError)
                else store_error(self.path, exc, "opening it", self.busy_timeout)
            )
            self._ready.set()
            return
        self._ready.set()
        stop: Op | None = None
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

    def _serve(self) -> Op | None:
        """Drain the queue batch by batch until a stop operation; return it."""
        get, get_nowait = self.queue.get, self.queue.get_nowait
        while True:
            batch = [get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            stop_at = next((i for i, op in enumerate(batch) if op[0] == _STOP), None)
            if stop_at is None:
                self._process(batch)
                continue
            self._process(batch[:stop_at])
            for op in batch[stop_at + 1 :]:
                self.queue.put(op)  # failed as "closed" by _drain_closed
            return batch[stop_at]

    def _drain_closed(self) -> None:
        ops: list[Op] = []
        while True:
            try:
                ops.append(self.queue.get_nowait())
            except queue.Empty:
                break
        closed = StoreError(f"The store {self.path} is closed: open it again to use it.")
        for op in ops:
            if op[0] == _APPEND and op[2] is None:  # nobody waits: the run must hear of it
                self.failed.setdefault(op[1][0], _lost(op[1][0], [op], closed, fix=""))
        self._deliver(ops, [None if op[0] == _STOP else _copy(closed) for op in ops])

    def _process(self, batch: list[Op]) -> None:
        if self.failed:
            # A load that clears a run's failure must neither let through a write
            # queued before it nor refuse one queued after it (writes are applied
            # before reads): apply the batch up to that load first.
            start = 0
            for i, (code, arg, _) in enumerate(batch):
                failure = self.failed.get(arg) if code == _LOAD else None
                if failure is not None and failure.reported:
                    self._run(batch[start : i + 1], clears=True)
                    start = i + 1
            batch = batch[start:]
        if batch:
            self._run(batch, clears=False)

    def _run(self, batch: list[Op], *, clears: bool) -> None:
        """Apply the writes of `batch` in one transaction, then answer its reads.
        With `clears`, the last operation is a load that clears its run's failure."""
        results: list[object] = [None] * len(batch)
        writes = [i for i, op in enumerate(batch) if op[0] in _WRITES]
        if writes:
            for i, result in zip(writes, self._write([batch[i] for i in writes]), strict=True):
                results[i] = result
        last = len(batch) - 1
        for i, (code, arg, _) in enumerate(batch):
            if code in _WRITES:
                continue
            if code == _LOAD:
                if clears and i == last:
                    self.failed.pop(arg, None)
                failure = self.failed.get(arg)
                # The run's next call hears of its failure; a stale token's refusal is
                # for its old owner's next write, not for a load (a new owner's, a reader's).
                if failure is not None and not issubclass(failure.kind, LeaseLost):
                    results[i] = failure
                    continue
            try:
                results[i] = self._read(code, arg)
            except Exception as exc:  # a bug here must not leave the caller waiting
                results[i] = store_error(self.path, exc, "reading", 0)
        self._deliver(batch, results)

    def _deliver(self, batch: list[Op], results: list[object]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Delivery]] = {}
        for (_, _, waiter), result in zip(batch, results, strict=True):
            if waiter is None:
                continue  # a write nobody waits for: its failure is kept in self.failed
            failure = None
            if isinstance(result, _Failure):
                failure, result = result, result.error()
            if isinstance(waiter, _SyncWaiter):
                waiter.set(result)
                if failure is not None:
                    failure.reported = True
            else:
                by_loop.setdefault(waiter.get_loop(), []).append((waiter, result, failure))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, items)

    def take_unreported(self) -> list[tuple[str, _Failure]]:
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

    def _write(self, ops: list[Op]) -> list[object]:
        """Apply `ops` in one transaction: a result per op (None, a StoreError or
        the _Failure of its run). Retried while another connection holds the lock."""
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
        fsync = any(op[0] == _UPDATE or (op[0] == _APPEND and op[2] is not None) for op in ops)
        self._set_synchronous(conn, "FULL" if fsync else "NORMAL")
        started = time.monotonic()
        deadline: float | None = None
        pause = 0.005
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        results, fenced, ends = self._apply(ops, isolate=False)
                    except sqlite3.IntegrityError:
                        # Rare (a duplicate id, key, or a seq another process wrote):
                        # redo op by op, each in a savepoint, so only the offending op fails.
                        conn.execute("ROLLBACK")
                        conn.execute("BEGIN IMMEDIATE")
                        results, fenced, ends = self._apply(ops, isolate=True)
                    conn.execute("COMMIT")
                    break
                except Exception as exc:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    now = time.monotonic()
                    if is_busy(exc):
                        if deadline is None:
                            deadline = now + max(self.busy_timeout, _RETRY_MIN_WINDOW)
                        if now < deadline:
                            # Nothing was written: wait a little and try the whole batch again.
                            self.retries += 1
                            time.sleep(min(pause, deadline - now))
                            pause = min(pause * 2, _RETRY_MAX_PAUSE)
                            left = max(deadline - time.monotonic(), 0.0)
                            with contextlib.suppress(sqlite3.Error):
                                conn.execute(f"PRAGMA busy_timeout = {int(left * 1000)}")
                            continue
                    return self._fail(ops, store_error(self.path, exc, "writing", now - started))
        finally:
            if deadline is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        self.commits += 1
        for (code, arg, _), result in zip(ops, results, strict=True):
            if code == _CREATE and result is None:
                self.failed.pop(arg[0], None)  # a new run has no lost writes
                self.known.add(arg[0])
            elif code == _APPEND and result is None:
                self.known.add(arg[0])
            elif code == _CLAIM and isinstance(result, RunRecord):
                # A new owner starts from what was saved: earlier lost writes of
                # this process no longer refuse its writes.
                self.failed.pop(arg.run_id, None)
                self.next_seq.pop(arg.run_id, None)
        self.next_seq.update(ends)
        self.failed.update(fenced)
        return results

    def _fail(self, ops: list[Op], cause: StoreError) -> list[object]:
        """The batch `ops` was not written: fail every run that had a write in it."""
        by_run: dict[str, list[Op]] = {}
        for op in ops:
            # A run that was not created, or a lease not taken, has nothing to lose.
            if op[0] != _CREATE and op[0] not in _LEASES:
                by_run.setdefault(op[1][0], []).append(op)
        for run_id, run_ops in by_run.items():
            if run_id not in self.failed:  # else the first failure stays the one reported
                self.failed[run_id] = _lost(run_id, run_ops, cause)
        return [
            _copy(cause) if code == _CREATE or code in _LEASES else self.failed[arg[0]]
            for code, arg, _ in ops
        ]

    def _apply(
        self, ops: list[Op], *, isolate: bool
    ) -> tuple[list[object], dict[str, _Failure], dict[str, int]]:
        """Run `ops` in the open transaction. Returns a result per op, the runs
        failed by this attempt and the new ends of journals, both to keep on commit."""
        conn = self._conn
        assert conn is not None
        failed = self.failed
        results: list[object] = []
        fenced: dict[str, _Failure] = {}
        ends: dict[str, int] = {}
        tokens: dict[str, int | None] = {}
        """Each run's fencing token as this transaction sees it (None: no such run)."""
        rows: list[Row] = []  # consecutive appends, inserted with one executemany
        for code, arg, _ in ops:
            if code in _LEASES:
                if rows:
                    conn.executemany(INSERT_ENTRY, rows)
                    rows = []
                results.append(self._lease(code, arg, tokens))
                continue
            run_id = arg[0]
            if (fenced or failed) and code != _CREATE:
                failure = fenced.get(run_id) or failed.get(run_id)
                # refused: the journal stays a prefix
                if failure is not None and failure.refuses(arg[2] if code == _APPEND else arg[4]):
                    results.append(failure)
                    continue
            if code == _APPEND:
                new: list[Row] = arg[1]
                token: int | None = arg[2]
                if token is None:
                    missing = self._missing(run_id)
                    if missing is not None:
                        results.append(missing)
                        continue
                else:
                    current = tokens[run_id] if run_id in tokens else self._token(run_id, tokens)
                    if current != token:
                        if current is None:
                            results.append(
                                StoreError(f"Cannot append to run {run_id!r}: it does not exist.")
                            )
                            continue
                        lost = lease_lost(run_id, token, current)
                        failure = fenced[run_id] = _Failure(str(lost), None, type(lost), token)
                        results.append(failure)
                        continue
                expected = ends.get(run_id)
                if expected is None:
                    expected = self._journal_end(run_id)
                    if new and new[0][1] > expected and run_id in self.next_seq:
                        # What this thread knew may be stale: another process may
                        # have appended since. The file decides.
                        del self.next_seq[run_id]
                        expected = self._journal_end(run_id)
                if len(new) == 1:  # the usual case, kept cheap
                    bad = None if new[0][1] == expected else 0
                else:
                    bad = next((i for i, r in enumerate(new) if r[1] != expected + i), None)
                if bad is not None:
                    error = seq_error(run_id, new[bad][1], expected + bad)
                    failure = fenced[run_id] = _Failure(str(error), None)
                    results.append(failure)
                    continue
                if not isolate:
                    rows.extend(new)
                    ends[run_id] = expected + len(new)
                    results.append(None)
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    conn.executemany(INSERT_ENTRY, new)
                except sqlite3.IntegrityError as exc:
                    conn.execute("ROLLBACK TO op")
                    error = self._duplicate(run_id, new)
                    failure = fenced[run_id] = _Failure(str(error), exc)
                    results.append(failure)
                else:
                    ends[run_id] = expected + len(new)
                    results.append(None)
                conn.execute("RELEASE op")
                continue
            if rows:
                conn.executemany(INSERT_ENTRY, rows)
                rows = []
            if not isolate:
                result = self._apply_one(code, arg, tokens)
            else:
                conn.execute("SAVEPOINT op")
                try:
                    result = self._apply_one(code, arg, tokens)
                except sqlite3.IntegrityError as exc:
                    conn.execute("ROLLBACK TO op")
                    result = self._integrity_error(code, arg, exc)
                conn.execute("RELEASE op")
            if code == _CREATE and result is None:
                entry_rows = arg[2]
                ends[run_id] = entry_rows[-1][1] + 1 if entry_rows else 0
            results.append(result)
        if rows:
            conn.executemany(INSERT_ENTRY, rows)
        return results, fenced, ends

    def _apply_one(self, code: int, arg: Any, tokens: dict[str, int | None]) -> StoreError | None:
        conn = self._conn
        assert conn is not None
        if code == _CREATE:
            run_row, entry_rows = arg[1], arg[2]
            conn.execute(INSERT_RUN, run_row)
            if entry_rows:
                conn.executemany(INSERT_ENTRY, entry_rows)
            tokens[arg[0]] = run_row[8]
            return None
        run_id, status, updated_at, patch, token, release = arg
        row = conn.execute("SELECT data, token FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return StoreError(f"Cannot update run {run_id!r}: it does not exist.")
        if token is not None and row[1] != token:
            return lease_lost(run_id, token, row[1])
        data = loads(row[0])
        data.update(loads(patch))
        conn.execute(
            "UPDATE runs SET status = ?, updated_at = ?, data = ?"
            + (f", {UNLEASE}" if release else "")
            + " WHERE id = ?",
            (status, updated_at, dumps_str(data), run_id),
        )
        return None

    def _token(self, run_id: str, tokens: dict[str, int | None]) -> int | None:
        assert self._conn is not None
        row = self._conn.execute("SELECT token FROM runs WHERE id = ?", (run_id,)).fetchone()
        current = tokens[run_id] = None if row is None else row[0]
        return current

    def _lease(self, code: int, arg: Any, tokens: dict[str, int | None]) -> object:
        """Claim, renew or release a lease in the open transaction."""
        conn = self._conn
        assert conn is not None
        now = time.time()
        if code == _RENEW:
            lost: set[str] = set()
            until = now + arg.ttl
            for run_id, token in arg.leases.items():
                cur = conn.execute(
                    "UPDATE runs SET lease_until = ? WHERE id = ? AND token = ? "
                    "AND owner IS NOT NULL",
                    (until, run_id, token),
                )
                if cur.rowcount != 1:
                    lost.add(run_id)
            return lost
        if code == _RELEASE:
            conn.execute(
                f"UPDATE runs SET {UNLEASE} WHERE id = ? AND token = ?", (arg.run_id, arg.token)
            )
            return None
        row = conn.execute(
            f"SELECT {self.run_columns} FROM runs WHERE id = ?", (arg.run_id,)
        ).fetchone()
        if row is None:
            return RunNotFound(arg.run_id, f"sqlite:///{self.path}")
        held = run_record(row).lease
        if held is not None and held.live(now) and held.owner != arg.owner and not arg.steal:
            return RunBusy(arg.run_id, held.owner, held.since, held.until)
        token = row[2] + 1
        conn.execute(
            "UPDATE runs SET owner = ?, token = ?, lease_since = ?, lease_until = ? WHERE id = ?",
            (arg.owner, token, now, now + arg.ttl, arg.run_id),
        )
        tokens[arg.run_id] = token
        return run_record((row[0], arg.owner, token, now, now + arg.ttl))

    def _missing(self, run_id: str) -> StoreError | None:
        if run_id in self.known:
            return None
        assert self._conn is not None
        if self._conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            return None
        return StoreError(f"Cannot append to run {run_id!r}: it does not exist.")

    def _journal_end(self, run_id: str) -> int:
        """The seq the next append to `run_id` must have."""
        end = self.next_seq.get(run_id)
        if end is None:
            assert self._conn is not None
            cur = self._conn.execute("SELECT MAX(seq) FROM journal WHERE run_id = ?", (run_id,))
            last = cur.fetchone()[0]
            end = 0 if last is None else last + 1
        return end

    def _duplicate(self, run_id: str, rows: list[Row]) -> StoreError:
        """An append hit a seq already written (by another process, or another store)."""
        assert self._conn is not None
        seq = self._conn.execute(
            "SELECT MIN(seq) FROM journal WHERE run_id = ? AND seq BETWEEN ? AND ?",
            (run_id, rows[0][1], rows[-1][1]),
        ).fetchone()[0]
        return duplicate_seq_error(run_id, rows[0][1] if seq is None else seq)

    def _integrity_error(self, code: int, arg: Any, exc: sqlite3.IntegrityError) -> StoreError:
        msg = str(exc)
        run_id = arg[0]
        if code == _CREATE and "runs.idempotency_key" in msg:
            key = arg[1][5]
            assert self._conn is not None
            row = self._conn.execute(
                "SELECT id FROM runs WHERE idempotency_key = ?", (key,)
            ).fetchone()
            error = idempotency_key_error(run_id, key, None if row is None else row[0])
        elif code == _CREATE and msg.endswith("runs.id"):
            error = StoreError(f"A run with id {run_id!r} already exists; choose another id.")
        elif code == _CREATE and "journal" in msg:
            seqs = [row[1] for row in arg[2]]
            error = StoreError(
                f"Cannot create run {run_id!r}: its entries repeat a seq ({seqs}); each seq "
                "is written once."
            )
        else:
            error = StoreError(f"Cannot write run {run_id!r} to {self.path}: {msg}")
        error.__cause__ = exc
        return error

    # -- reads -------------------------------------------------------------

    def _read(self, code: int, arg: Any) -> object:
        conn = self._conn
        assert conn is not None
        try:
            if code == _LOAD:
                cur = conn.execute("SELECT data FROM journal WHERE run_id = ? ORDER BY seq", (arg,))
                entries = [Entry.from_json(loads(data)) for (data,) in cur]
                # What this thread knows of the journal's end is refreshed: another
                # process may have appended since (a resume elsewhere).
                if entries:
                    self.next_seq[arg] = entries[-1].seq + 1
                else:
                    self.next_seq.pop(arg, None)
                return entries
            select = f"SELECT {self.run_columns} FROM runs"
            if code == _LIST:
                status, limit = arg
                if status is None:
                    cur = conn.execute(select + ORDER, (limit,))
                else:
                    cur = conn.execute(select + " WHERE status = ?" + ORDER, (status, limit))
                return [run_record(row) for row in cur]
            column = "id" if code == _GET else "idempotency_key"
            row = conn.execute(f"{select} WHERE {column} = ?", (arg,)).fetchone()
            if row is None:
                return None
            record = run_record(row)
            self.known.add(record.id)
            return record
        except (sqlite3.Error, ValueError, KeyError) as exc:
            return store_error(self.path, exc, "reading", self.busy_timeout)

    # -- shutdown from outside any event loop --------------------------------

    def stop_sync(self) -> None:
        if not self.thread.is_alive():
            return
        self.closing = True
        waiter = _SyncWaiter()
        self.queue.put((_STOP, None, waiter))
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
