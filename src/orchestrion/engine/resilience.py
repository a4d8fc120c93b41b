"""One journaled attempt loop for every call made under a policy: model requests
and tool calls alike.

The loop is layered, innermost first:

- **rate limit**: an attempt at a model waits, journaled, until its `RateLimit`'s
  allowance has room (or stops the run if that is longer than `max_wait`);
- **timeout**: one call within its target's `timeout`;
- **breaker**: the call through its target's circuit, which refuses it at once
  while open and counts its outcome; every transition is a `BreakerChanged` event;
- **retry**: a failed attempt is journaled (`AttemptFailed`) and, when it is
  transient and the policy's `Retry` allows, waited for (never past the run's
  budget) and made again;
- **fallback**: when a target's retries are spent, the next target of the chain
  (a model's fallback models) is tried.

A resume goes on after the last journaled attempt: the attempts made are not made
again, and only what is left of a wait is waited. What differs between models
and tools is supplied by a `CallPath` (`engine.model_calls`, `engine.tool_calls`):
how to call a target, how to classify its failure, what to journal, and what to
do once every target has failed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

from orchestrion.engine.deadline import Deadline
from orchestrion.engine.journal import Entry
from orchestrion.engine.rate_limits import key_of
from orchestrion.engine.records import AttemptFailed, decode
from orchestrion.errors import BreakerOpen, RateLimited, RateLimitReached, describe
from orchestrion.policy import Breaker, RateLimit, Settings, retry_after

if TYPE_CHECKING:
    from orchestrion.engine.execution import Execution

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Target(NamedTuple):
    """One thing a call can be made to: a model of a fallback chain, or a tool (a
    tuple: one is made per tool call)."""

    name: str
    """Its breaker's key and its name in events: a model's name, or `tool:<name>`."""
    model: str | None
    """The model it is, named in its journaled attempts and priced by the budget
    before each attempt after the step's first one and before a retry's wait; None
    for a tool."""
    settings: Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A failed attempt, classified by its path."""

    error: Exception
    """What failed, as the path journals it and names it in events."""
    transient: bool = False
    """Trying again later may succeed; the failure counts against the breaker."""
    expired: bool = False
    """The attempt's own timeout ran out (the call may still be running)."""
    final: bool = False
    """Not a failure of the target but of the run (a test fake's verdict, a request
    forbidden in tests): journaled as the step's failure and raised as it is, with
    no retry and no fallback."""
    opened: bool = False
    """This attempt's failure opened the target's circuit."""


class CallPath(Protocol[T_co]):
    """What one kind of step supplies to the attempt loop."""

    @property
    def kind(self) -> str:
        """The step kind of its journal entries and events: `model` or `tool`."""
        ...

    @property
    def targets(self) -> Sequence[Target]:
        """The chain: the first target, then its fallbacks."""
        ...

    @property
    def durable(self) -> bool:
        """Whether its failed attempts are committed before the loop goes on."""
        ...

    @property
    def before(self) -> Callable[[Execution, str], Awaitable[None]] | None:
        """What must happen before each attempt (a write's `started` entry), if anything."""
        ...

    position: int
    """Set by the loop when it returns: the chain position of the target that gave
    the value (the path is made per step, so it carries the outcome's details
    rather than a record made for them on the hot path)."""
    started: float
    """Set by the loop when it returns: when the attempt that gave the value started."""

    def call(self, ex: Execution, key: str, index: int) -> Awaitable[T_co]:
        """One call of `targets[index]`, with no policy around it."""
        ...

    def failure(self, exc: Exception, target: Target, *, expired: bool) -> Failure | T_co:
        """`exc`, raised by a call of `target`, as a failure; or what the step answers
        with instead (a tool's `ModelRetry`: a call that worked, with an error for the
        model); or raise it again if it is the run's control flow rather than a
        failure (an interrupt, a halt)."""
        ...

    def may_retry(self, failure: Failure) -> bool:
        """Whether this transient failure may be retried under the policy's `Retry`."""
        ...

    def attempt_error(self, failure: Failure) -> Exception:
        """The error a failed attempt that the loop goes on from is journaled with."""
        ...

    def gave_up(
        self, ex: Execution, key: str, index: int, attempt: int, failure: Failure, started: float
    ) -> Awaitable[T_co]:
        """Every target failed (the last with `failure`): journal it and raise, or
        return what the step answers instead."""
        ...


async def attempt_loop(ex: Execution, key: str, path: CallPath[T]) -> T:
    """The first value a target of `path`'s chain gives, within its policy (which
    target gave it, and when: `path.position`, `path.started`)."""
    targets = path.targets
    index = attempt = 0
    first = 0.0
    if ex.log.failures and (failures := ex.log.failures.get(key)):
        point = resume_point(failures, targets)
        if point is not None:
            index, attempt = point.index, point.attempt
            first = await resume_wait(point.due, point.elapsed)
    while True:
        target = targets[index]
        attempt += 1
        started = time.time()
        if attempt == 1:
            first = started
        if path.before is not None:
            await path.before(ex, key)
        if target.model is not None and (attempt > 1 or index > 0):
            ex.accounts.check_budget(target.model)  # not another model call past the budget
        settings = target.settings
        if settings.rate_limit is not None and target.model is not None:
            await _within_rate(ex, key, path, target, attempt, settings.rate_limit)
        if settings.breaker is not None:
            outcome = await _guarded(ex, key, path, index, settings.breaker)
        elif settings.timeout is not None:
            outcome = await _timed(ex, key, path, index)
        else:  # no policy around the call (a plain tool's): `_timed` without a deadline
            try:
                outcome = await path.call(ex, key, index)
            except Exception as exc:
                outcome = path.failure(exc, target, expired=False)
        if not isinstance(outcome, Failure):
            path.position, path.started = index, started
            return outcome
        if outcome.final:
            await ex.failed(key, path.kind, outcome.error, started, durable=path.durable)
            raise outcome.error
        wait = _wait(path, target.settings, outcome, attempt, time.time() - first)
        following = index + 1 if wait is None and index + 1 < len(targets) else None
        if wait is None and following is None:
            value = await path.gave_up(ex, key, index, attempt, outcome, started)
            path.position, path.started = index, started
            return value
        fallback = None if following is None else targets[following].model
        await journal_attempt(ex, key, path, index, attempt, outcome, started, wait, fallback)
        if wait is not None:
            ex.accounts.check_budget(target.model, ahead=wait)  # not a wait past the budget
            ex.events.retrying(key, path.kind, target.name, attempt, outcome.error, wait)
            await asyncio.sleep(wait)
        else:
            assert following is not None
            ex.events.fallback_used(key, target.name, targets[following].name, outcome.error)
            index, attempt = following, 0


async def journal_attempt(
    ex: Execution,
    key: str,
    path: CallPath[object],
    index: int,
    attempt: int,
    failure: Failure,
    started: float,
    retry_in: float | None = None,
    fallback: str | None = None,
) -> None:
    """Journal a failed attempt at `path.targets[index]` and what comes next: a retry
    in `retry_in` seconds, the `fallback` model, or neither (the step failed)."""
    failed = AttemptFailed(
        error=describe(path.attempt_error(failure)),
        attempt=attempt,
        model=path.targets[index].model,
        retry_in=None if retry_in is None else round(retry_in, 3),
        fallback=fallback,
        opened_circuit=failure.opened,
    )
    await ex.log.record(key, path.kind, failed, started, durable=path.durable)


async def _within_rate(
    ex: Execution, key: str, path: CallPath[T], target: Target, attempt: int, limit: RateLimit
) -> None:
    """Wait until `target`'s rate limit lets attempt `attempt` start; each wait is
    journaled as a retry's is (a resume waits what is left of it)."""
    assert target.model is not None
    name = key_of(target.model, limit)
    while (wait := await ex.env.limits.take(name, limit)) > 0:
        if wait > limit.max_wait:
            raise RateLimitReached(
                f"The rate limit of {name} ({_shown(limit)}) would make this call wait "
                f"{wait:.1f} s, more than its max_wait of {limit.max_wait:g} s: the run stops "
                "here. Resume it once the allowance has refilled, or raise the limit.",
                key=name,
                wait=wait,
            )
        ex.accounts.check_budget(target.model, ahead=wait)  # not a wait past the budget
        error = RateLimited(f"{name} is at its rate limit ({_shown(limit)}): waited {wait:.3f} s")
        waited = AttemptFailed(
            error=describe(error), attempt=attempt - 1, model=target.model, retry_in=round(wait, 3)
        )
        await ex.log.record(key, path.kind, waited, time.time(), durable=path.durable)
        ex.events.retrying(key, path.kind, target.name, attempt - 1, error, wait)
        await asyncio.sleep(wait)


def _shown(limit: RateLimit) -> str:
    parts = [
        f"{value:g} {what}"
        for what, value in (
            ("requests", limit.requests),
            ("tokens", limit.tokens),
            ("USD", limit.cost),
        )
        if value
    ]
    return f"{', '.join(parts)} per {limit.per:g} s"


def _wait(
    path: CallPath[T], settings: Settings, failure: Failure, attempt: int, elapsed: float
) -> float | None:
    """Seconds to wait before retrying after `failure`, or None for no retry."""
    retry = settings.retry
    if retry is None or not failure.transient or not path.may_retry(failure):
        return None
    return retry.wait(attempt, retry_after(failure.error), elapsed, random.random())


async def _guarded(
    ex: Execution, key: str, path: CallPath[T], index: int, breaker: Breaker
) -> T | Failure:
    """One attempt through its target's breaker: its value, or its failure."""
    target = path.targets[index]
    try:
        permit = await ex.env.breakers.acquire(target.name, breaker)
    except BreakerOpen as exc:
        return Failure(error=exc)  # not sent: nothing to count
    outcome: bool | None = None
    try:
        if permit.transition is not None:
            ex.events.breaker_changed(key, target.name, *permit.transition)
        result = await _timed(ex, key, path, index)
        # A success closes the circuit; a transient failure counts towards opening it;
        # any other failure (bad input, say) says nothing about the target's health.
        outcome = True if not isinstance(result, Failure) else (False if result.transient else None)
    finally:  # on cancellation and other errors too: a probe's slot is given back
        transition = await ex.env.breakers.release(permit, outcome)
        if transition is not None:
            ex.events.breaker_changed(key, target.name, *transition)
    if isinstance(result, Failure) and transition is not None and transition[1] == "open":
        return replace(result, opened=True)
    return result


async def _timed(ex: Execution, key: str, path: CallPath[T], index: int) -> T | Failure:
    """One call within its target's timeout: its value, or its failure as classified."""
    target = path.targets[index]
    timeout = target.settings.timeout
    try:
        if timeout is None:
            return await path.call(ex, key, index)
        with Deadline(timeout) as deadline:
            return await path.call(ex, key, index)
    except Exception as exc:
        expired = timeout is not None and isinstance(exc, TimeoutError) and deadline.expired
        return path.failure(exc, target, expired=expired)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumePoint:
    """Where a step's attempts go on after those journaled before a resume."""

    index: int
    """The chain position of the target to try."""
    attempt: int
    """Attempts already made at it."""
    due: float = 0.0
    """When the next attempt may start (0: at once)."""
    elapsed: float = 0.0
    """Seconds from the first attempt at that target to `due`, which count towards
    the retry's `max_time`."""


def resume_point(failures: list[Entry], targets: Sequence[Target]) -> ResumePoint | None:
    """Where to go on after a step's journaled failed attempts: at the target that
    was waiting for its retry, or at the fallback it gave way to; None (start over)
    after a failure for good, or when the journaled target is no longer in the chain."""
    last = decode(failures[-1])
    if not isinstance(last, AttemptFailed):
        return None
    models = [t.model for t in targets]
    if last.retry_in is not None and last.model in models:
        first = failures[-1]
        for entry in reversed(failures):  # back to the first attempt at this target
            earlier = decode(entry)
            if not isinstance(earlier, AttemptFailed) or earlier.model != last.model:
                break
            first = entry
            if earlier.attempt == 1:
                break
        due = failures[-1].ended_at + last.retry_in  # the wait counts towards max_time
        index = models.index(last.model)
        return ResumePoint(
            index=index, attempt=last.attempt, due=due, elapsed=due - first.started_at
        )
    if last.fallback is not None and last.fallback in models:
        return ResumePoint(index=models.index(last.fallback), attempt=0)
    return None


async def resume_wait(due: float, elapsed: float) -> float:
    """Wait what is left until `due`, a journaled retry's time; return when the
    first attempt counts as started, so that `max_time` goes on where it was."""
    if (left := due - time.time()) > 0:
        await asyncio.sleep(left)
    return time.time() - elapsed
