"""The SQLite writer's operations, one named record each, and one handler each.

Every call of `SQLiteStore` becomes one operation queued for the writer thread
(`orchestrion.stores._sqlite_writer`). The set is closed (`Op`):

- writes (`Create`, `Update`, `Append`, `Claim`, `ClaimNext`, `Renew`, `Release`,
  `Allow`) are applied
  by a `Transaction`, one `_apply_<op>` handler each, inside the batch's
  `BEGIN IMMEDIATE`: a fencing token is checked in the transaction that writes;
- reads (`Get`, `Find`, `List`, `Load`) are answered after the commit by
  `Reads`, one `_read_*` handler each;
- `Stop` ends the thread.

A new operation is a new record, a handler, and a case in each `match`: mypy's
`assert_never` names the `match` that misses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias, assert_never

from orchestrion._json import dumps_str, loads
from orchestrion.engine.breakers import Circuit
from orchestrion.engine.journal import Entry, Lease, RunRecord
from orchestrion.engine.rate_limits import Allowance
from orchestrion.errors import BreakerOpen, RunBusy, RunNotFound, StoreError, lease_lost
from orchestrion.policy import Breaker
from orchestrion.stores._failures import WriteFailure
from orchestrion.stores._sqlite_file import (
    INSERT_ENTRY,
    INSERT_RUN,
    ORDER,
    UNLEASE,
    next_claimable,
    run_record,
    store_error,
)
from orchestrion.stores.memory import duplicate_seq_error, idempotency_key_error, seq_error

_BREAKER = "state, failures, opened_at, round, reopened, admitted, successes"
"""The columns of a breaker's state, in `Circuit`'s terms."""

# -- rows ----------------------------------------------------------------------


SqlRow: TypeAlias = tuple[str, int, str, str, str, str]
"""One journal entry as the parameters of `INSERT_ENTRY` (run id, seq, key, kind,
status, JSON text), built by the store's caller and read by sqlite3 only: what
the writer checks (a seq, a key) it reads from the `Entry` itself. A plain tuple
on purpose: sqlite3 binds an exact tuple 0.4 us faster than a NamedTuple, on the
writer thread, whose Python work holds the GIL that every run's steps need."""


class RunRow(NamedTuple):
    """A run's row, in the column order of `INSERT_RUN`."""

    id: str
    name: str
    status: str
    created_at: float
    updated_at: float
    idempotency_key: str | None
    data: str
    """The record's JSON text, without its lease (kept in the columns below)."""
    owner: str | None
    token: int
    lease_since: float | None
    lease_until: float | None
    queue: str | None
    priority: int


# -- operations ------------------------------------------------------------------
#
# NamedTuples, not dataclasses: a non-durable append is the hot path (one per
# model or read-tool step, queued without waiting), and a NamedTuple is the
# cheapest named record to build (half a frozen dataclass's cost). The waiter
# comes first, so that `SQLiteStore._call(Get, run_id)` builds any operation
# with its future.


class SyncWaiter:
    """Waits for an operation from a thread with no event loop (the atexit flush)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: object = None

    def set(self, result: object) -> None:
        self.result = result
        self.done.set()


Waiter: TypeAlias = "asyncio.Future[Any] | SyncWaiter | None"
"""Who waits for an operation's result; None: nobody (a non-durable append),
so its failure is kept for its run."""


class Create(NamedTuple):
    waiter: Waiter
    run: RunRow
    entries: tuple[Entry, ...]
    """The run's first journal entries, if any."""
    rows: list[SqlRow]
    """The entries' rows, encoded by the caller: a value that is not JSON fails
    there, before anything is queued."""

    @property
    def run_id(self) -> str:
        return self.run.id


class Update(NamedTuple):
    """A run's new status, with `patch` (JSON text) merged into its record."""

    waiter: Waiter
    run_id: str
    status: str
    updated_at: float
    patch: str
    token: int | None
    release: bool
    """Also end the run's lease (its owner is done with it)."""


class Append(NamedTuple):
    waiter: Waiter
    run_id: str
    entries: tuple[Entry, ...]
    """The entries appended, in order (seq after seq)."""
    rows: list[SqlRow]
    """The entries' rows, encoded by the caller: a value that is not JSON fails
    there, before anything is queued."""
    token: int | None


class Claim(NamedTuple):
    waiter: Waiter
    run_id: str
    owner: str
    ttl: float
    steal: bool


class ClaimNext(NamedTuple):
    """Claim the next `limit` runs of `queues` (`RunQueue.claim_next`)."""

    waiter: Waiter
    owner: str
    queues: tuple[str, ...]
    ttl: float
    limit: int


class Renew(NamedTuple):
    waiter: Waiter
    leases: dict[str, int]
    """Run id -> the token its lease was claimed with."""
    ttl: float


class Release(NamedTuple):
    waiter: Waiter
    run_id: str
    token: int


class Allow(NamedTuple):
    """Change a rate limit's allowance (`SQLiteStore.rate_limits`): `change` applies
    `engine.rate_limits.Allowance` rules to it, at `time.time()`, and gives the result."""

    waiter: Waiter
    key: str
    change: Callable[[Allowance, float], object]


class Trip(NamedTuple):
    """Change a circuit breaker's state (`SQLiteStore.breakers`): `change` applies
    `engine.breakers.Circuit` rules to it, at `time.time()`, and gives the result (a
    `BreakerOpen` it raises is given as the result, once the state is saved)."""

    waiter: Waiter
    name: str
    config: Breaker
    change: Callable[[Circuit, float], object]


class Get(NamedTuple):
    waiter: Waiter
    run_id: str


class Find(NamedTuple):
    waiter: Waiter
    idempotency_key: str


class List(NamedTuple):
    waiter: Waiter
    status: str | None
    limit: int


class Load(NamedTuple):
    waiter: Waiter
    run_id: str


class Count(NamedTuple):
    waiter: Waiter
    queues: tuple[str, ...]


class Stop(NamedTuple):
    """Commit what is queued before this, then end the thread."""

    waiter: Waiter


Write: TypeAlias = Create | Update | Append | Claim | ClaimNext | Renew | Release | Allow | Trip
Read: TypeAlias = Get | Find | List | Load | Count
Op: TypeAlias = Write | Read | Stop
WRITES = (Append, Update, Create, Claim, ClaimNext, Renew, Release, Allow, Trip)
"""The classes of `Write`, for `isinstance` (the most frequent first)."""
RUN_WRITES = (Update, Append)
"""Writes that continue a run's journal or record: a failure of one is kept for its run."""


# -- failures ----------------------------------------------------------------------


class WriterState(Protocol):
    """What the writer thread knows of the file across batches (`_Writer`)."""

    path: str
    busy_timeout: float
    """Seconds to wait for another connection's lock."""
    run_columns: str
    """What to select for a run record."""
    known: set[str]
    """Ids of runs known to exist."""
    failed: dict[str, WriteFailure]
    """Runs whose writes are refused (see `WriteFailure`)."""
    next_seq: dict[str, int]
    """The seq the next append of a run must have, where known."""


# -- writes ------------------------------------------------------------------------


class Transaction:
    """One attempt at applying a batch's writes in the open transaction.

    `apply` gives a result per write: None, a value (a claim's record, a renewal's
    lost runs), an error for the caller alone, or the `WriteFailure` of the
    write's run. With `isolate`, each write runs in its own savepoint, so that an
    integrity error (a duplicate id, key or seq) fails that write alone. The
    other fields are what the writer keeps if this attempt commits.
    """

    __slots__ = (
        "claimed",
        "cleared",
        "conn",
        "ends",
        "fenced",
        "isolate",
        "released",
        "results",
        "rows",
        "state",
        "tokens",
    )

    def __init__(self, conn: sqlite3.Connection, state: WriterState, *, isolate: bool) -> None:
        self.conn = conn
        self.state = state
        self.isolate = isolate
        self.fenced: dict[str, WriteFailure] = {}
        """Runs whose writes this attempt refused (a stale token, a seq out of order)."""
        self.ends: dict[str, int] = {}
        """The new ends of the journals created or appended to (so: runs that exist)."""
        self.cleared: list[str] = []
        """Runs whose earlier failures no longer count: created, or claimed (a new
        owner starts from what was saved)."""
        self.claimed: list[str] = []
        """Runs claimed: what the writer knew of their journals' ends may be stale."""
        self.released: list[str] = []
        """Runs whose owner let them go with their status: the writer forgets them
        (a process that works on millions of runs keeps nothing per run)."""
        self.tokens: dict[str, int | None] = {}
        """Each run's fencing token as this attempt sees it (None: no such run)."""
        self.rows: list[SqlRow] = []
        """Rows of consecutive appends, inserted with one executemany."""
        self.results: list[object] = []
        """A result per write applied, in order."""

    def apply(self, ops: Sequence[Write]) -> None:
        """Apply `ops`, one handler each; an integrity error propagates unless `isolate`."""
        append = self.results.append
        for op in ops:
            if self.rows and type(op) is not Append:
                self._flush()
            match op:
                case Append():
                    append(self._apply_append(op))
                case Create():
                    append(self._apply_create(op))
                case Update():
                    append(self._apply_update(op))
                case Claim():
                    append(self._apply_claim(op))
                case ClaimNext():
                    append(self._apply_claim_next(op))
                case Renew():
                    append(self._apply_renew(op))
                case Release():
                    self._apply_release(op)
                    append(None)
                case Allow():
                    append(self._apply_allow(op))
                case Trip():
                    append(self._apply_trip(op))
                case _:
                    assert_never(op)
        self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.conn.executemany(INSERT_ENTRY, self.rows)
            self.rows = []

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        """With `isolate`, undo the block alone if it hits an integrity error."""
        if not self.isolate:
            yield
            return
        self.conn.execute("SAVEPOINT op")
        try:
            yield
        except sqlite3.IntegrityError:
            self.conn.execute("ROLLBACK TO op")
            self.conn.execute("RELEASE op")
            raise
        self.conn.execute("RELEASE op")

    def _refused(self, run_id: str, token: int | None) -> WriteFailure | None:
        """The failure that refuses this write of `run_id`: the journal stays a prefix."""
        failure = self.fenced.get(run_id) or self.state.failed.get(run_id)
        return failure if failure is not None and failure.refuses(token) else None

    def _token(self, run_id: str) -> int | None:
        if run_id in self.tokens:
            return self.tokens[run_id]
        row = self.conn.execute("SELECT token FROM runs WHERE id = ?", (run_id,)).fetchone()
        current = self.tokens[run_id] = None if row is None else row[0]
        return current

    # -- one handler per write --------------------------------------------------

    def _apply_append(self, op: Append) -> object:
        # The hot path (an append per model or tool step): what a usual append
        # passes through is inline, the rest in helpers.
        run_id, entries, token = op.run_id, op.entries, op.token
        if self.fenced or self.state.failed:
            refused = self._refused(run_id, token)
            if refused is not None:
                return refused
        if token is None:
            if run_id not in self.state.known and not self._exists(run_id):
                return StoreError(f"Cannot append to run {run_id!r}: it does not exist.")
        else:
            tokens = self.tokens
            if (tokens[run_id] if run_id in tokens else self._token(run_id)) != token:
                return self._stale(run_id, token)
        ends = self.ends
        expected = ends.get(run_id)
        if expected is None:
            expected = self._journal_end(run_id, entries)
        if len(entries) == 1:  # the usual case, kept cheap
            if entries[0].seq != expected:
                return self._out_of_order(run_id, entries[0].seq, expected)
        else:
            bad = next((i for i, e in enumerate(entries) if e.seq != expected + i), None)
            if bad is not None:
                return self._out_of_order(run_id, entries[bad].seq, expected + bad)
        if self.isolate:
            return self._insert_alone(op, expected)
        self.rows += op.rows
        ends[run_id] = expected + len(entries)
        return None

    def _out_of_order(self, run_id: str, seq: int, expected: int) -> WriteFailure:
        """An append whose seq does not continue the run's journal: the run is
        being resumed twice at once (or by two stores)."""
        error = seq_error(run_id, seq, expected)
        failure = self.fenced[run_id] = WriteFailure(str(error), None)
        return failure

    def _stale(self, run_id: str, token: int) -> StoreError | WriteFailure:
        """An append carrying `token` while the run's is another: refused."""
        current = self.tokens[run_id]
        if current is None:
            return StoreError(f"Cannot append to run {run_id!r}: it does not exist.")
        lost = lease_lost(run_id, token, current)
        failure = self.fenced[run_id] = WriteFailure(str(lost), None, type(lost), token)
        return failure

    def _journal_end(self, run_id: str, entries: Sequence[Entry]) -> int:
        """The seq the first of `entries` must have, for a run not appended to yet
        in this attempt: what the thread knows, else what the file holds."""
        known = self.state.next_seq.get(run_id)
        if known is not None and not (entries and entries[0].seq > known):
            return known
        # Unknown, or what the thread knew may be stale (another process may have
        # appended since): the file decides.
        self.state.next_seq.pop(run_id, None)
        return self._end_in_file(run_id)

    def _end_in_file(self, run_id: str) -> int:
        """The seq the run's next entry must have, as the file holds it."""
        cur = self.conn.execute("SELECT MAX(seq) FROM journal WHERE run_id = ?", (run_id,))
        last = cur.fetchone()[0]
        return 0 if last is None else last + 1

    def _insert_alone(self, op: Append, expected: int) -> WriteFailure | None:
        """Insert `op`'s entries in their own savepoint (`isolate`): a duplicate
        fails them alone."""
        try:
            with self._savepoint():
                self.conn.executemany(INSERT_ENTRY, op.rows)
        except sqlite3.IntegrityError as exc:
            error = self._duplicate(op.run_id, op.entries)
            failure = self.fenced[op.run_id] = WriteFailure(str(error), exc)
            return failure
        self.ends[op.run_id] = expected + len(op.entries)
        return None

    def _apply_create(self, op: Create) -> StoreError | None:
        try:
            with self._savepoint():
                self.conn.execute(INSERT_RUN, tuple(op.run))
                if op.rows:
                    self.conn.executemany(INSERT_ENTRY, op.rows)
        except sqlite3.IntegrityError as exc:
            if not self.isolate:
                raise  # the batch is redone with `isolate`
            return self._create_error(op, exc)
        self.tokens[op.run_id] = op.run.token
        self.ends[op.run_id] = op.entries[-1].seq + 1 if op.entries else 0
        self.cleared.append(op.run_id)  # a new run has no lost writes
        return None

    def _apply_update(self, op: Update) -> object:
        refused = self._refused(op.run_id, op.token)
        if refused is not None:
            return refused
        try:
            with self._savepoint():
                return self._update(op)
        except sqlite3.IntegrityError as exc:
            if not self.isolate:
                raise  # the batch is redone with `isolate`
            error = StoreError(f"Cannot write run {op.run_id!r} to {self.state.path}: {exc}")
            error.__cause__ = exc
            return error

    def _update(self, op: Update) -> StoreError | None:
        row = self.conn.execute(
            "SELECT data, token FROM runs WHERE id = ?", (op.run_id,)
        ).fetchone()
        if row is None:
            return StoreError(f"Cannot update run {op.run_id!r}: it does not exist.")
        saved, current = row
        if op.token is not None and current != op.token:
            return lease_lost(op.run_id, op.token, current)
        data = loads(saved)
        patch = loads(op.patch)
        if data.get("trace") is not None:
            patch.pop("trace", None)  # a run's trace context, once set, stays
        data.update(patch)
        if op.release:
            self.released.append(op.run_id)
        self.conn.execute(
            "UPDATE runs SET status = ?, updated_at = ?, data = ?"
            + (f", {UNLEASE}, attempts = 0" if op.release else "")
            + " WHERE id = ?",
            (op.status, op.updated_at, dumps_str(data), op.run_id),
        )
        return None

    def _apply_claim(self, op: Claim) -> RunRecord | RunNotFound | RunBusy:
        now = time.time()
        row = self.conn.execute(
            f"SELECT {self.state.run_columns} FROM runs WHERE id = ?", (op.run_id,)
        ).fetchone()
        if row is None:
            return RunNotFound(op.run_id, f"sqlite:///{self.state.path}")
        record = run_record(row)
        held = record.lease
        if held is not None and held.live(now) and held.owner != op.owner and not op.steal:
            return RunBusy(op.run_id, held.owner, held.since, held.until)
        return self._take(record, op.owner, now, op.ttl)

    def _apply_claim_next(self, op: ClaimNext) -> list[RunRecord]:
        now = time.time()
        claimed: list[RunRecord] = []
        while len(claimed) < op.limit:
            run_id = next_claimable(self.conn, op.queues, now)
            if run_id is None:
                break
            self.conn.execute(  # marked running as it is claimed, in its column and its record
                "UPDATE runs SET status = 'running', attempts = attempts + 1, "
                "data = json_set(data, '$.status', 'running') WHERE id = ?",
                (run_id,),
            )
            row = self.conn.execute(
                f"SELECT {self.state.run_columns} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            record = self._take(run_record(row), op.owner, now, op.ttl)
            # Read under the claim: the run's first append need not look its end up.
            record.journal_size = self.ends[run_id] = self._end_in_file(run_id)
            claimed.append(record)
        return claimed

    def _take(self, record: RunRecord, owner: str, now: float, ttl: float) -> RunRecord:
        """Make `owner` the owner of the run of `record` (read in this transaction)."""
        token = record.token + 1
        self.conn.execute(
            "UPDATE runs SET owner = ?, token = ?, lease_since = ?, lease_until = ? WHERE id = ?",
            (owner, token, now, now + ttl, record.id),
        )
        self.tokens[record.id] = token
        self.cleared.append(record.id)
        self.claimed.append(record.id)
        record.token, record.lease = token, Lease(owner, token, now, now + ttl)
        return record

    def _apply_renew(self, op: Renew) -> set[str]:
        lost: set[str] = set()
        until = time.time() + op.ttl
        for run_id, token in op.leases.items():
            cur = self.conn.execute(
                "UPDATE runs SET lease_until = ? WHERE id = ? AND token = ? AND owner IS NOT NULL",
                (until, run_id, token),
            )
            if cur.rowcount != 1:
                lost.add(run_id)
        return lost

    def _apply_allow(self, op: Allow) -> object:
        now = time.time()
        row = self.conn.execute(
            "SELECT requests, tokens, cost, at FROM rate_limits WHERE key = ?", (op.key,)
        ).fetchone()
        allowance = Allowance(*row) if row is not None else Allowance(at=now)
        result = op.change(allowance, now)
        self.conn.execute(
            "INSERT INTO rate_limits (key, requests, tokens, cost, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET requests = excluded.requests, "
            "tokens = excluded.tokens, cost = excluded.cost, at = excluded.at",
            (op.key, allowance.requests, allowance.tokens, allowance.cost, allowance.at),
        )
        return result

    def _apply_trip(self, op: Trip) -> object:
        row = self.conn.execute(
            f"SELECT {_BREAKER} FROM breakers WHERE name = ?", (op.name,)
        ).fetchone()
        circuit = Circuit(op.config)
        if row is not None:
            circuit.state, failures, circuit.opened_at = row[0], row[1], row[2]
            circuit.failures = deque(loads(failures))
            circuit.round, circuit.reopened, circuit.admitted, circuit.successes = row[3:]
            circuit.reopened = bool(circuit.reopened)
        try:
            result = op.change(circuit, time.time())
        except BreakerOpen as exc:
            result = exc
        self.conn.execute(
            f"INSERT INTO breakers (name, {_BREAKER}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET state = excluded.state, "
            "failures = excluded.failures, opened_at = excluded.opened_at, "
            "round = excluded.round, reopened = excluded.reopened, "
            "admitted = excluded.admitted, successes = excluded.successes",
            (
                op.name,
                circuit.state,
                dumps_str(list(circuit.failures)),
                circuit.opened_at,
                circuit.round,
                int(circuit.reopened),
                circuit.admitted,
                circuit.successes,
            ),
        )
        return result

    def _apply_release(self, op: Release) -> None:
        self.conn.execute(
            f"UPDATE runs SET {UNLEASE} WHERE id = ? AND token = ?", (op.run_id, op.token)
        )

    # -- errors -------------------------------------------------------------------

    def _exists(self, run_id: str) -> bool:
        return bool(self.conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone())

    def _duplicate(self, run_id: str, entries: Sequence[Entry]) -> StoreError:
        """An append hit a seq already written (by another process, or another store)."""
        seq = self.conn.execute(
            "SELECT MIN(seq) FROM journal WHERE run_id = ? AND seq BETWEEN ? AND ?",
            (run_id, entries[0].seq, entries[-1].seq),
        ).fetchone()[0]
        return duplicate_seq_error(run_id, entries[0].seq if seq is None else seq)

    def _create_error(self, op: Create, exc: sqlite3.IntegrityError) -> StoreError:
        msg = str(exc)
        run_id = op.run_id
        if "runs.idempotency_key" in msg:
            key = op.run.idempotency_key
            assert key is not None  # the unique index holds only keys that are set
            row = self.conn.execute(
                "SELECT id FROM runs WHERE idempotency_key = ?", (key,)
            ).fetchone()
            error = idempotency_key_error(run_id, key, None if row is None else row[0])
        elif msg.endswith("runs.id"):
            error = StoreError(f"A run with id {run_id!r} already exists; choose another id.")
        elif "journal" in msg:
            seqs = [e.seq for e in op.entries]
            error = StoreError(
                f"Cannot create run {run_id!r}: its entries repeat a seq ({seqs}); each seq "
                "is written once."
            )
        else:
            error = StoreError(f"Cannot write run {run_id!r} to {self.state.path}: {msg}")
        error.__cause__ = exc
        return error


# -- reads -------------------------------------------------------------------------


class Reads:
    """Answers reads after the batch's writes committed, one handler each (`Get`
    and `Find` share `_read_record`: one run's record, by id or by key)."""

    def __init__(self, conn: sqlite3.Connection, state: WriterState) -> None:
        self.conn = conn
        self.state = state

    def read(self, op: Read) -> object:
        """The result of `op`, or a `StoreError` saying what went wrong."""
        try:
            match op:
                case Load():
                    return self._read_load(op)
                case Get():
                    return self._read_record("id", op.run_id)
                case Find():
                    return self._read_record("idempotency_key", op.idempotency_key)
                case List():
                    return self._read_list(op)
                case Count():
                    return self._read_count(op)
                case _:
                    assert_never(op)
        except (sqlite3.Error, ValueError, KeyError) as exc:
            return store_error(self.state.path, exc, "reading", self.state.busy_timeout)

    def _read_load(self, op: Load) -> list[Entry]:
        cur = self.conn.execute(
            "SELECT data FROM journal WHERE run_id = ? ORDER BY seq", (op.run_id,)
        )
        entries = [Entry.from_json(loads(data)) for (data,) in cur]
        # What the thread knows of the journal's end is refreshed: another
        # process may have appended since (a resume elsewhere).
        if entries:
            self.state.next_seq[op.run_id] = entries[-1].seq + 1
        else:
            self.state.next_seq.pop(op.run_id, None)
        return entries

    def _read_record(self, column: str, value: str) -> RunRecord | None:
        """`Get` (by id) and `Find` (by idempotency key): one run's record."""
        row = self.conn.execute(
            f"SELECT {self.state.run_columns} FROM runs WHERE {column} = ?", (value,)
        ).fetchone()
        if row is None:
            return None
        record = run_record(row)
        self.state.known.add(record.id)
        return record

    def _read_list(self, op: List) -> list[RunRecord]:
        select = f"SELECT {self.state.run_columns} FROM runs"
        if op.status is None:
            cur = self.conn.execute(select + ORDER, (op.limit,))
        else:
            cur = self.conn.execute(select + " WHERE status = ?" + ORDER, (op.status, op.limit))
        return [run_record(row) for row in cur]

    def _read_count(self, op: Count) -> dict[tuple[str, str], int]:
        marks = ", ".join("?" * len(op.queues))
        cur = self.conn.execute(
            "SELECT status, queue, count(*) FROM runs WHERE status IN "
            f"('queued', 'running', 'interrupted') AND queue IN ({marks}) GROUP BY status, queue",
            op.queues,
        )
        return {(status, queue): n for status, queue, n in cur}
