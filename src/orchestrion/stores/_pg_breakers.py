"""Circuit breakers whose state lives in PostgreSQL: a circuit opened by one worker
short-circuits the calls of every worker on the database.

Each `acquire` and `release` reads the breaker's row under a row lock, applies the
same rules as `MemoryBreakers` (`engine.breakers.Circuit`) and writes it back, in
one transaction. Times are wall-clock (`time.time`): the workers' clocks must
agree to well within a breaker's cooldown and window.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from orchestrion.engine.breakers import BreakerState, Circuit, Permit, Transition
from orchestrion.errors import BreakerOpen
from orchestrion.policy import Breaker

if TYPE_CHECKING:
    from orchestrion.stores.postgres import PostgresStore

_COLUMNS = "state, failures, opened_at, round, reopened, admitted, successes"


class PostgresBreakers:
    """The `Breakers` of every runtime on one PostgreSQL store (`store.breakers()`)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._configs: dict[str, Breaker] = {}
        """Each breaker's configuration, from the policies of this process's calls."""

    async def acquire(self, name: str, config: Breaker) -> Permit:
        self._configs[name] = config
        permit: Permit = await self._change(name, config, lambda c, now: c.admit(name, now))
        return permit

    async def release(self, permit: Permit, outcome: bool | None) -> Transition | None:
        config = self._configs[permit.name]
        transition: Transition | None = await self._change(
            permit.name, config, lambda c, now: c.settle(permit, outcome, now)
        )
        return transition

    async def states(self) -> list[BreakerState]:
        pool = await self._store._ready()
        rows = await pool.fetch(f"SELECT name, {_COLUMNS} FROM breakers ORDER BY name")
        now = time.time()
        return [
            _circuit(self._configs[r["name"]], r).shown(r["name"], now)
            for r in rows
            if r["name"] in self._configs  # a breaker this process has no policy for
        ]

    async def _change(self, name: str, config: Breaker, change: Any) -> Any:
        """`change(circuit, now)` applied to the breaker's row, under its lock; a
        `BreakerOpen` it raises is raised once the row is saved."""
        pool = await self._store._ready()
        refused: BreakerOpen | None = None
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO breakers (name) VALUES ($1) ON CONFLICT (name) DO UPDATE "
                f"SET name = excluded.name RETURNING {_COLUMNS}",
                name,
            )
            circuit = _circuit(config, row)
            try:
                result = change(circuit, time.time())
            except BreakerOpen as exc:
                refused, result = exc, None
            await conn.execute(
                "UPDATE breakers SET state = $2, failures = $3, opened_at = $4, round = $5, "
                "reopened = $6, admitted = $7, successes = $8 WHERE name = $1",
                name,
                circuit.state,
                list(circuit.failures),
                circuit.opened_at,
                circuit.round,
                circuit.reopened,
                circuit.admitted,
                circuit.successes,
            )
        if refused is not None:
            raise refused
        return result


def _circuit(config: Breaker, row: Any) -> Circuit:
    circuit = Circuit(config)
    circuit.state = row["state"]
    circuit.failures = deque(row["failures"])
    circuit.opened_at = row["opened_at"]
    circuit.round = row["round"]
    circuit.reopened = row["reopened"]
    circuit.admitted = row["admitted"]
    circuit.successes = row["successes"]
    return circuit
