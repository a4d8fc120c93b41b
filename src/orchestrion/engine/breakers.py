"""Circuit breakers, shared by all runs of a runtime, behind a small protocol so
that a store can share them across workers (PostgreSQL's: `stores._pg_breakers`).

Written here rather than taken from purgatory: purgatory counts consecutive
failures rather than failures within a window, lets every call through while
half-open (no probe limit) and reads the wall clock, which tests cannot drive.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from orchestrion._json import JSON
from orchestrion.errors import BreakerOpen
from orchestrion.policy import Breaker

State = Literal["closed", "open", "half-open"]
Transition = tuple[State, State]
"""(old state, new state)."""


@dataclass(frozen=True, slots=True)
class Permit:
    """A call let through by a breaker; hand it back with the call's outcome."""

    name: str
    probe: bool
    """Let through while half-open, as one of its probe calls."""
    transition: Transition | None = None
    """The state change letting it through caused (open -> half-open), if any."""
    round: int = 0
    """Which opening of the circuit a probe belongs to: a probe answering after
    the circuit opened again says nothing about the new round."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """One breaker as `Runtime.breakers()` shows it."""

    name: str
    state: State
    failures: int
    """Transient failures counted in the current window."""
    probe_in: float
    """Seconds until an open circuit lets a probe through; 0 otherwise."""
    config: Breaker

    def to_json(self) -> dict[str, JSON]:
        return {
            "name": self.name,
            "state": self.state,
            "failures": self.failures,
            "probe_in": round(self.probe_in, 3),
        }


class Breakers(Protocol):
    """Where breaker state lives. `acquire` raises `BreakerOpen` or lets the call
    through; `release` reports its outcome: True succeeded, False failed
    transiently, None neither (a client error, a cancellation)."""

    async def acquire(self, name: str, config: Breaker) -> Permit: ...

    async def release(self, permit: Permit, outcome: bool | None) -> Transition | None: ...

    async def states(self) -> list[BreakerState]: ...


class Circuit:
    """One breaker's state, and the rules that change it: shared by every place the
    state lives (this process: `MemoryBreakers`; a store, for all workers)."""

    __slots__ = (
        "admitted",
        "config",
        "failures",
        "opened_at",
        "reopened",
        "round",
        "state",
        "successes",
    )

    def __init__(self, config: Breaker) -> None:
        self.config = config
        self.state: State = "closed"
        self.failures: deque[float] = deque()
        """When each transient failure of the current window happened."""
        self.opened_at = 0.0
        self.round = 0
        """Incremented each time the circuit opens."""
        self.reopened = False
        """Opened by a failed probe rather than by `failures` failures."""
        self.admitted = 0
        """Probe calls let through in this half-open round (a neutral one gives its slot back)."""
        self.successes = 0

    def admit(self, name: str, now: float) -> Permit:
        """Let a call through, or raise `BreakerOpen`."""
        if self.state == "closed":
            return Permit(name, False)
        transition: Transition | None = None
        if self.state == "open":
            left = self.opened_at + self.config.cooldown - now
            if left > 0:
                raise self._open(name, left)
            self.state, self.admitted, self.successes = "half-open", 0, 0
            transition = ("open", "half-open")
        if self.admitted >= self.config.probes:
            raise self._open(name, 0.0)
        self.admitted += 1
        return Permit(name, True, transition, self.round)

    def settle(self, permit: Permit, outcome: bool | None, now: float) -> Transition | None:
        """Count the outcome of a call `admit` let through."""
        if permit.probe:
            if self.state != "half-open" or permit.round != self.round:
                return None  # a probe of an earlier round
            if outcome is False:
                return self._trip(now, "half-open")
            if outcome is None:
                self.admitted -= 1  # no verdict: another call may probe instead
                return None
            self.successes += 1
            if self.successes >= self.config.probes:
                self.state = "closed"
                self.failures.clear()
                return ("half-open", "closed")
            return None
        if outcome is not False or self.state != "closed":
            return None  # a late answer from before the circuit opened changes nothing
        failures = self.failures
        failures.append(now)
        while failures[0] <= now - self.config.window:
            failures.popleft()
        if len(failures) >= self.config.failures:
            return self._trip(now, "closed")
        return None

    def shown(self, name: str, now: float) -> BreakerState:
        c = self.config
        return BreakerState(
            name,
            self.state,
            sum(1 for t in self.failures if t > now - c.window),
            max(0.0, self.opened_at + c.cooldown - now) if self.state == "open" else 0.0,
            c,
        )

    def _trip(self, now: float, old: State) -> Transition:
        self.state, self.opened_at = "open", now
        self.round += 1
        self.reopened = old == "half-open"
        self.failures.clear()
        return (old, "open")

    def _open(self, name: str, left: float) -> BreakerOpen:
        c = self.config
        if left <= 0:
            why = f"half-open, and the {c.probes} probe call(s) of this round are taken"
        elif self.reopened:
            why = (
                f"open again after a failed probe call; the next probe goes through in {left:.1f} s"
            )
        else:
            why = (
                f"open after {c.failures} transient failures within {c.window:g} s; "
                f"a probe call goes through in {left:.1f} s"
            )
        advice = "" if name.startswith("tool:") else " Add a fallback to the policy, or wait."
        return BreakerOpen(
            f"The circuit for {name} is {why}. The call was not sent.{advice}",
            name=name,
            probe_in=max(left, 0.0),
        )


def breakers_for(store: object, given: Breakers | None) -> Breakers:
    """`given`, else the store's own (`store.breakers()`, shared by every worker on
    it), else breakers in this process."""
    if given is not None:
        return given
    shared = getattr(store, "breakers", None)
    return shared() if callable(shared) else MemoryBreakers()


class MemoryBreakers:
    """Breakers in this process. `clock` (monotonic seconds) can be driven by tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._circuits: dict[str, Circuit] = {}

    async def acquire(self, name: str, config: Breaker) -> Permit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = Circuit(config)
        return circuit.admit(name, self._clock())

    async def release(self, permit: Permit, outcome: bool | None) -> Transition | None:
        return self._circuits[permit.name].settle(permit, outcome, self._clock())

    async def states(self) -> list[BreakerState]:
        now = self._clock()
        return [c.shown(name, now) for name, c in sorted(self._circuits.items())]
