"""The embedded default store: one SQLite file in WAL mode, written by one thread.

Every operation goes through one queue drained by a dedicated thread that owns
the only connection. The thread takes everything queued, applies all writes
(from every concurrent run) in ONE transaction, commits, then answers reads.
So non-durable appends cost the caller a JSON encode and a queue put; durable
calls wait for the group commit that includes them.

Tables (layout version in `PRAGMA user_version`, payloads are JSON text):

    runs(id PK, name, status, created_at, updated_at, idempotency_key, data)
    journal(run_id, seq, key, kind, status, data, PK (run_id, seq))
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrion._json import JSON, dumps_str, loads
from orchestrion.engine.journal import Entry, RunRecord, RunStatus
from orchestrion.errors import StoreError, UserError

SCHEMA_VERSION = 1
"""Version of the table layout, kept in `PRAGMA user_version`. Bumped (with a
migration in `_Writer._open`) when a table or column is added."""

DEFAULT_PATH = ".orchestrion/orchestrion.db"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        idempotency_key TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_idempotency_key ON runs (idempotency_key) "
    "WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS runs_created_at ON runs (created_at)",
    "CREATE INDEX IF NOT EXISTS runs_status_created_at ON runs (status, created_at)",
    """CREATE TABLE IF NOT EXISTS journal (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID""",
)

_INSERT_RUN = (
    "INSERT INTO runs (id, name, status, created_at, updated_at, idempotency_key, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ENTRY = (
    "INSERT INTO journal (run_id, seq, key, kind, status, data) VALUES (?, ?, ?, ?, ?, ?)"
)
_ORDER = " ORDER BY created_at DESC, rowid DESC LIMIT ?"

# Operation codes. An operation is a plain tuple `(code, argument, waiter)`:
# the non-durable append is the hot path and a tuple is the cheapest record.
_CREATE, _UPDATE, _APPEND, _GET, _FIND, _LIST, _LOAD, _STOP = range(8)
_WRITES = frozenset({_CREATE, _UPDATE, _APPEND})
_MAX_BATCH = 20_000

Op = tuple[int, Any, Any]
Row = tuple[str, int, str, str, str, str]


class _SyncWaiter:
    """Waits for an operation from a thread with no event loop (the atexit flush)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: object = None

    def set(self, result: object) -> None:
        self.result = result
        self.done.set()


def _resolve(items: list[tuple[asyncio.Future[Any], object]], deferred: deque[StoreError]) -> None:
    """Runs in the caller's event loop: hand each waiting caller its result."""
    for fut, result in items:
        if fut.done():  # the caller was cancelled; keep its failure for the next caller
            if isinstance(result, StoreError):
                deferred.append(result)
        elif isinstance(result, StoreError):
            fut.set_exception(result)
        else:
            fut.set_result(result)


def _store_error(path: str, exc: BaseException, doing: str, busy_timeout: float) -> StoreError:
    """Turn a sqlite3 or OS error into a StoreError that says what to do."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    msg = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in msg:
        text = (
            f"The store {path} is locked by another process (waited {busy_timeout:g} s while "
            f"{doing}): stop the other process or let it finish, or point --store at another file."
        )
    elif name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or (
        "not a database" in msg or "malformed" in msg
    ):
        text = (
            f"{path} is not a SQLite database or is corrupted: move it aside or point "
            "--store at another file."
        )
    elif name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or isinstance(
        exc, OSError
    ):
        text = (
            f"Cannot write the store {path} ({msg}): check that the file and its directory "
            "are writable, or point --store at another file."
        )
    elif name.startswith("SQLITE_FULL"):
        text = f"The disk holding the store {path} is full: free some space or point --store at another file."
    else:
        text = f"The store {path} failed while {doing}: {type(exc).__name__}: {msg}"
    error = StoreError(text)
    error.__cause__ = exc
    return error


class _Writer:
    """The one thread and connection that touch the database file."""

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self.known: set[str] = set()
        """Ids of runs known to exist; written by this thread, read by callers."""
        self.deferred: deque[StoreError] = deque()
        """Failures of writes nobody waited for, raised to the next caller."""
        self.commits = 0
        self.closing = False
        self._conn: sqlite3.Connection | None = None
        self._ready = threading.Event()
        self._init_error: StoreError | None = None
        self.thread = threading.Thread(target=self._main, name="orchestrion-sqlite", daemon=True)
        self.thread.start()
        self._ready.wait()
        if self._init_error is not None:
            self.thread.join()
            raise self._init_error

    # -- thread ------------------------------------------------------------

    def _main(self) -> None:
        try:
            conn = self._conn = self._open()
        except Exception as exc:  # never leave the constructor waiting
            self._init_error = (
                exc
                if isinstance(exc, StoreError)
                else _store_error(self.path, exc, "opening it", self.busy_timeout)
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

    def _open(self) -> sqlite3.Connection:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _store_error(self.path, exc, "creating its directory", 0) from exc
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(
                    f"The store {self.path} has layout version {version}, newer than this "
                    f"orchestrion understands ({SCHEMA_VERSION}): upgrade orchestrion."
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            return conn
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise _store_error(self.path, exc, "opening it", self.busy_timeout) from exc

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
        self._deliver(ops, [None if op[0] == _STOP else closed for op in ops])

    def _process(self, batch: list[Op]) -> None:
        results: list[object] = [None] * len(batch)
        try:
            writes = [i for i, op in enumerate(batch) if op[0] in _WRITES]
            if writes:
                for i, result in zip(writes, self._write([batch[i] for i in writes]), strict=True):
                    results[i] = result
            for i, op in enumerate(batch):
                if op[0] not in _WRITES:
                    results[i] = self._read(op[0], op[1])
        except Exception as exc:  # a bug here must not leave callers waiting forever
            error = _store_error(self.path, exc, "working", self.busy_timeout)
            results = [error] * len(batch)
        self._deliver(batch, results)

    def _deliver(self, batch: list[Op], results: list[object]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
        for (_, _, waiter), result in zip(batch, results, strict=True):
            if waiter is None:
                if isinstance(result, StoreError):
                    self.deferred.append(result)
            elif isinstance(waiter, _SyncWaiter):
                waiter.set(result)
            else:
                by_loop.setdefault(waiter.get_loop(), []).append((waiter, result))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items, self.deferred)
            except RuntimeError:  # the loop is closed: nobody waits any more
                self.deferred.extend(r for _, r in items if isinstance(r, StoreError))

    # -- writes ------------------------------------------------------------

    def _write(self, ops: list[Op]) -> list[object]:
        """Apply `ops` in one transaction; a result per op (None or a StoreError)."""
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = self._apply(ops, isolate=False)
            except sqlite3.IntegrityError:
                # Rare (a duplicate id, key or seq): redo op by op, each in a
                # savepoint, so only the offending op fails.
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                results = self._apply(ops, isolate=True)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return [_store_error(self.path, exc, "writing", self.busy_timeout)] * len(ops)
        self.commits += 1
        for (code, arg, _), result in zip(ops, results, strict=True):
            if code != _UPDATE and result is None:
                self.known.add(arg[0])
        return results

    def _apply(self, ops: list[Op], *, isolate: bool) -> list[object]:
        conn = self._conn
        assert conn is not None
        results: list[object] = []
        rows: list[Row] = []  # consecutive appends, inserted with one executemany
        for code, arg, _ in ops:
            if code == _APPEND and not isolate:
                missing = self._missing(arg[0])
                results.append(missing)
                if missing is None:
                    rows.extend(arg[1])
                continue
            if rows:
                conn.executemany(_INSERT_ENTRY, rows)
                rows = []
            if not isolate:
                results.append(self._apply_one(code, arg))
                continue
            conn.execute("SAVEPOINT op")
            try:
                results.append(self._apply_one(code, arg))
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO op")
                results.append(self._integrity_error(code, arg, exc))
            conn.execute("RELEASE op")
        if rows:
            conn.executemany(_INSERT_ENTRY, rows)
        return results

    def _apply_one(self, code: int, arg: Any) -> StoreError | None:
        conn = self._conn
        assert conn is not None
        if code == _APPEND:
            missing = self._missing(arg[0])
            if missing is None:
                conn.executemany(_INSERT_ENTRY, arg[1])
            return missing
        if code == _CREATE:
            run_row, entry_rows = arg[1], arg[2]
            conn.execute(_INSERT_RUN, run_row)
            if entry_rows:
                conn.executemany(_INSERT_ENTRY, entry_rows)
            return None
        run_id, status, updated_at, patch = arg
        row = conn.execute("SELECT data FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return StoreError(f"Cannot update run {run_id!r}: it does not exist.")
        data = loads(row[0])
        data.update(loads(patch))
        conn.execute(
            "UPDATE runs SET status = ?, updated_at = ?, data = ? WHERE id = ?",
            (status, updated_at, dumps_str(data), run_id),
        )
        return None

    def _missing(self, run_id: str) -> StoreError | None:
        if run_id in self.known:
            return None
        assert self._conn is not None
        if self._conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            return None
        return StoreError(f"Cannot append to run {run_id!r}: it does not exist.")

    def _integrity_error(self, code: int, arg: Any, exc: sqlite3.IntegrityError) -> StoreError:
        msg = str(exc)
        run_id = arg[0]
        if code == _CREATE and "runs.idempotency_key" in msg:
            text = (
                f"Cannot create run {run_id!r}: idempotency key {arg[1][5]!r} is already used "
                "by another run; look that run up with find_run(idempotency_key=...)."
            )
        elif code == _CREATE and msg.endswith("runs.id"):
            text = f"A run with id {run_id!r} already exists; choose another id."
        elif "journal" in msg:
            seqs = [row[1] for row in (arg[2] if code == _CREATE else arg[1])]
            text = (
                f"Cannot append to run {run_id!r}: its journal already has an entry with one of "
                f"seq {seqs}. Each seq is written once; this is a bug in the caller."
            )
        else:
            text = f"Cannot write run {run_id!r} to {self.path}: {msg}"
        error = StoreError(text)
        error.__cause__ = exc
        return error

    # -- reads -------------------------------------------------------------

    def _read(self, code: int, arg: Any) -> object:
        conn = self._conn
        assert conn is not None
        try:
            if code == _LOAD:
                cur = conn.execute("SELECT data FROM journal WHERE run_id = ? ORDER BY seq", (arg,))
                return [Entry.from_json(loads(data)) for (data,) in cur]
            if code == _LIST:
                status, limit = arg
                if status is None:
                    cur = conn.execute("SELECT data FROM runs" + _ORDER, (limit,))
                else:
                    cur = conn.execute(
                        "SELECT data FROM runs WHERE status = ?" + _ORDER, (status, limit)
                    )
                return [RunRecord.from_json(loads(data)) for (data,) in cur]
            column = "id" if code == _GET else "idempotency_key"
            row = conn.execute(f"SELECT data FROM runs WHERE {column} = ?", (arg,)).fetchone()
            if row is None:
                return None
            record = RunRecord.from_json(loads(row[0]))
            self.known.add(record.id)
            return record
        except (sqlite3.Error, ValueError, KeyError) as exc:
            return _store_error(self.path, exc, "reading", self.busy_timeout)

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
    """Commit what stores that were never closed still hold (the thread is a daemon)."""
    for writer in list(_open_writers):
        writer.stop_sync()


class SQLiteStore:
    """Runs and journals in one SQLite file (WAL), written by one group-committing thread.

    `busy_timeout` is how long (seconds) to wait for another process's lock
    before raising `StoreError`.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, busy_timeout: float = 5.0):
        self.path = os.fspath(path)
        self.url = f"sqlite:///{self.path}"
        self._writer = _Writer(os.path.abspath(self.path), busy_timeout)
        self._put = self._writer.queue.put
        self._known = self._writer.known
        self._deferred = self._writer.deferred
        _open_writers.add(self._writer)

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
        prefix = "sqlite:///"
        path = url[len(prefix) :] if url.startswith(prefix) else ""
        if not path or path == ":memory:":
            raise UserError(
                f"SQLite store URL {url!r} names no file: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (or memory:// for a store that is not kept)."
            )
        return cls(path)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @property
    def commits(self) -> int:
        """Transactions committed so far (one per group commit)."""
        return self._writer.commits

    # -- plumbing ------------------------------------------------------------

    def _raise_deferred(self) -> None:
        errors: list[StoreError] = []
        while self._deferred:
            errors.append(self._deferred.popleft())
        if errors:
            more = f" ({len(errors) - 1} more writes failed too.)" if len(errors) > 1 else ""
            raise StoreError(f"An earlier write failed: {errors[0]}{more}") from errors[0]

    def _check(self) -> None:
        self._raise_deferred()
        if self._writer.closing:
            raise StoreError(f"The store {self.path} is closed: open it again to use it.")

    async def _call(self, code: int, arg: Any) -> Any:
        self._check()
        fut = asyncio.get_running_loop().create_future()
        self._put((code, arg, fut))
        result = await fut
        self._raise_deferred()
        return result

    # -- Store protocol ------------------------------------------------------

    async def create_run(self, run: RunRecord, entries: Sequence[Entry] = ()) -> None:
        data = self._encode(run.id, run.to_json())
        row = (
            run.id,
            run.name,
            run.status.value,
            run.created_at,
            run.updated_at,
            run.idempotency_key,
            data,
        )
        await self._call(_CREATE, (run.id, row, self._rows(run.id, entries)))

    async def get_run(self, run_id: str) -> RunRecord | None:
        record: RunRecord | None = await self._call(_GET, run_id)
        return record

    async def find_run(self, *, idempotency_key: str) -> RunRecord | None:
        record: RunRecord | None = await self._call(_FIND, idempotency_key)
        return record

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        runs: list[RunRecord] = await self._call(
            _LIST, (None if status is None else RunStatus(status).value, limit)
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
        usage: list[int] | None = None,
    ) -> None:
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
        await self._call(_UPDATE, (run_id, status.value, now, self._encode(run_id, patch)))

    async def append(self, run_id: str, entries: Sequence[Entry], *, durable: bool) -> None:
        if self._deferred or self._writer.closing:
            self._check()
        rows = self._rows(run_id, entries)
        if not durable and run_id in self._known:
            self._put((_APPEND, (run_id, rows), None))
            return
        # Durable, or the first append to a run this store has not seen: wait,
        # so appending to a missing run fails here as it does in every store.
        await self._call(_APPEND, (run_id, rows))

    async def load(self, run_id: str) -> list[Entry]:
        # Reads go through the same queue as writes, behind every append made
        # before them (durable or not), so a load always sees them.
        entries: list[Entry] = await self._call(_LOAD, run_id)
        return entries

    async def close(self) -> None:
        """Commit pending writes and stop the thread; closing twice is harmless."""
        writer = self._writer
        if not writer.closing:
            writer.closing = True
            fut = asyncio.get_running_loop().create_future()
            self._put((_STOP, None, fut))
            await fut
        writer.thread.join()
        self._raise_deferred()

    # -- encoding (in the caller, so bad input fails before it is queued) -----

    @staticmethod
    def _encode(run_id: str, value: JSON) -> str:
        try:
            return dumps_str(value)
        except TypeError as exc:
            raise StoreError(f"Cannot store run {run_id!r}: a value is not JSON: {exc}") from exc

    @staticmethod
    def _rows(run_id: str, entries: Sequence[Entry]) -> list[Row]:
        try:
            return [
                (run_id, e.seq, e.key, e.kind, e.status.value, dumps_str(e.to_json()))
                for e in entries
            ]
        except TypeError as exc:
            raise StoreError(
                f"Cannot append to run {run_id!r}: an entry's result is not JSON: {exc}"
            ) from exc
