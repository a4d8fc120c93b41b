"""Resilience policies: how long a model or tool call may take, when to try it
again, when to stop calling a failing dependency, and what to use instead.

A `Policy` can sit on a model (`orchestrion.models.with_policy`), a tool, an agent
and the runtime. For each field the innermost one that is set wins: the model's
or tool's, then the agent's, then the runtime's, then the defaults (model calls:
60 s timeout and `Retry()`; tool calls: the tool's own `timeout`, no retry).
`False` switches a field off where an outer policy set it.

Retries and fallbacks are journaled (see `orchestrion.engine.resilience`), which is
why the retry loop is written here rather than taken from tenacity or stamina:
their loops own the attempts and the sleeps, while ours must resume half-way
through from the journal.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Literal, Protocol

from orchestrion.errors import ModelError, RetryLater, UserError

MODEL_TIMEOUT = 60.0
"""Seconds a model call may take unless a policy says otherwise."""


class Named(Protocol):
    """Anything with a name: a `Model` or an `Agent` in a fallback chain."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class Retry:
    """Try a call again after a transient failure, waiting longer each time.

    Transient: timeouts, connection errors, HTTP 408/409/429/5xx (see
    `is_transient`); never a validation, authentication or other client error.
    """

    attempts: int = 3
    """Attempts in all, the first one included."""
    initial: float = 0.5
    """Seconds before the second attempt; each later wait is `multiplier` times longer."""
    multiplier: float = 2.0
    max_wait: float = 30.0
    """The longest single wait. A Retry-After asking for more gives up on the call
    (and moves to the fallback, if any) instead of waiting."""
    max_time: float = 120.0
    """No attempt starts later than this many seconds after the first one started."""
    jitter: float = 1.0
    """The share of each wait drawn at random: 1.0 waits uniformly between 0 and
    the backoff (full jitter, so that many clients do not retry in step); 0 waits
    exactly the backoff."""

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise UserError(f"Retry(attempts={self.attempts!r}): attempts must be an int >= 1.")
        _seconds(self, initial=self.initial, max_wait=self.max_wait, max_time=self.max_time)
        _seconds(self, multiplier=self.multiplier, jitter=self.jitter)
        if self.multiplier < 1:
            raise UserError(f"{self!r}: multiplier must be >= 1.")
        if not 0 <= self.jitter <= 1:
            raise UserError(f"Retry(jitter={self.jitter}): jitter must be between 0 and 1.")

    def wait(
        self, attempt: int, retry_after: float | None, elapsed: float, rand: float
    ) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based), or None
        to give up. `elapsed`: seconds since the first attempt started; `rand`: a
        uniform draw in [0, 1)."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None:
            if retry_after > self.max_wait:
                return None
            wait = retry_after  # the server said when: not sooner, and no jitter
        else:
            try:
                backoff = min(self.max_wait, self.initial * self.multiplier ** (attempt - 1))
            except OverflowError:
                backoff = self.max_wait
            wait = backoff * (1 - self.jitter * rand)
        return wait if elapsed + wait <= self.max_time else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Breaker:
    """A circuit breaker: after `failures` transient failures within `window`
    seconds, calls fail at once (no request leaves the process) for `cooldown`
    seconds; then `probes` calls are let through, and the circuit closes when
    they succeed or opens again when one fails.

    It is keyed by model name (`openai:gpt-4.1-mini`) or `tool:<name>` and shared
    by all runs of a runtime; the first policy to use a key sets its numbers."""

    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0
    probes: int = 1

    def __post_init__(self) -> None:
        for name in ("failures", "probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{self!r}: {name} must be an int >= 1.")
        _seconds(self, window=self.window, cooldown=self.cooldown)
        if self.window <= 0:
            raise UserError(f"{self!r}: window must be > 0 seconds.")


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """At most `requests` calls, `tokens` tokens (input and output) and `cost` USD
    per `per` seconds for a model, drawn from an allowance that refills steadily and
    is shared by every run of a runtime, and by every worker on a PostgreSQL store.

    A call over the limit waits (journaled, like a retry's wait) until the allowance
    has room; a wait longer than `max_wait` stops the run instead
    (`RateLimitReached`: status `stopped`, resumable later). Tokens and cost are
    counted once a response tells them, so one call may take the allowance below
    zero: the calls after it wait longer."""

    requests: int | None = None
    tokens: int | None = None
    cost: float | None = None
    per: float = 60.0
    max_wait: float = 60.0
    key: str | None = None
    """The allowance drawn from: the model's own by default; give several models'
    policies one key for an allowance they share (a fleet's spend per day)."""

    def __post_init__(self) -> None:
        for name in ("requests", "tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise UserError(f"RateLimit({name}={value!r}): give a whole number >= 1, or None.")
        if self.cost is not None:
            _seconds(self, cost=self.cost)
        _seconds(self, per=self.per, max_wait=self.max_wait)
        if self.per <= 0:
            raise UserError(f"RateLimit(per={self.per!r}): give the seconds of the period, > 0.")
        if self.requests is None and self.tokens is None and not self.cost:
            raise UserError("RateLimit(): give requests=, tokens= and/or cost= per period.")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise UserError(f"RateLimit(key={self.key!r}): give a non-empty name, or None.")


@dataclass(frozen=True, kw_only=True, slots=True)
class Policy:
    """Timeout, retry, breaker, rate limit and fallback for the calls of whatever it sits on.
    None inherits from the enclosing policy; False switches the field off."""

    timeout: float | Literal[False] | None = None
    """Seconds one attempt may take."""
    retry: Retry | Literal[False] | None = None
    breaker: Breaker | Literal[False] | None = None
    rate_limit: RateLimit | Literal[False] | None = None
    """For model calls (a tool's policy ignores it)."""
    fallback: Sequence[str | Named] | None = None
    """On a model or runtime policy: models (`Model` or name) tried in order when
    the model fails. On an agent: models for its calls and/or agents that take
    over its input when it fails. `()` switches an inherited fallback off."""

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout is not False:
            _seconds(self, timeout=self.timeout)
            if self.timeout <= 0:
                raise UserError(f"Policy(timeout={self.timeout}): a timeout must be > 0 seconds.")
        for name, kind in (("retry", Retry), ("breaker", Breaker), ("rate_limit", RateLimit)):
            value = getattr(self, name)
            if value is not None and value is not False and not isinstance(value, kind):
                raise UserError(
                    f"Policy({name}={value!r}): give a {kind.__name__}(...), False to switch "
                    "it off, or None to inherit it."
                )
        if isinstance(self.fallback, str) or (
            self.fallback is not None and not isinstance(self.fallback, Sequence)
        ):
            raise UserError(
                f"Policy(fallback={self.fallback!r}): give a list, e.g. fallback=[{self.fallback!r}]."
            )
        if self.fallback is not None:
            object.__setattr__(self, "fallback", tuple(self.fallback))

    def settings(self) -> Settings:
        """What this policy, resolved, gives a call: None for each field that is off."""
        return Settings(
            timeout=self.timeout or None,
            retry=self.retry or None,
            breaker=self.breaker or None,
            rate_limit=self.rate_limit or None,
        )

    def over(self, outer: Policy | None) -> Policy:
        """This policy with each unset field taken from `outer`."""
        if outer is None:
            return self
        values = {}
        for f in fields(self):
            mine = getattr(self, f.name)
            values[f.name] = getattr(outer, f.name) if mine is None else mine
        return Policy(**values)


def _seconds(owner: object, **values: object) -> None:
    """Numbers of a policy must be finite numbers >= 0 (not NaN, not a bool)."""
    for name, value in values.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise UserError(f"{type(owner).__name__}({name}={value!r}): give a finite number >= 0.")


@dataclass(frozen=True, slots=True)
class Settings:
    """A resolved policy, as the engine applies it: None means off."""

    timeout: float | None = None
    retry: Retry | None = None
    breaker: Breaker | None = None
    rate_limit: RateLimit | None = None


_TRANSIENT_STATUS = frozenset({408, 409, 429})
"""With 5xx: the providers' SDKs' own retry rule (see `models._http.transient`)."""
_NETWORK_ERRORS = frozenset({"TransportError", "TimeoutException", "ClientConnectionError"})
"""Base classes of httpx's and aiohttp's network failures, matched by name so that
neither library is imported here."""


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: a `ModelError` marked transient,
    `RetryLater`, a timeout or connection error, an HTTP 408/409/429/5xx
    (an exception with `status_code`, or a `response` carrying one), or an httpx or
    aiohttp network error. Validation and authentication errors are not."""
    if isinstance(exc, ModelError):
        return exc.transient
    if isinstance(exc, RetryLater | TimeoutError | ConnectionError):
        return True
    status = status_code(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    return any(c.__name__ in _NETWORK_ERRORS for c in type(exc).__mro__)


def retry_after(exc: BaseException) -> float | None:
    """The seconds the failed call's server asked to wait (Retry-After), if any:
    the exception's `retry_after`, or the headers of its `response` (or its own)."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _wait(float(value))
    for owner in (getattr(exc, "response", None), exc):
        headers = getattr(owner, "headers", None)
        if isinstance(headers, Mapping):
            return retry_after_header(headers)
    return None


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date."""
    try:
        return _wait(float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError, TypeError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return _wait(float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _wait(seconds: float) -> float | None:
    return max(0.0, seconds) if math.isfinite(seconds) else None


def status_code(exc: BaseException) -> int | None:
    """The HTTP status a failed call's exception carries, if any: its or its
    `response`'s `status_code` (httpx, requests) or `status` (aiohttp)."""
    for owner in (exc, getattr(exc, "response", None)):
        for name in ("status_code", "status"):
            status = getattr(owner, name, None)
            if isinstance(status, int) and not isinstance(status, bool):
                return status
    return None
