"""Rate limits of model calls (`policy.RateLimit`), shared by all runs of a runtime
behind a small protocol, so that a store can share them across workers
(PostgreSQL's: `stores._pg_limits`): a fleet draws from one allowance.

An allowance is a leaky bucket per limited quantity (requests, tokens, cost):
what was used drains at `limit / per` a second. A call may start when one more
request fits and the tokens and cost used are below their limits; tokens and
cost are added once its response tells them. Written here rather than taken from
aiolimiter or limits: the state must be plain numbers a store can hold in a
row, and a wait is the engine's to journal, not the library's to sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from orchestrion.policy import RateLimit


@dataclass(slots=True)
class Allowance:
    """What one rate limit's key has used, as of `at` (epoch or monotonic seconds)."""

    requests: float = 0.0
    tokens: float = 0.0
    cost: float = 0.0
    at: float = 0.0

    def drain(self, limit: RateLimit, now: float) -> None:
        """Let what was used drain at the limits' rates up to `now`."""
        elapsed = max(now - self.at, 0.0)
        self.at = now
        if not elapsed:
            return
        share = elapsed / limit.per
        if limit.requests is not None:
            self.requests = max(self.requests - limit.requests * share, 0.0)
        if limit.tokens is not None:
            self.tokens = max(self.tokens - limit.tokens * share, 0.0)
        if limit.cost:
            self.cost = max(self.cost - limit.cost * share, 0.0)

    def take(self, limit: RateLimit, now: float) -> float:
        """Take one request if a call may start now (0.0); else the seconds until
        one may, taking nothing."""
        self.drain(limit, now)
        wait = 0.0
        if limit.requests is not None and self.requests + 1 > limit.requests:
            wait = (self.requests + 1 - limit.requests) * limit.per / limit.requests
        if limit.tokens is not None and self.tokens >= limit.tokens:
            wait = max(wait, (self.tokens - limit.tokens) * limit.per / limit.tokens + 0.001)
        if limit.cost and self.cost >= limit.cost:
            wait = max(wait, (self.cost - limit.cost) * limit.per / limit.cost + 0.001)
        if wait <= 0:
            self.requests += 1
        return wait

    def spend(self, limit: RateLimit, tokens: int, cost: float | None, now: float) -> None:
        """Count a response's tokens and cost."""
        self.drain(limit, now)
        self.tokens += tokens
        self.cost += cost or 0.0


def key_of(model: str, limit: RateLimit) -> str:
    """The allowance a call of `model` draws from."""
    return limit.key or model


class Limits(Protocol):
    """Where allowances live. `take` returns 0.0 and counts the call, or the seconds
    to wait before asking again; `spend` counts a response's tokens and cost."""

    async def take(self, key: str, limit: RateLimit) -> float: ...

    async def spend(self, key: str, limit: RateLimit, tokens: int, cost: float | None) -> None: ...


class MemoryLimits:
    """Allowances in this process. `clock` (seconds) can be driven by tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._allowances: dict[str, Allowance] = {}

    def _allowance(self, key: str) -> Allowance:
        allowance = self._allowances.get(key)
        if allowance is None:
            allowance = self._allowances[key] = Allowance(at=self._clock())
        return allowance

    async def take(self, key: str, limit: RateLimit) -> float:
        return self._allowance(key).take(limit, self._clock())

    async def spend(self, key: str, limit: RateLimit, tokens: int, cost: float | None) -> None:
        self._allowance(key).spend(limit, tokens, cost, self._clock())


def limits_for(store: object, given: Limits | None) -> Limits:
    """`given`, else the store's own (`store.rate_limits()`, shared by every worker
    on it), else allowances in this process."""
    if given is not None:
        return given
    shared = getattr(store, "rate_limits", None)
    return shared() if callable(shared) else MemoryLimits()
