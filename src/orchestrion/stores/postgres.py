"""The store for many processes and machines: PostgreSQL, through asyncpg.

asyncpg rather than psycopg 3: it speaks the binary protocol natively to asyncio,
with its own pool, prepared-statement cache and LISTEN/NOTIFY, and is several
times faster on the small statements a journal is made of.

    postgresql://user:password@host:5432/db?schema=orchestrion&pool_size=10

Writes go through one queue per store, drained by one task that applies
everything queued (from every concurrent run) in ONE transaction: a group
commit. A non-durable append costs its caller a JSON encode and a queue put, and
its batch commits with `synchronous_commit = off`; a durable call waits for a
commit flushed to disk. Reads go to the pool directly, except `load`, which
waits for the writes queued before it.

Ownership: a claim increments the run's token in one `UPDATE`, and every fenced
write checks the token in the statement that writes, under the run's row lock,
so a stale owner's write is refused in the same transaction (`LeaseLost`).

Failures reach the run they belong to, as in the SQLite store: a write that
fails in a batch is kept for its run; the run's next write (or first load)
raises it; the load after that clears it, so a resume appends from the saved
prefix. A stale token's refusal concerns its old owner only.

jsonb keeps a JSON object's keys in its own order (shorter keys first), not in
the order written: values compare equal, but a dict read back may iterate in
another order than the one the run first saw.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from orchestrion._json import JSON, dumps_str
from orchestrion.engine.journal import Entry, Lease, RunRecord, RunStatus, StepStatus
from orchestrion.engine.store import DEFAULT_LEASE_TTL
from orchestrion.errors import (
    LeaseLost,
    OrchestrionError,
    RunBusy,
    RunNotFound,
    StoreError,
    UserError,
    lease_lost,
)
from orchestrion.redact import redact_url
from orchestrion.stores._failures import WriteFailure, lost_writes
from orchestrion.stores._pg_batch import (
    Append,
    Barrier,
    Op,
    Write,
    append_all,
    apply_in_order,
    store_error,
)
from orchestrion.stores._pg_breakers import PostgresBreakers
from orchestrion.stores._pg_limits import PostgresLimits
from orchestrion.stores._pg_queue import NOTIFY, Listener, channel, claim_next_sql
from orchestrion.stores._pg_schema import check_version, migrate
from orchestrion.stores._pg_sql import (
    INSERT_ENTRY,
    INSERT_RUN,
    RUN_COLUMNS,
    UPDATE_RUN,
)
from orchestrion.stores.memory import idempotency_key_error

DEFAULT_SCHEMA = "orchestrion"
DEFAULT_POOL_SIZE = 10
_MAX_BATCH = 500
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


# -- the writer ----------------------------------------------------------------------


@dataclass(slots=True)
class _Writer:
    queue: asyncio.Queue[Op] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class PostgresStore:
    """Runs and journals in PostgreSQL tables (see `_pg_schema`), written by group commit.

    `schema` is the PostgreSQL schema that holds the tables (created if missing);
    `pool_size` the most connections this store opens.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = DEFAULT_POOL_SIZE,
        read_only: bool = False,
    ) -> None:
        if not _NAME.fullmatch(schema):
            raise UserError(
                f"PostgreSQL schema name {schema!r} is not a plain identifier: use letters, "
                "digits and _ (at most 63), starting with a letter or _."
            )
        if pool_size < 1:
            raise UserError(f"PostgreSQL pool_size={pool_size}: give at least 1.")
        self._dsn = dsn
        self.read_only = read_only
        """Opened for reading only (`orchestrion runs` and `show`): nothing is created
        or changed, and a write is refused."""
        self.schema = schema
        self.pool_size = pool_size
        self.url = redact_url(dsn) + ("" if schema == DEFAULT_SCHEMA else f"?schema={schema}")
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening: asyncio.Lock | None = None
        self._writer: _Writer | None = None
        self._failed: dict[str, WriteFailure] = {}
        self._known: set[str] = set()
        self._closed = False
        self._listener: Listener | None = None
        self.commits = 0
        """Transactions committed by the writer so far (one per group commit)."""

    @classmethod
    def from_url(cls, url: str, *, read_only: bool = False) -> PostgresStore:
        """`postgresql://user:password@host:port/db?schema=NAME&pool_size=N`; the two
        options are orchestrion's, the rest goes to the server as asyncpg reads it."""
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        schema = options.pop("schema", DEFAULT_SCHEMA)
        size = options.pop("pool_size", str(DEFAULT_POOL_SIZE))
        if not size.isdigit():
            raise UserError(f"Store URL {redact_url(url)!r}: pool_size must be a whole number.")
        dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(options)))
        return cls(dsn, schema=schema, pool_size=int(size), read_only=read_only)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r})"

    def breakers(self) -> PostgresBreakers:
        """Circuit breakers shared by every runtime on this database (a runtime on
        this store uses them unless given its own)."""
        return PostgresBreakers(self)

    def rate_limits(self) -> PostgresLimits:
        """Rate-limit allowances shared by every runtime on this database (a runtime
        on this store uses them unless given its own)."""
        return PostgresLimits(self)

    # -- connections ------------------------------------------------------------------

    async def _ready(self) -> Any:
        """The pool, opened (and the schema migrated) on first use in this event loop."""
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._closed:
            raise StoreError(f"The store {self.url} is closed: open it again to use it.")
        if self._opening is None or self._loop is not loop:
            self._opening, self._loop, self._pool, self._writer = asyncio.Lock(), loop, None, None
        async with self._opening:
            if self._pool is None:
                self._pool = await self._connect()
        return self._pool

    async def _connect(self) -> Any:
        import asyncpg

        where = redact_url(self._dsn)
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                server_settings={
                    "search_path": self.schema,
                    # Operators see which store a connection serves (pg_stat_activity).
                    "application_name": f"orchestrion {self.schema}"[:63],
                },
                # A connection goes back to the pool as it came: nothing here leaves
                # session state (settings are SET LOCAL, locks transaction-scoped), so
                # the reset query asyncpg would send on each release is a round trip saved.
                reset=_keep_as_is,
            )
        except asyncpg.InvalidPasswordError:
            raise StoreError(
                f"PostgreSQL at {where} refused the password of the URL's user: check the "
                "credentials in the store URL (the password is not shown)."
            ) from None
        except asyncpg.InvalidCatalogNameError as exc:
            raise StoreError(f"PostgreSQL at {where}: {exc}. Create it first.") from None
        except (TimeoutError, OSError) as exc:
            raise StoreError(
                f"Cannot reach PostgreSQL at {where}: {type(exc).__name__}: {exc}. Is the "
                "server running, and are the host and port right?"
            ) from None
        try:
            async with pool.acquire() as conn:
                if self.read_only:
                    await check_version(conn, self.schema, where)
                else:
                    await migrate(conn, self.schema)
        except BaseException:
            await pool.close()
            raise
        return pool

    # -- the writer -------------------------------------------------------------------

    async def _queue(self, op: Op) -> None:
        if self.read_only and not isinstance(op, Barrier):
            raise StoreError(
                f"The store {self.url} was opened read-only (for runs and show): it cannot "
                "write. Open it without read_only to run or resume."
            )
        await self._ready()
        if self._closed:
            raise StoreError(f"The store {self.url} is closed: open it again to use it.")
        writer = self._writer
        if writer is None or writer.task is None or writer.task.done():
            writer = self._writer = _Writer()
            # A context of its own: it outlives the step (and span) that started it.
            writer.task = asyncio.get_running_loop().create_task(
                self._drain(writer), name="orchestrion-postgres", context=contextvars.Context()
            )
        writer.queue.put_nowait(op)

    async def _call(self, apply: Any, run_id: str | None = None, token: int | None = None) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        await self._queue(Write(run_id, token, apply, waiter))
        return await waiter

    async def _drain(self, writer: _Writer) -> None:
        queue = writer.queue
        while True:
            batch = [await queue.get()]
            while len(batch) < _MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._commit(batch)
            except Exception as exc:  # a bug here must not leave a caller or a run unaware
                for op in batch:
                    if isinstance(op, Barrier):
                        if not op.waiter.done():
                            op.waiter.set_result(None)
                    else:
                        self._deliver(op, store_error(self.url, exc))

    async def _commit(self, batch: list[Op]) -> None:
        writes = [op for op in batch if not isinstance(op, Barrier)]
        results: list[object] = []
        if writes:
            try:
                results = await self._transaction(writes)
            except Exception as exc:
                if not _is_postgres_error(exc):
                    results = [store_error(self.url, exc)] * len(writes)
                else:  # one write broke the batch: each alone, so it fails alone
                    results = []
                    for op in writes:
                        try:
                            results += await self._transaction([op])
                        except Exception as one:
                            results.append(store_error(self.url, one))
        for op, result in zip(writes, results, strict=True):
            self._deliver(op, result)
        for barrier in batch:
            if isinstance(barrier, Barrier) and not barrier.waiter.done():
                barrier.waiter.set_result(None)

    async def _transaction(self, ops: Sequence[Append | Write]) -> list[object]:
        pool = self._pool
        results: list[object] = []
        durable = any(op.durable for op in ops)
        async with pool.acquire() as conn:
            if durable and all(isinstance(op, Append) for op in ops):
                # Appends only (a durable step's usual batch): one statement, which
                # commits alone, flushed: one round trip rather than four.
                results = await append_all(conn, ops, self._known, url=self.url)  # type: ignore[arg-type]
                self.commits += 1
                return results
            if len(ops) == 1 and isinstance(ops[0], Write):
                # One write alone (a run created, or ending, in-process): its statements
                # commit by themselves, which every `apply` here allows (a write of
                # several statements that must stand together opens its own transaction).
                try:
                    results = [await ops[0].apply(conn)]
                except OrchestrionError as refused:
                    results = [refused]
                self.commits += 1
                return results
            async with conn.transaction():
                if not durable:
                    await conn.execute("SET LOCAL synchronous_commit = off")
                results = await apply_in_order(conn, ops, self._known)
        self.commits += 1
        return results

    def _deliver(self, op: Append | Write, result: object) -> None:
        waiter = op.waiter
        if isinstance(result, StoreError) and op.run_id and op.run_id not in self._failed:
            # Kept for the run: its next call hears of it (see the module docstring);
            # the first failure stays the one kept.
            stale = op.token if isinstance(result, LeaseLost) else None
            failure = self._failed[op.run_id] = WriteFailure.of(result, stale)
            failure.reported = waiter is not None and not waiter.done()
        if waiter is None or waiter.done():
            return
        if isinstance(result, OrchestrionError):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    # -- Store protocol ---------------------------------------------------------------

    def _refuse(self, run_id: str, token: int | None) -> None:
        failure = self._failed.get(run_id)
        if failure is not None and failure.refuses(token):
            failure.reported = True
            raise failure.error()

    async def create_run(
        self,
        run: RunRecord,
        entries: Sequence[Entry] = (),
        *,
        owner: str | None = None,
        ttl: float = DEFAULT_LEASE_TTL,
    ) -> Lease | None:
        now = time.time()
        lease = None if owner is None else Lease(owner, 1, now, now + ttl)
        values = (
            run.id,
            run.name,
            RunStatus(run.status).value,
            _encode(run.id, run.input),
            run.target,
            _encode(run.id, run.output),
            _encode(run.id, run.error),
            _encode(run.id, list(run.pending)),
            run.created_at,
            run.updated_at,
            run.parent_id,
            run.fork_at,
            run.idempotency_key,
            _encode(run.id, list(run.usage)),
            run.v,
            0 if lease is None else 1,
            owner,
            None if lease is None else lease.since,
            None if lease is None else lease.until,
            entries[-1].seq + 1 if entries else 0,
            run.queue,
            run.priority,
            run.trace,
        )
        rows = _rows(run.id, entries)
        queued = run.queue if run.status == RunStatus.QUEUED else None

        async def apply(conn: Any) -> None:
            import asyncpg

            try:
                if rows or queued is not None or conn.is_in_transaction():
                    # In a batch, a savepoint: a refusal fails this run alone.
                    async with conn.transaction():
                        await conn.execute(INSERT_RUN, *values)
                        if rows:
                            await conn.executemany(INSERT_ENTRY, rows)
                        if queued is not None:  # delivered when the batch commits
                            await conn.execute(NOTIFY, channel(self.schema), queued)
                else:  # a write alone: one statement, committed by itself
                    await conn.execute(INSERT_RUN, *values)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "runs_pkey":
                    raise StoreError(
                        f"A run with id {run.id!r} already exists; choose another id."
                    ) from None
                used_by = await conn.fetchval(
                    "SELECT id FROM runs WHERE idempotency_key = $1", run.idempotency_key
                )
                raise idempotency_key_error(run.id, str(run.idempotency_key), used_by) from None
            self._known.add(run.id)
            self._failed.pop(run.id, None)

        await self._call(apply)
        return lease

    async def claim(
        self, run_id: str, owner: str, *, ttl: float = DEFAULT_LEASE_TTL, steal: bool = False
    ) -> RunRecord:
        async def apply(conn: Any) -> RunRecord:
            now = time.time()
            row = await conn.fetchrow(
                "UPDATE runs SET token = token + 1, lease_owner = $2, lease_since = $3, "
                "lease_until = $4 WHERE id = $1 AND ($5 OR lease_owner IS NULL "
                f"OR lease_until <= $3 OR lease_owner = $2) RETURNING {RUN_COLUMNS}",
                run_id,
                owner,
                now,
                now + ttl,
                steal,
            )
            if row is None:
                held = await conn.fetchrow(
                    "SELECT lease_owner, lease_since, lease_until FROM runs WHERE id = $1", run_id
                )
                if held is None:
                    raise RunNotFound(run_id, self.url)
                raise RunBusy(run_id, held[0], held[1], held[2])
            self._failed.pop(run_id, None)  # a new owner starts from what was saved
            self._known.add(run_id)
            return _record(row)

        record: RunRecord = await self._call(apply)
        return record

    async def renew(self, leases: Mapping[str, int], *, ttl: float = DEFAULT_LEASE_TTL) -> set[str]:
        ids, tokens = list(leases), list(leases.values())

        async def apply(conn: Any) -> set[str]:
            renewed = await conn.fetch(
                "UPDATE runs SET lease_until = $3 FROM unnest($1::text[], $2::bigint[]) "
                "AS held(id, token) WHERE runs.id = held.id AND runs.token = held.token "
                "AND runs.lease_owner IS NOT NULL RETURNING runs.id",
                ids,
                tokens,
                time.time() + ttl,
            )
            return set(ids) - {r[0] for r in renewed}

        lost: set[str] = await self._call(apply)
        return lost

    async def release(self, run_id: str, token: int) -> None:
        async def apply(conn: Any) -> None:
            await conn.execute(
                "UPDATE runs SET lease_owner = NULL, lease_since = NULL, lease_until = NULL "
                "WHERE id = $1 AND token = $2",
                run_id,
                token,
            )

        await self._call(apply)

    async def get_run(self, run_id: str) -> RunRecord | None:
        pool = await self._ready()
        row = await pool.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = $1", run_id)
        return None if row is None else _record(row)

    async def find_run(self, *, idempotency_key: str) -> RunRecord | None:
        pool = await self._ready()
        row = await pool.fetchrow(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = $1", idempotency_key
        )
        return None if row is None else _record(row)

    async def run_counts(self, queues: Sequence[str]) -> dict[tuple[str, str], int]:
        pool = await self._ready()
        rows = await pool.fetch(
            "SELECT status, queue, count(*) AS n FROM runs WHERE queue = ANY($1::text[]) "
            "AND status IN ('queued', 'running', 'interrupted') GROUP BY status, queue",
            list(queues),
        )
        return {(r["status"], r["queue"]): r["n"] for r in rows}

    async def list_runs(
        self, *, status: RunStatus | None = None, limit: int = 50
    ) -> list[RunRecord]:
        pool = await self._ready()
        rows = await pool.fetch(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE ($1::text IS NULL OR status = $1) "
            "ORDER BY created_at DESC, created_order DESC LIMIT $2",
            None if status is None else RunStatus(status).value,
            limit,
        )
        return [_record(r) for r in rows]

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
        values = (
            run_id,
            RunStatus(status).value,
            _encode(run_id, output),
            _encode(run_id, error),
            _encode(run_id, list(pending or [])),
            None if usage is None else _encode(run_id, list(usage)),
            time.time(),
            token,
            release,
            trace,
        )

        async def apply(conn: Any) -> None:
            done = await conn.fetchrow(UPDATE_RUN, *values)
            if done is None:
                current = await conn.fetchval("SELECT token FROM runs WHERE id = $1", run_id)
                if current is None:
                    raise StoreError(f"Cannot update run {run_id!r}: it does not exist.")
                assert token is not None
                raise lease_lost(run_id, token, current)
            await updated(conn, done)

        async def updated(conn: Any, done: Any) -> None:
            """After the update (`done`: the run's id, token and queue as updated)."""
            if status == RunStatus.QUEUED and done["queue"] is not None:  # put back: wake a worker
                await conn.execute(NOTIFY, channel(self.schema), done["queue"])
            if release:  # its owner let it go: nothing kept per run in a long-lived process
                self._known.discard(run_id)

        waiter = asyncio.get_running_loop().create_future()
        await self._queue(Write(run_id, token, apply, waiter, update=values, updated=updated))
        await waiter

    # -- the queue (see `_pg_queue`) ------------------------------------------------

    async def claim_next(
        self, owner: str, queues: Sequence[str], *, ttl: float = DEFAULT_LEASE_TTL, limit: int = 1
    ) -> list[RunRecord]:
        async def apply(conn: Any) -> list[RunRecord]:
            now = time.time()
            names = list(dict.fromkeys(queues))
            statement = claim_next_sql(len(names))
            rows = await conn.fetch(statement, owner, now, now + ttl, limit, names, *names)
            for row in rows:
                self._failed.pop(row["id"], None)
                self._known.add(row["id"])
            records = [_record(row, journal_size=row["next_seq"]) for row in rows]
            return sorted(records, key=lambda r: (-r.priority, r.created_at))

        claimed: list[RunRecord] = await self._call(apply)
        return claimed

    async def wait_for_runs(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a run is queued or put back on one of `queues` (NOTIFY, whose
        payload is the queue), or after `timeout` seconds (a lease that ends sends
        nothing)."""
        await self._ready()
        if self._listener is None:
            self._listener = Listener(self._listen_connection, channel(self.schema))
        await self._listener.wait(queues, timeout)

    async def _listen_connection(self) -> Any:
        import asyncpg

        return await asyncpg.connect(
            self._dsn,
            server_settings={"application_name": f"orchestrion {self.schema} listen"[:63]},
        )

    async def append(
        self, run_id: str, entries: Sequence[Entry], *, durable: bool, token: int | None = None
    ) -> None:
        if self._failed:
            self._refuse(run_id, token)
        queued = entries if isinstance(entries, tuple) else tuple(entries)
        rows = _rows(run_id, queued)
        if not durable and run_id in self._known:
            await self._queue(Append(run_id, queued, rows, token, None, False))
            return
        # Durable, or a run this store has not seen: wait, so that appending to a
        # missing run fails here as it does in every store.
        waiter = asyncio.get_running_loop().create_future()
        await self._queue(Append(run_id, queued, rows, token, waiter, True))
        await waiter

    async def load(self, run_id: str) -> list[Entry]:
        await self._flushed()
        failure = self._failed.get(run_id)
        if failure is not None and not issubclass(failure.kind, LeaseLost):
            if not failure.reported:
                failure.reported = True
                raise failure.error()
            del self._failed[run_id]  # a resume reads the saved prefix and goes on from it
        pool = await self._ready()
        rows = await pool.fetch(
            "SELECT seq, key, kind, status, result, started_at, ended_at, v FROM journal "
            "WHERE run_id = $1 ORDER BY seq",
            run_id,
        )
        return [
            Entry(r[0], r[1], r[2], StepStatus(r[3]), _decode(r[4]), r[5], r[6], r[7]) for r in rows
        ]

    async def _flushed(self) -> None:
        """Return once every write queued before this call is committed."""
        writer = self._writer
        if writer is None or writer.task is None or writer.task.done():
            return
        waiter = asyncio.get_running_loop().create_future()
        writer.queue.put_nowait(Barrier(waiter))
        await waiter

    async def close(self) -> None:
        """Commit queued writes and close the pool; closing twice is harmless.
        Raises the failures of writes whose runs have not heard of them yet."""
        if self._closed:
            return
        writer, pool = self._writer, self._pool
        if writer is not None and writer.task is not None and not writer.task.done():
            await self._flushed()
            writer.task.cancel()
        self._closed = True
        if self._listener is not None:
            await self._listener.close()
        if pool is not None and self._loop is asyncio.get_running_loop():
            await pool.close()
        lost = lost_writes([(r, f) for r, f in self._failed.items() if not f.reported])
        if lost is not None:
            raise lost


async def _keep_as_is(conn: Any) -> None:
    """A connection's reset on its way back to the pool: none needed, unless a
    transaction was left open (a cancelled call), which is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _encode(run_id: str, value: JSON) -> str:
    """`value` as jsonb text, in the caller: bad input fails before it is queued."""
    try:
        return dumps_str(value)
    except TypeError as exc:
        raise StoreError(f"Cannot store run {run_id!r}: a value is not JSON: {exc}") from exc


def _decode(text: str | None) -> JSON:
    return None if text is None else orjson.loads(text)


def _rows(run_id: str, entries: Sequence[Entry]) -> list[tuple[Any, ...]]:
    return [
        (
            run_id,
            e.seq,
            e.key,
            e.kind,
            StepStatus(e.status).value,
            _encode(run_id, e.result),
            e.started_at,
            e.ended_at,
            e.v,
        )
        for e in entries
    ]


def _record(row: Any, *, journal_size: int | None = None) -> RunRecord:
    owner = row["lease_owner"]
    return RunRecord(
        id=row["id"],
        name=row["name"],
        status=RunStatus(row["status"]),
        input=_decode(row["input"]),
        target=row["target"],
        output=_decode(row["output"]),
        error=_decode(row["error"]),
        pending=list(_decode(row["pending"]) or []),  # type: ignore[arg-type]
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        parent_id=row["parent_id"],
        fork_at=row["fork_at"],
        idempotency_key=row["idempotency_key"],
        usage=list(_decode(row["usage"]) or [0, 0, 0]),  # type: ignore[arg-type]
        lease=None
        if owner is None
        else Lease(owner, row["token"], row["lease_since"], row["lease_until"]),
        token=row["token"],
        queue=row["queue"],
        priority=row["priority"],
        attempts=row["attempts"],
        trace=row["trace"],
        v=row["v"],
        journal_size=journal_size,
    )


def _is_postgres_error(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(exc, asyncpg.PostgresError)
