"""The PostgreSQL store's queue of runs: the next run for a worker, taken with
`FOR UPDATE SKIP LOCKED` (two workers never wait on, nor take, the same run), and
`LISTEN`/`NOTIFY` to wake idle workers when a run is queued or put back.

The notification is sent in the transaction that queues the run, so PostgreSQL
delivers it only once that commits: a woken worker always finds the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Sequence
from typing import Any

from orchestrion.stores._pg_sql import RUN_COLUMNS


@functools.cache
def claim_next_sql(queues: int) -> str:
    """The statement that claims the first `$4` runs of `queues` queues (named by
    `$6`, `$7`, ...) that nobody holds, and marks them running: queued ones, or
    running ones whose lease ended (their worker died or let go).

    Each queue's head is read in index order (`runs_queued`), skipping the rows a
    concurrent claim has locked, and the runs whose lease ended through
    `runs_unowned`; the best `$4` of those are taken. So a claim costs the same
    with a backlog of millions, and two workers never wait on each other."""
    heads = [
        f"q{i} AS (SELECT id, priority, created_at FROM runs WHERE queue = ${6 + i} "
        "AND status = 'queued' ORDER BY priority DESC, created_at LIMIT $4 "
        "FOR UPDATE SKIP LOCKED)"
        for i in range(queues)
    ]
    found = " UNION ALL ".join(f"SELECT * FROM q{i}" for i in range(queues))
    return f"""
WITH {", ".join(heads)},
gone AS (
    SELECT id, priority, created_at FROM runs
    WHERE status = 'running' AND queue IS NOT NULL AND coalesce(lease_until, 0) <= $2
        AND queue = ANY($5::text[])
    ORDER BY priority DESC, created_at LIMIT $4
    FOR UPDATE SKIP LOCKED
),
picked AS (
    SELECT id AS picked_id FROM ({found} UNION ALL SELECT * FROM gone) AS candidates
    ORDER BY priority DESC, created_at LIMIT $4
)
UPDATE runs SET status = 'running', token = token + 1, attempts = attempts + 1,
    lease_owner = $1, lease_since = $2, lease_until = $3
FROM picked WHERE id = picked_id
RETURNING {RUN_COLUMNS}, next_seq
"""


NOTIFY = "SELECT pg_notify($1, $2)"

_CONNECTING_AT_CLOSE = 5.0
"""Seconds `Listener.close` waits for a connection under way before it cuts it off."""


def channel(schema: str) -> str:
    """The notification channel of a store's schema (at most 63 bytes, as
    PostgreSQL requires; two long names cut alike only wake each other's workers)."""
    return f"orchestrion_{schema}"[:63]


class Listener:
    """One connection that LISTENs on the store's channel, opened on first use
    (and again after it dropped), for `PostgresStore.wait_for_runs`."""

    def __init__(self, connect: Any, channel: str) -> None:
        self._connect = connect
        self.channel = channel
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._heard: asyncio.Event | None = None
        self._queues: frozenset[str] = frozenset()
        """The queues of the waiting worker: a run queued on another wakes nobody here."""
        self._connecting: asyncio.Future[bool] | None = None

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return once a run was queued on one of `queues` since the last call, or
        after `timeout` seconds (at once when the connection drops: the caller's claim
        finds what it missed)."""
        self._queues = frozenset(queues)
        if self._loop is not asyncio.get_running_loop():
            self._conn = None  # the connection of another event loop: left to it
            self._connecting = None
        conn, heard = self._conn, self._heard
        if conn is None or conn.is_closed() or heard is None:
            connecting = self._connecting
            if connecting is None or connecting.done():
                connecting = self._connecting = asyncio.get_running_loop().create_task(
                    self._listen(),
                    context=contextvars.Context(),  # outlives this wait
                )
                self._loop = asyncio.get_running_loop()
            # Shielded: a waiter cut off (a worker's slot freed first) leaves the
            # connection to be made, and the next wait uses it. (asyncpg complains of
            # a connection attempt cancelled midway, and it is one more backend.)
            if not await asyncio.shield(connecting):
                await asyncio.sleep(timeout)  # the server is away: the caller's claim says so
            return  # newly listening: what was queued before is found by a claim
        if not heard.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heard.wait(), timeout)
        heard.clear()

    async def _listen(self) -> bool:
        import asyncpg

        await self._disconnect()
        self._heard = asyncio.Event()  # of this event loop
        try:
            conn = await self._connect()
        except (OSError, asyncpg.PostgresError):
            return False
        try:
            await conn.add_listener(self.channel, self._notified)
            conn.add_termination_listener(self._dropped)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, asyncpg.PostgresError | OSError):
                return False
            raise
        self._conn, self._loop = conn, asyncio.get_running_loop()
        return True

    def _notified(self, conn: object, pid: int, channel: str, queue: str) -> None:
        if self._heard is not None and queue in self._queues:  # the payload: its queue
            self._heard.set()

    def _dropped(self, conn: object) -> None:
        if self._heard is not None:
            self._heard.set()

    async def close(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            with contextlib.suppress(Exception):  # a connection under way is made, then closed
                await asyncio.wait_for(asyncio.shield(connecting), _CONNECTING_AT_CLOSE)
            connecting.cancel()
        await self._disconnect()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close()
