"""Fault injection: models and tools that fail the way real ones do, on a script
or at a seeded rate, to test policies, fallbacks and recovery.

    faults = Faults.rate(0.2, seed=7)            # or Faults.script([ServerError(503), None])
    model = FaultyModel(FunctionModel(answer), faults)
    pay = faulty_tool(pay, Faults.script([ConnectionReset()]))

A model fault raises what a provider adapter raises (`ModelError` with the HTTP
status, `retry_after` and `transient`); a tool fault raises what a client library
would (`TimeoutError`, `ConnectionResetError`, an error with a `status_code`,
`RetryLater`). Every fault says "(injected)" in its message.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from orchestrion.errors import ModelError, RetryLater, UserError
from orchestrion.messages import ModelRequest, ModelResponse, StreamItem, ToolCall
from orchestrion.models.base import Model, stream_of
from orchestrion.tools.tool import Tool


@dataclass(frozen=True, slots=True)
class Latency:
    """The call succeeds after `seconds` more."""

    seconds: float = 0.05


@dataclass(frozen=True, slots=True)
class Hang:
    """The call never answers: only a timeout (a policy's, a branch's) ends it."""


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The client gives up waiting: a timeout error at once."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """HTTP 429 with a Retry-After of `retry_after` seconds."""

    retry_after: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerError:
    """An HTTP 5xx (or any `status`) answer."""

    status: int = 503


@dataclass(frozen=True, slots=True)
class ConnectionReset:
    """The connection drops before an answer."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """An answer that cannot be used. A model's tool call gets truncated JSON
    arguments (its text, if it calls no tool, becomes an unparseable body); a
    tool returns a value that is not JSON."""


Fault: TypeAlias = (
    Latency | Hang | TimedOut | RateLimited | ServerError | ConnectionReset | Malformed
)

DEFAULT_KINDS: tuple[Fault, ...] = (
    Latency(0.005),
    TimedOut(),
    RateLimited(0.01),
    ServerError(503),
    ConnectionReset(),
    Malformed(),
)
"""What `Faults.rate` injects unless told otherwise (no `Hang`: it needs a timeout)."""


class Faults:
    """Which call gets which fault: `script` (in call order) or `rate` (at random,
    seeded). `injected` lists what was injected, in order."""

    def __init__(self, pick: Callable[[], Fault | None]) -> None:
        self._pick = pick
        self.calls = 0
        self.injected: list[Fault] = []

    @classmethod
    def script(cls, faults: Iterable[Fault | None]) -> Faults:
        """The n-th call gets the n-th fault (None: no fault); calls after the script none."""
        queue: deque[Fault | None] = deque(faults)
        return cls(lambda: queue.popleft() if queue else None)

    @classmethod
    def rate(
        cls, rate: float, *, seed: int | None = 0, kinds: Sequence[Fault] = DEFAULT_KINDS
    ) -> Faults:
        """Each call gets a fault with probability `rate`, one of `kinds` at random."""
        if not 0 <= rate <= 1 or not kinds:
            raise UserError(f"Faults.rate({rate}): rate must be in [0, 1], with kinds to inject.")
        rng = random.Random(seed)
        return cls(lambda: rng.choice(kinds) if rng.random() < rate else None)

    def next(self) -> Fault | None:
        self.calls += 1
        fault = self._pick()
        if fault is not None:
            self.injected.append(fault)
        return fault


class ServiceError(Exception):
    """An HTTP error answer, as a tool's client library raises it."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class FaultyModel:
    """`model`, failing as `faults` says. Its name is the model's, so breakers and
    prices treat it as that model."""

    def __init__(self, model: Model, faults: Faults) -> None:
        self.model = model
        self.faults = faults

    @property
    def name(self) -> str:
        return self.model.name

    async def request(self, request: ModelRequest) -> ModelResponse:
        fault = self.faults.next()
        name = self.model.name
        match fault:
            case None:
                return await self.model.request(request)
            case Latency(seconds=seconds):
                await asyncio.sleep(seconds)
                return await self.model.request(request)
            case Hang():
                await asyncio.Event().wait()
            case TimedOut():
                raise ModelError(f"{name}: request timed out (injected)", transient=True)
            case RateLimited(retry_after=wait):
                raise ModelError(
                    f"{name}: HTTP 429 Too Many Requests (injected)",
                    status_code=429,
                    retry_after=wait,
                    transient=True,
                )
            case ServerError(status=status):
                raise ModelError(
                    f"{name}: HTTP {status} (injected)",
                    status_code=status,
                    transient=status >= 500 or status in (408, 409, 429),
                )
            case ConnectionReset():
                raise ModelError(f"{name}: connection reset by peer (injected)", transient=True)
            case Malformed():
                return _malformed(name, await self.model.request(request))
        raise AssertionError(f"unknown fault {fault!r}")

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        async for item in stream_of(await self.request(request)):
            yield item


def _malformed(name: str, response: ModelResponse) -> ModelResponse:
    if not response.tool_calls:
        raise ModelError(
            f"{name}: the response body is not valid JSON (injected): "
            f"{(response.text or '')[:20]!r}...",
            transient=True,
        )
    first, *rest = response.tool_calls
    # Half the arguments, or "{" when there is no half to cut: never valid JSON.
    cut = first.arguments[: len(first.arguments) // 2]
    broken = ToolCall(first.id, first.name, cut if len(cut) > 1 else "{")
    return replace(response, tool_calls=(broken, *rest))


def faulty_tool(tool: Tool | Callable[..., Any], faults: Faults) -> Tool:
    """A copy of `tool` whose calls fail as `faults` says (its schema, effect,
    approval and policy unchanged)."""
    tool = tool if isinstance(tool, Tool) else Tool(function=tool)
    fn = tool.function

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        fault = faults.next()
        match fault:
            case Latency(seconds=seconds):
                await asyncio.sleep(seconds)
            case Hang():
                await asyncio.Event().wait()
            case TimedOut():
                raise TimeoutError(f"{tool.name}: read timed out (injected)")
            case RateLimited(retry_after=wait):
                raise RetryLater(f"{tool.name}: HTTP 429 (injected)", retry_after=wait)
            case ServerError(status=status):
                raise ServiceError(f"{tool.name}: HTTP {status} (injected)", status)
            case ConnectionReset():
                raise ConnectionResetError(f"{tool.name}: connection reset by peer (injected)")
            case Malformed():
                return _NotJSON()
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    return replace(tool, function=call)


class _NotJSON:
    def __repr__(self) -> str:
        return "<malformed result (injected)>"
