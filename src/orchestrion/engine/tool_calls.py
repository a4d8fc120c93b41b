"""Executing one tool call under its policy: timeout, journaled retries, breaker.

A failed attempt that will be retried is a `failed` entry at the call's key with
`attempt` and `retry_in`; a resume continues after it. A write tool journals
`started` before each attempt, so every attempt, and a resume's, carries the
same idempotency key. It is retried only when its own policy has a `Retry`, and
inherits no timeout: the agent's and runtime's policies are written for reads.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from typing import Any

from orchestrion._json import clean_text, json_text
from orchestrion.agent import Agent
from orchestrion.engine.attempts import breaker_changed, resume_wait, retry_point
from orchestrion.engine.deadline import Deadline
from orchestrion.engine.events import Retrying
from orchestrion.engine.execution import Context, Execution, Suspended
from orchestrion.engine.journal import StepStatus
from orchestrion.engine.records import AttemptFailed, ToolReturned, WriteStarted
from orchestrion.errors import (
    AnswerError,
    BreakerOpen,
    DeterminismError,
    LeaseLost,
    RunHalted,
    ToolError,
    WriteUncertain,
    describe,
)
from orchestrion.messages import ToolCall, ToolResult
from orchestrion.policy import Policy, Settings, is_transient, retry_after
from orchestrion.redact import redact, redact_known
from orchestrion.tools.tool import ModelRetry, Tool

NO_SETTINGS = Settings()


def tool_settings(ex: Execution, agent: Agent[Any], tool: Tool) -> Settings:
    """The tool's policy over the agent's over the runtime's (a write tool takes
    only the breaker from the outer ones)."""
    own = tool.policy
    if tool.timeout is not None:
        own = Policy(timeout=tool.timeout) if own is None else replace(own, timeout=tool.timeout)
    outer = agent.policy.over(ex.policy) if agent.policy is not None else ex.policy
    if outer is not None and tool.effect == "write":
        outer = Policy(breaker=outer.breaker)
    policy = own.over(outer) if own is not None else outer
    return NO_SETTINGS if policy is None else policy.settings()


async def execute(
    ex: Execution,
    agent: Agent[Any],
    key: str,
    tool: Tool,
    call: ToolCall,
    arguments: dict[str, Any],
    note: str = "",
) -> ToolResult:
    """Run the tool; `note` prefixes what the model reads (e.g. that a human edited the call)."""
    write = tool.effect == "write"
    try:
        value, is_error, started = await _attempts(
            ex, key, tool, arguments, tool_settings(ex, agent, tool)
        )
    except asyncio.CancelledError:
        if write:  # cut off from outside (its branch's timeout), in a call or a retry's wait
            ex.cut_off.add(key)
        raise
    try:
        # What the model reads is what the journal holds (see `orchestrion._json`).
        content = clean_text(
            note + (value if isinstance(value, str) else json_text(value, "result"))
        )
    except TypeError as exc:
        how = f"returned a {type(value).__name__}, which is not JSON"
        raise await _failed(ex, key, tool, exc, started, how) from exc
    # What the model reads is what the journal keeps: an error's text (a `ModelRetry`
    # message, say) without any secret, a result without the secrets known as such.
    content = redact(content) if is_error else redact_known(content)
    returned = ToolReturned(content=content, is_error=is_error)
    await ex.completed(key, "tool", returned, started, durable=write)
    return ToolResult(call.id, call.name, content, is_error)


async def _attempts(
    ex: Execution, key: str, tool: Tool, arguments: dict[str, Any], settings: Settings
) -> tuple[Any, bool, float]:
    """(value, is_error, when the last attempt started), retrying as `settings` say."""
    write = tool.effect == "write"
    attempt, first = 0, 0.0
    failures = ex.failures.pop(key, None) if ex.failures else None
    if failures and (journaled := retry_point(failures)) is not None:  # else it starts over
        attempt, due, elapsed = journaled
        first = await resume_wait(due, elapsed)
    previous = ex.replay.get(key)
    ex.started(key, "tool")
    while True:
        attempt += 1
        started = time.time()
        if attempt == 1:
            first = started
        if write and (previous is None or previous.status is not StepStatus.STARTED):
            ex.writes.add(key)
            await ex.record(key, "tool", WriteStarted(), started, durable=True)
        elif write and ex.fence is not None:
            # A write that started before a crash runs again with no new journal
            # entry: the store confirms first that this process still owns the run.
            await ex.fence()
        previous = None
        try:
            value, is_error, expired = await _attempt(ex, key, tool, arguments, settings)
        except (Suspended, AnswerError, DeterminismError, RunHalted, LeaseLost):
            raise  # the run's own control flow and limits, not a failure of the tool
        except BreakerOpen as exc:
            return f"Tool {tool.name!r} is unavailable: {exc}", True, started
        except Exception as exc:
            failure: Exception = exc
            expired = False
        else:
            if not expired:
                return value, is_error, started
            failure = value
        retry = settings.retry
        # A synchronous tool cut off by its timeout may still be running in its
        # thread: a write is not called again beside it.
        overlapping = expired and write and not tool.is_async
        if retry is not None and is_transient(failure) and not overlapping:
            wait = retry.wait(attempt, retry_after(failure), time.time() - first, random.random())
            if wait is not None:
                await _retrying(ex, key, tool, failure, attempt, wait, started)
                continue
        if not expired:
            raise await _failed(ex, key, tool, failure, started, "raised") from failure
        if write:
            # The effect may or may not have happened: fail the whole run (no pattern
            # may re-plan around it) so a resume re-executes with the same key.
            await _failed(ex, key, tool, failure, started, "timed out")
            raise WriteUncertain(
                f"Write tool {tool.name!r} timed out after {settings.timeout} s ({key}); "
                "whether its effect happened is unknown. Resume the run: the call is "
                "made again with the same idempotency key."
            ) from failure
        return f"Tool {tool.name!r} timed out after {settings.timeout} s.", True, started


async def _attempt(
    ex: Execution, key: str, tool: Tool, arguments: dict[str, Any], settings: Settings
) -> tuple[Any, bool, bool]:
    """(value, is_error, expired) of one call, through the breaker and within the
    timeout; `expired`: the timeout ran out, and value is its `TimeoutError`."""
    if settings.breaker is None:
        return await _timed(ex, key, tool, arguments, settings.timeout)
    name = f"tool:{tool.name}"
    permit = await ex.breakers.acquire(name, settings.breaker)
    outcome: bool | None = None
    try:
        if permit.transition is not None:
            breaker_changed(ex, key, name, permit.transition)
        result = await _timed(ex, key, tool, arguments, settings.timeout)
        outcome = not result[2]
        return result
    except Exception as exc:
        outcome = False if is_transient(exc) else None
        raise
    finally:
        transition = await ex.breakers.release(permit, outcome)
        if transition is not None:
            breaker_changed(ex, key, name, transition)


async def _timed(
    ex: Execution, key: str, tool: Tool, arguments: dict[str, Any], timeout: float | None
) -> tuple[Any, bool, bool]:
    try:
        if timeout is None:
            return await invoke(ex, key, tool, arguments), False, False
        with Deadline(timeout) as deadline:
            return await invoke(ex, key, tool, arguments), False, False
    except ModelRetry as exc:
        return str(exc), True, False
    except TimeoutError as exc:
        if timeout is not None and deadline.expired:
            return exc, True, True
        raise


async def _retrying(
    ex: Execution, key: str, tool: Tool, exc: Exception, attempt: int, wait: float, started: float
) -> None:
    """Journal a failed attempt that will be retried, then wait."""
    error = ToolError(f"Tool {tool.name!r} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    failed = AttemptFailed(error=describe(error), attempt=attempt, retry_in=round(wait, 3))
    await ex.record(key, "tool", failed, started, durable=tool.effect == "write")
    ex.check_budget(None, ahead=wait)  # not a wait past the run's budget
    if ex.sink is not None:
        message = f"{type(exc).__name__}: {exc}"
        ex.sink(Retrying(ex.run_id, key, "tool", f"tool:{tool.name}", attempt, message, wait))
    await asyncio.sleep(wait)


async def _failed(
    ex: Execution, key: str, tool: Tool, exc: BaseException, started: float, how: str
) -> ToolError:
    error = ToolError(f"Tool {tool.name!r} {how}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    await ex.failed(key, "tool", error, started, durable=tool.effect == "write")
    return error


async def invoke(ex: Execution, key: str, tool: Tool, arguments: dict[str, Any]) -> Any:
    args: tuple[Any, ...] = (Context(ex, key),) if tool.takes_context else ()
    if tool.is_async:
        return await tool.function(*args, **arguments)
    # Synchronous tools may block: run them off the event loop.
    return await asyncio.to_thread(tool.function, *args, **arguments)
