"""The PostgreSQL store's group commit: the writes queued by every run of a process
(`Append`, `Write`), applied by one task in as few statements as they allow.

In a batch, appends and run updates (a run's status and outcome, `Write.update`)
are gathered between the other writes (creating, claiming, releasing runs): the
appends of the stretch go in one statement and its updates in one more, whatever
their order in the queue. That reorders nothing that matters: an update changes
no journal and no token, and an append changes nothing an update reads. A write
that does not fit (a stale token, a journal end that moved, two updates of one
run) is done alone after that, which finds its refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrion.engine.journal import Entry
from orchestrion.errors import OrchestrionError, StoreError, lease_lost
from orchestrion.stores._pg_sql import APPEND_ONE, APPEND_SPANS, INSERT_ENTRY, UPDATE_RUNS
from orchestrion.stores.memory import seq_error


@dataclass(slots=True)
class Append:
    run_id: str
    entries: tuple[Entry, ...]
    rows: list[tuple[Any, ...]]
    token: int | None
    waiter: asyncio.Future[Any] | None
    durable: bool


@dataclass(slots=True)
class Write:
    """Any other write: `apply(conn)` gives its result, or raises the refusal that
    is its result (an `OrchestrionError`) without breaking the batch. A write alone
    in its batch runs outside any transaction: `apply` must be right so too (each
    statement committing by itself, or a transaction of its own)."""

    run_id: str | None
    """The run whose later writes a failure refuses (None: a failure is the caller's alone)."""
    token: int | None
    apply: Callable[[Any], Awaitable[Any]]
    waiter: asyncio.Future[Any]
    durable: bool = True
    update: tuple[Any, ...] | None = None
    """For an update of a run (`update_run`): its row of `UPDATE_RUNS`' arrays, so that
    the updates of a batch go in one statement."""
    updated: Callable[[Any, Any], Awaitable[None]] | None = None
    """What follows an update that `UPDATE_RUNS` made: `updated(conn, returned row)`."""


@dataclass(slots=True)
class Barrier:
    waiter: asyncio.Future[Any]


Op = Append | Write | Barrier


def gathered(op: Append | Write) -> bool:
    """Whether `op` is an append or an update, gathered with its neighbours."""
    return isinstance(op, Append) or op.update is not None


async def apply_in_order(conn: Any, ops: Sequence[Append | Write], known: set[str]) -> list[object]:
    """The results of `ops` applied in the transaction open on `conn`, in order, but
    for the stretches of appends and updates, each applied in two statements."""
    results: list[object] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        if gathered(op):
            j = i + 1
            while j < len(ops) and gathered(ops[j]):
                j += 1
            results += await _stretch(conn, ops[i:j], known)
            i = j
            continue
        assert isinstance(op, Write)
        try:
            results.append(await op.apply(conn))
        except OrchestrionError as refused:  # this write's own: the batch goes on
            results.append(refused)
        i += 1
    return results


async def _stretch(conn: Any, ops: Sequence[Append | Write], known: set[str]) -> list[object]:
    appends = [op for op in ops if isinstance(op, Append)]
    updates = [op for op in ops if isinstance(op, Write)]
    done: dict[int, object] = {}
    if appends:
        done.update(zip(map(id, appends), await append_all(conn, appends, known), strict=True))
    if updates:
        done.update(zip(map(id, updates), await _update_all(conn, updates), strict=True))
    return [done[id(op)] for op in ops]


async def append_all(
    conn: Any, ops: Sequence[Append], known: set[str], *, url: str = ""
) -> list[object]:
    """Apply appends in one statement: it moves every run's journal end on (where
    its token and end are as the appends expect) and inserts those runs' entries.
    A run whose appends do not fit is done append by append, which finds each
    one's refusal. Outside a transaction (`url` then names the store in errors),
    the statement commits by itself and each append done alone fails alone."""
    spans: dict[str, list[Any]] = {}  # run -> [token, first seq, next seq, fits]
    for op in ops:
        first = op.entries[0].seq if op.entries else None
        contiguous = all(e.seq == first + k for k, e in enumerate(op.entries))  # type: ignore[operator]
        span = spans.get(op.run_id)
        if span is None:
            spans[op.run_id] = span = [op.token, first, first, contiguous]
        elif span[0] != op.token or (first is not None and first != span[2]):
            span[3] = False
        span[3] = span[3] and contiguous and first is not None
        if span[3]:
            span[2] = first + len(op.entries)  # type: ignore[operator]
    fitting = [r for r, span in spans.items() if span[3]]
    alone = not conn.is_in_transaction()  # the statement below commits by itself
    moved: set[str] = set()
    if fitting:
        rows = [row for op in ops if spans[op.run_id][3] for row in op.rows]
        if len(rows) == 1:  # one step's entry (a durable step's usual batch): no arrays
            (run_id, *entry) = rows[0]
            token, first, end, _ = spans[run_id]
            done = await conn.fetchval(APPEND_ONE, run_id, token, first, end, *entry)
            moved = {run_id} if done else set()
        else:
            moved_rows = await conn.fetch(
                APPEND_SPANS,
                fitting,
                [spans[r][0] for r in fitting],
                [spans[r][1] for r in fitting],
                [spans[r][2] for r in fitting],
                *zip(*rows, strict=True),
            )
            moved = {r[0] for r in moved_rows}
        known.update(moved)
    results: list[object] = []
    for op in ops:
        if op.run_id in moved:
            results.append(None)
            continue
        try:
            if alone:
                async with conn.transaction():
                    await _append_rows(conn, op, known)
            else:
                await _append_rows(conn, op, known)
            results.append(None)
        except OrchestrionError as refused:
            results.append(refused)
        except Exception as exc:
            if not alone:
                raise  # the batch's transaction is broken: the batch is redone op by op
            # The statement above committed the runs that fit: this append fails alone.
            results.append(store_error(url, exc))
    return results


async def _append_rows(conn: Any, op: Append, known: set[str]) -> None:
    run_id, entries = op.run_id, op.entries
    first = entries[0].seq if entries else 0
    for i, e in enumerate(entries):
        if e.seq != first + i:
            raise seq_error(run_id, e.seq, first + i)
    done = await conn.fetchval(
        "UPDATE runs SET next_seq = $4 WHERE id = $1 AND next_seq = $3 "
        "AND ($2::bigint IS NULL OR token = $2) RETURNING next_seq",
        run_id,
        op.token,
        first,
        first + len(entries),
    )
    if done is None:
        row = await conn.fetchrow("SELECT token, next_seq FROM runs WHERE id = $1", run_id)
        if row is None:
            raise StoreError(f"Cannot append to run {run_id!r}: it does not exist.")
        if op.token is not None and row["token"] != op.token:
            raise lease_lost(run_id, op.token, row["token"])
        raise seq_error(run_id, first, row["next_seq"])
    if entries:
        await conn.executemany(INSERT_ENTRY, op.rows)
    known.add(run_id)


async def _update_all(conn: Any, ops: Sequence[Write]) -> list[object]:
    """Apply run updates in one statement; an update it did not make (a stale
    token, a missing run, a second update of one run) is applied alone."""
    made: dict[str, Any] = {}
    if len(ops) > 1:
        first = {op.run_id: op for op in reversed(ops)}  # one update per run in the statement
        rows = [op.update for op in first.values()]
        made = {r[0]: r for r in await conn.fetch(UPDATE_RUNS, *zip(*rows, strict=True))}
    results: list[object] = []
    for op in ops:
        row = made.pop(op.run_id, None) if op.run_id is not None else None
        try:
            if row is not None and op.updated is not None:
                await op.updated(conn, row)
                results.append(None)
            else:
                results.append(await op.apply(conn))
        except OrchestrionError as refused:
            results.append(refused)
    return results


def store_error(url: str, exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    error = StoreError(f"Writing to PostgreSQL at {url} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
