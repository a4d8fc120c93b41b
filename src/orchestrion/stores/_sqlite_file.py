"""The SQLite store's file: its table layout and migrations, opening it (refusing
another application's file before anything in it changes), noticing it was
deleted or replaced, and turning sqlite3 errors into errors that say what to do.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from orchestrion._json import loads
from orchestrion.engine.journal import Lease, RunRecord
from orchestrion.errors import OrchestrionError, StoreError, StoreNotFound

DEFAULT_PATH = ".orchestrion/orchestrion.db"

V1 = (
    """CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        idempotency_key TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX runs_idempotency_key ON runs (idempotency_key) "
    "WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX runs_created_at ON runs (created_at)",
    "CREATE INDEX runs_status_created_at ON runs (status, created_at)",
    """CREATE TABLE journal (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID""",
)
_V2 = (  # leases: who works on a run, until when, and the fencing token
    "ALTER TABLE runs ADD COLUMN owner TEXT",
    "ALTER TABLE runs ADD COLUMN token INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN lease_since REAL",
    "ALTER TABLE runs ADD COLUMN lease_until REAL",
)
_V3 = (  # a queue of runs for workers: highest priority first, then oldest
    "ALTER TABLE runs ADD COLUMN queue TEXT",
    "ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX runs_queued ON runs (queue, priority DESC, created_at) WHERE status = 'queued'",
    "CREATE INDEX runs_unowned ON runs (coalesce(lease_until, 0)) "
    "WHERE status = 'running' AND queue IS NOT NULL",
    # rate-limit allowances shared by the processes on this file (`SQLiteStore.rate_limits`)
    """CREATE TABLE rate_limits (
        key TEXT PRIMARY KEY,
        requests REAL NOT NULL DEFAULT 0,
        tokens REAL NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        at REAL NOT NULL
    )""",
)
_V4 = (  # circuit breakers shared by the processes on this file (`SQLiteStore.breakers`)
    """CREATE TABLE breakers (
        name TEXT PRIMARY KEY,
        state TEXT NOT NULL DEFAULT 'closed',
        failures TEXT NOT NULL DEFAULT '[]',
        opened_at REAL NOT NULL DEFAULT 0,
        round INTEGER NOT NULL DEFAULT 0,
        reopened INTEGER NOT NULL DEFAULT 0,
        admitted INTEGER NOT NULL DEFAULT 0,
        successes INTEGER NOT NULL DEFAULT 0
    )""",
)
MIGRATIONS = (V1, _V2, _V3, _V4)
"""The table layout, one step per version, append-only: a file at version N gets
the steps after N. The version is kept in `PRAGMA user_version`."""
SCHEMA_VERSION = len(MIGRATIONS)
_TABLES = frozenset({"runs", "journal"})

INSERT_RUN = (
    "INSERT INTO runs (id, name, status, created_at, updated_at, idempotency_key, data, "
    "owner, token, lease_since, lease_until, queue, priority) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
RUN_COLUMNS = "data, owner, token, lease_since, lease_until, attempts"
_OLDER_RUN_COLUMNS = {
    1: "data, NULL, 0, NULL, NULL, 0",
    2: "data, owner, token, lease_since, lease_until, 0",
}
"""What a read-only store selects from a file of an older layout (no lease columns
in version 1, no `attempts` in 2)."""
UNLEASE = "owner = NULL, lease_since = NULL, lease_until = NULL"
INSERT_ENTRY = (
    "INSERT INTO journal (run_id, seq, key, kind, status, data) VALUES (?, ?, ?, ?, ?, ?)"
)
ORDER = " ORDER BY created_at DESC, rowid DESC LIMIT ?"
NEXT_QUEUED = (
    "SELECT id, priority, created_at FROM runs WHERE queue IN ({}) AND status = 'queued' "
    "ORDER BY priority DESC, created_at LIMIT 1"
)
NEXT_UNOWNED = (
    "SELECT id, priority, created_at FROM runs WHERE status = 'running' AND queue IS NOT NULL "
    "AND coalesce(lease_until, 0) <= ? AND queue IN ({}) ORDER BY priority DESC, created_at LIMIT 1"
)
"""The runs a worker on some queues may take next (`?` for each queue name): the
first queued one, and the first whose worker died or let go (now, then the names)."""


class Opened(NamedTuple):
    conn: sqlite3.Connection
    run_columns: str
    """What to select for a run record (`RUN_COLUMNS`, or its v1 stand-in)."""
    identity: tuple[int, int]
    """(device, inode) of the file opened."""


def open_file(path: str, busy_timeout: float, *, read_only: bool) -> Opened:
    """Open (and, unless `read_only`, create or migrate) the store at `path`."""
    if read_only:
        if not os.path.isfile(path):
            raise StoreNotFound(
                f"No store at {path}: the file does not exist. Check --store "
                "(or ORCHESTRION_STORE), or run something first to create it."
            )
    else:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise store_error(path, exc, "creating its directory", 0) from exc
    conn: sqlite3.Connection | None = None
    try:
        target = f"{Path(path).as_uri()}?mode=ro" if read_only else path
        conn = sqlite3.connect(
            target,
            uri=read_only,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=True,
        )
        stat = os.stat(path)
        identity = (stat.st_dev, stat.st_ino)
        # Nothing is changed before the file is known to be ours (or empty).
        version = _check_layout(conn, path, read_only)
        if read_only:
            return Opened(conn, _OLDER_RUN_COLUMNS.get(version, RUN_COLUMNS), identity)
        _use_wal(conn, busy_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        if version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            # Read again under the lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        return Opened(conn, RUN_COLUMNS, identity)
    except (sqlite3.Error, OSError, OrchestrionError) as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, OrchestrionError):
            raise
        raise store_error(path, exc, "opening it", busy_timeout) from exc


def _use_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Switch the file to WAL, waiting up to `busy_timeout` for it. The switch needs
    the file to itself, and SQLite answers "database is locked" at once rather than
    calling its busy handler while another connection writes or switches it (several
    processes opening a new or older file together): so wait here. A file system
    that cannot hold WAL keeps its mode, as SQLite leaves it."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY"
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _check_layout(conn: sqlite3.Connection, path: str, read_only: bool) -> int:
    """The file's layout version; a StoreError if the file belongs to another
    application or to a newer orchestrion."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The store {path} has layout version {version}, newer than this "
            f"orchestrion understands ({SCHEMA_VERSION}): upgrade orchestrion."
        )
    if (version == 0 and tables) or (version > 0 and not _TABLES.issubset(tables)):
        shown = ", ".join(sorted(tables)[:8]) or "none"
        raise StoreError(
            f"{path} is not an orchestrion store: it is another application's SQLite "
            f"database (tables: {shown}; layout version {version}). Nothing was changed. "
            "Point --store at a new file, e.g. sqlite:///.orchestrion/orchestrion.db."
        )
    if read_only and version == 0:
        raise StoreError(f"{path} is an empty database: it holds no runs yet.")
    return version


def moved_error(path: str, identity: tuple[int, int]) -> StoreError | None:
    """A StoreError if the file opened as `identity` was deleted or replaced."""
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    if stat is not None and (stat.st_dev, stat.st_ino) == identity:
        return None
    what = "deleted" if stat is None else "replaced by another file"
    return StoreError(
        f"The store {path} was {what} while this process used it: writes would go to "
        "a file nobody can open any more, so none is made. Restore the file (or point "
        "--store at the right one) and resume the runs that were working."
    )


def is_busy(exc: BaseException) -> bool:
    """Whether `exc` is another connection holding the lock (worth retrying)."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    return isinstance(exc, sqlite3.Error) and (
        name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)
    )


def store_error(path: str, exc: BaseException, doing: str, waited: float) -> StoreError:
    """Turn a sqlite3 or OS error into a StoreError that says what to do."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    msg = str(exc)
    if is_busy(exc):
        text = (
            f"The store {path} is locked by another process (waited {round(waited, 2):g} s while "
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


def run_record(row: tuple[Any, ...]) -> RunRecord:
    """A run's record from its row (`RUN_COLUMNS`): the lease columns are the truth."""
    data, owner, token, since, until, attempts = row
    record = RunRecord.from_json(loads(data))
    record.token, record.attempts = token, attempts
    record.lease = None if owner is None else Lease(owner, token, since, until)
    return record


def next_claimable(conn: sqlite3.Connection, queues: Sequence[str], now: float) -> str | None:
    """The id of the run a worker on `queues` takes next (see `NEXT_QUEUED`), if any."""
    marks = ", ".join("?" * len(queues))
    found = [
        conn.execute(NEXT_QUEUED.format(marks), tuple(queues)).fetchone(),
        conn.execute(NEXT_UNOWNED.format(marks), (now, *queues)).fetchone(),
    ]
    candidates = [row for row in found if row is not None]
    if not candidates:
        return None
    best: str = min(candidates, key=lambda row: (-row[1], row[2]))[0]
    return best
