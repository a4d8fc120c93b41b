"""Rate-limit allowances in PostgreSQL: every worker on the database draws from the
same allowance of a model (or of a shared `RateLimit.key`), so a fleet keeps to
one limit, and to one spend per period.

Each `take` and `spend` reads the allowance's row under a row lock, applies the
rules of `engine.rate_limits.Allowance` and writes it back, in one transaction.
Times are wall-clock (`time.time`): the workers' clocks must agree to well
within a limit's period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from orchestrion.engine.rate_limits import Allowance
from orchestrion.policy import RateLimit

if TYPE_CHECKING:
    from orchestrion.stores.postgres import PostgresStore

T = TypeVar("T")


class PostgresLimits:
    """The `Limits` of every runtime on one PostgreSQL store (`store.rate_limits()`)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def take(self, key: str, limit: RateLimit) -> float:
        return await self._change(key, lambda a, now: a.take(limit, now))

    async def spend(self, key: str, limit: RateLimit, tokens: int, cost: float | None) -> None:
        await self._change(key, lambda a, now: a.spend(limit, tokens, cost, now))

    async def _change(self, key: str, change: Callable[[Allowance, float], T]) -> T:
        pool = await self._store._ready()
        async with pool.acquire() as conn, conn.transaction():
            now = time.time()
            row = await conn.fetchrow(
                "INSERT INTO rate_limits (key, at) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE "
                "SET key = excluded.key RETURNING requests, tokens, cost, at",
                key,
                now,
            )
            allowance = Allowance(row["requests"], row["tokens"], row["cost"], row["at"])
            result = change(allowance, now)
            await conn.execute(
                "UPDATE rate_limits SET requests = $2, tokens = $3, cost = $4, at = $5 "
                "WHERE key = $1",
                key,
                allowance.requests,
                allowance.tokens,
                allowance.cost,
                allowance.at,
            )
        return result
