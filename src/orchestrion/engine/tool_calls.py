"""Tool calls under their policies: the tool path of the attempt loop
(`engine.resilience`), with the rules of write tools.

A write tool journals `started` before each attempt, so every attempt, and a
resume's, carries the same idempotency key. It is retried only when its own
policy has a `Retry`, and inherits no timeout: the agent's and runtime's
policies are written for reads. A write whose effect is unknown (cut off by its
timeout) fails the run with `WriteUncertain`, for a resume to make it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, NamedTuple

from orchestrion._json import clean_text, json_text
from orchestrion.agent import Agent
from orchestrion.engine.execution import Context, Execution, Suspended
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.records import WriteStarted, tool_returned
from orchestrion.engine.resilience import Failure, Target, attempt_loop
from orchestrion.errors import (
    AnswerError,
    BreakerOpen,
    DeterminismError,
    LeaseLost,
    RunHalted,
    ToolError,
    WriteUncertain,
)
from orchestrion.messages import ToolCall, ToolResult
from orchestrion.policy import Policy, Settings, is_transient
from orchestrion.redact import redact, redact_known
from orchestrion.tools.tool import ModelRetry, Tool

NO_SETTINGS = Settings()


def tool_settings(ex: Execution, agent: Agent[Any], tool: Tool) -> Settings:
    """The tool's policy over the agent's over the runtime's (a write tool takes
    only the breaker from the outer ones)."""
    own = tool.policy
    if tool.timeout is not None:
        own = Policy(timeout=tool.timeout) if own is None else replace(own, timeout=tool.timeout)
    runtime_policy = ex.env.policy
    outer = agent.policy.over(runtime_policy) if agent.policy is not None else runtime_policy
    if outer is not None and tool.effect == "write":
        outer = Policy(breaker=outer.breaker)
    policy = own.over(outer) if own is not None else outer
    return NO_SETTINGS if policy is None else policy.settings()


def execute(
    ex: Execution,
    agent: Agent[Any],
    key: str,
    tool: Tool,
    call: ToolCall,
    arguments: dict[str, Any],
    note: str = "",
) -> Awaitable[ToolResult]:
    """Run the tool; `note` prefixes what the model reads (e.g. that a human edited the
    call). (A plain function returning the call's coroutine: no frame more per call.)"""
    resumed = False
    write = tool.effect == "write"
    if write:
        previous = ex.log.replay.get(key)
        resumed = previous is not None and previous.status is StepStatus.STARTED
    targets = _target(tool.name, tool_settings(ex, agent, tool))
    path = (
        WriteCalls(tool, arguments, targets, resumed)
        if write
        else ToolCalls(tool, arguments, targets)
    )
    if ex.events.listening:
        ex.events.step_started(key, "tool")
    work = _executed(ex, key, path, call, note)
    tracing = ex.env.tracing
    return work if tracing is None else tracing.tool(ex.run_id, key, tool, call, resumed, work)


async def _executed(
    ex: Execution, key: str, path: ToolCalls, call: ToolCall, note: str
) -> ToolResult:
    try:
        value = await attempt_loop(ex, key, path)
    except asyncio.CancelledError:
        if path.write:  # cut off from outside (its branch's timeout), in a call or a retry's wait
            ex.log.cut_off(key)
        raise
    is_error = False
    if isinstance(value, Refused):
        value, is_error = value.message, True
    try:
        # What the model reads is what the journal holds (see `orchestrion._json`).
        content = clean_text(
            note + (value if isinstance(value, str) else json_text(value, "result"))
        )
    except TypeError as exc:
        how = f"returned a {type(value).__name__}, which is not JSON"
        raise await path.failed(ex, key, exc, path.started, how) from exc
    # What the model reads is what the journal keeps: an error's text (a `ModelRetry`
    # message, say) without any secret, a result without the secrets known as such.
    content = redact(content) if is_error else redact_known(content)
    returned = tool_returned(content, is_error)
    await ex.completed_as(key, "tool", returned, path.started, durable=path.write)
    return ToolResult(call.id, call.name, content, is_error)


_PLAIN: dict[str, tuple[Target]] = {}
"""The chain of each tool called with no policy (the usual case), made once."""


def _target(name: str, settings: Settings) -> tuple[Target]:
    if settings is not NO_SETTINGS:
        return (Target(f"tool:{name}", None, settings),)
    chain = _PLAIN.get(name)
    if chain is None:
        chain = _PLAIN[name] = (Target(f"tool:{name}", None, settings),)
    return chain


class Refused(NamedTuple):
    """What a tool call answers the model with instead of a value: the message of the
    tool's `ModelRetry`, or why the call did not work (it timed out, its circuit is open)."""

    message: str


_CONTROL = (Suspended, AnswerError, DeterminismError, RunHalted, LeaseLost)
"""Raised through a tool call by the run's own control flow and limits: not a
failure of the tool (a nested approval, a run that halts)."""


class ToolCalls:
    """The tool path of the attempt loop: one call of one tool, no fallback."""

    __slots__ = ("arguments", "position", "started", "targets", "tool")

    kind = "tool"
    write = durable = False
    before: Callable[[Execution, str], Awaitable[None]] | None = None

    def __init__(self, tool: Tool, arguments: dict[str, Any], targets: tuple[Target]) -> None:
        self.tool = tool
        self.arguments = arguments
        self.targets = targets
        self.position = 0
        self.started = 0.0

    def call(self, ex: Execution, key: str, index: int) -> Awaitable[Any]:
        return invoke(ex, key, self.tool, self.arguments)

    def failure(self, exc: Exception, target: Target, *, expired: bool) -> Failure | Refused:
        if isinstance(exc, ModelRetry):
            return Refused(str(exc))  # the tool worked, and asks the model to try again
        if isinstance(exc, _CONTROL):
            raise exc
        return Failure(error=exc, transient=is_transient(exc), expired=expired)

    def may_retry(self, failure: Failure) -> bool:
        # A synchronous tool cut off by its timeout may still be running in its
        # thread: a write is not called again beside it.
        return not (failure.expired and self.write and not self.tool.is_async)

    def attempt_error(self, failure: Failure) -> Exception:
        exc = failure.error
        error = ToolError(f"Tool {self.tool.name!r} failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    async def gave_up(
        self, ex: Execution, key: str, index: int, attempt: int, failure: Failure, started: float
    ) -> Refused:
        exc, name, timeout = failure.error, self.tool.name, self.targets[0].settings.timeout
        if isinstance(exc, BreakerOpen):
            return Refused(f"Tool {name!r} is unavailable: {exc}")
        if not failure.expired:
            raise await self.failed(ex, key, exc, started, "raised") from exc
        if not self.write:
            return Refused(f"Tool {name!r} timed out after {timeout} s.")
        # The effect may or may not have happened: fail the whole run (no pattern
        # may re-plan around it) so a resume re-executes with the same key.
        await self.failed(ex, key, exc, started, "timed out")
        raise WriteUncertain(
            f"Write tool {name!r} timed out after {timeout} s ({key}); whether its effect "
            "happened is unknown. Resume the run: the call is made again with the same "
            "idempotency key."
        ) from exc

    async def failed(
        self, ex: Execution, key: str, exc: BaseException, started: float, how: str
    ) -> ToolError:
        """Journal the call's failure for good, as the `ToolError` the run sees."""
        error = ToolError(f"Tool {self.tool.name!r} {how}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        await ex.failed(key, "tool", error, started, durable=self.write)
        return error


class WriteCalls(ToolCalls):
    """The path of a write tool's call: it journals `started` before each attempt, so
    that every attempt, and a resume's, carries the same idempotency key."""

    __slots__ = ("before", "resumed")

    write = durable = True

    def __init__(
        self, tool: Tool, arguments: dict[str, Any], targets: tuple[Target], resumed: bool
    ) -> None:
        super().__init__(tool, arguments, targets)
        self.before = self._started
        self.resumed = resumed
        """A write that started before a crash: its first attempt here has its entry."""

    async def _started(self, ex: Execution, key: str) -> None:
        """Before each attempt: the `started` entry, committed."""
        if self.resumed:
            # A write that started before a crash runs again with no new journal
            # entry: the store confirms first that this process still owns the run.
            self.resumed = False
            await ex.log.confirm_owner()
            return
        await ex.log.record(key, "tool", WriteStarted(), time.time(), durable=True)


def invoke(ex: Execution, key: str, tool: Tool, arguments: dict[str, Any]) -> Awaitable[Any]:
    """The call of `tool`, to await (the tool's own coroutine: no frame of ours
    stays above it while it runs)."""
    args: tuple[Any, ...] = (Context(ex, key),) if tool.takes_context else ()
    if tool.is_async:
        return tool.function(*args, **arguments)  # type: ignore[no-any-return]
    # Synchronous tools may block: run them off the event loop.
    return asyncio.to_thread(tool.function, *args, **arguments)
