"""The PostgreSQL store's queue of runs: the next run for a worker, taken with
`FOR UPDATE SKIP LOCKED` (two workers never wait on, nor take, the same run), and
`LISTEN`/`NOTIFY` to wake idle workers when a run is queued or put back.

The notification is sent in the transaction that queues the run, so PostgreSQL
delivers it only once that commits: a woken worker always finds the run.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from orchestrion.stores._pg_sql import RUN_COLUMNS

CLAIM_NEXT = f"""
UPDATE runs SET token = token + 1, lease_owner = $1, lease_since = $3, lease_until = $4
WHERE id = (
    SELECT id FROM runs
    WHERE queue = ANY($2::text[]) AND status IN ('queued', 'running')
        AND (lease_until IS NULL OR lease_until <= $3)
    ORDER BY priority DESC, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {RUN_COLUMNS}
"""
"""Claim the first run of some queues that nobody holds: queued, or running with
its lease ended (its worker died or let go)."""

NOTIFY = "SELECT pg_notify($1, $2)"


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
        self._heard = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Return once a run was queued since the last call, or after `timeout` seconds."""
        conn = self._conn
        if conn is None or conn.is_closed():
            if not await self._listen():
                await asyncio.sleep(timeout)  # the server is away: the caller's claim says so
            return  # newly listening: what was queued before is found by a claim
        if not self._heard.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heard.wait(), timeout)
        self._heard.clear()

    async def _listen(self) -> bool:
        import asyncpg

        try:
            conn = await self._connect()
            await conn.add_listener(self.channel, self._notified)
        except (OSError, asyncpg.PostgresError):
            return False
        self._conn = conn
        return True

    def _notified(self, *_: object) -> None:
        self._heard.set()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close()
