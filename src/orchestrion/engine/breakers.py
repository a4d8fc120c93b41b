"""Circuit breakers, shared by all runs of a runtime, behind a small protocol so
that a store can share them across workers later.

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


class _Circuit:
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
        self.opened_at = 0.0
        self.round = 0
        """Incremented each time the circuit opens."""
        self.reopened = False
        """Opened by a failed probe rather than by `failures` failures."""
        self.admitted = 0
        """Probe calls let through in this half-open round (a neutral one gives its slot back)."""
        self.successes = 0


class MemoryBreakers:
    """Breakers in this process. `clock` (monotonic seconds) can be driven by tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    async def acquire(self, name: str, config: Breaker) -> Permit:
        circuit = self._circuits.get(name)
        if circuit is None:
            circuit = self._circuits[name] = _Circuit(config)
        if circuit.state == "closed":
            return Permit(name, False)
        transition: Transition | None = None
        if circuit.state == "open":
            left = circuit.opened_at + circuit.config.cooldown - self._clock()
            if left > 0:
                raise self._open(name, circuit, left)
            circuit.state, circuit.admitted, circuit.successes = "half-open", 0, 0
            transition = ("open", "half-open")
        if circuit.admitted >= circuit.config.probes:
            raise self._open(name, circuit, 0.0)
        circuit.admitted += 1
        return Permit(name, True, transition, circuit.round)

    async def release(self, permit: Permit, outcome: bool | None) -> Transition | None:
        circuit = self._circuits[permit.name]
        now = self._clock()
        if permit.probe:
            if circuit.state != "half-open" or permit.round != circuit.round:
                return None  # a probe of an earlier round
            if outcome is False:
                return self._trip(circuit, now, "half-open")
            if outcome is None:
                circuit.admitted -= 1  # no verdict: another call may probe instead
                return None
            circuit.successes += 1
            if circuit.successes >= circuit.config.probes:
                circuit.state = "closed"
                circuit.failures.clear()
                return ("half-open", "closed")
            return None
        if outcome is not False or circuit.state != "closed":
            return None  # a late answer from before the circuit opened changes nothing
        failures = circuit.failures
        failures.append(now)
        while failures[0] <= now - circuit.config.window:
            failures.popleft()
        if len(failures) >= circuit.config.failures:
            return self._trip(circuit, now, "closed")
        return None

    async def states(self) -> list[BreakerState]:
        now = self._clock()
        return [
            BreakerState(
                name,
                c.state,
                sum(1 for t in c.failures if t > now - c.config.window),
                max(0.0, c.opened_at + c.config.cooldown - now) if c.state == "open" else 0.0,
                c.config,
            )
            for name, c in sorted(self._circuits.items())
        ]

    @staticmethod
    def _trip(circuit: _Circuit, now: float, old: State) -> Transition:
        circuit.state, circuit.opened_at = "open", now
        circuit.round += 1
        circuit.reopened = old == "half-open"
        circuit.failures.clear()
        return (old, "open")

    @staticmethod
    def _open(name: str, circuit: _Circuit, left: float) -> BreakerOpen:
        c = circuit.config
        if left <= 0:
            why = f"half-open, and the {c.probes} probe call(s) of this round are taken"
        elif circuit.reopened:
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
