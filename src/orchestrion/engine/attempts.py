"""The attempts of a model step: timeout, retries, circuit breaker and fallback
models, all journaled.

A failed attempt is a `failed` entry at the step's key carrying the model, the
attempt number and what came next: `retry_in` (seconds of the wait before the
next attempt) or `fallback` (the next model of the chain); neither means the step
failed. A resume continues after the last one: the attempts made are not made
again, and only what is left of a wait is waited. The completed entry names the
fallback model that answered (`"fallback": name`), if one did.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrion._json import as_number, as_str
from orchestrion.agent import Agent
from orchestrion.engine.deadline import Deadline
from orchestrion.engine.events import BreakerChanged, FallbackUsed, Retrying, StepFailed
from orchestrion.engine.journal import Entry, StepStatus
from orchestrion.errors import BreakerOpen, ModelError, OrchestrionError, RetryLater, describe
from orchestrion.messages import ModelRequest, ModelResponse
from orchestrion.models.base import Model
from orchestrion.models.with_policy import PolicyModel
from orchestrion.policy import (
    MODEL_TIMEOUT,
    Policy,
    Retry,
    Settings,
    is_transient,
    retry_after,
    status_code,
)

if TYPE_CHECKING:
    from orchestrion.engine.execution import Execution

MODEL_DEFAULTS = Policy(timeout=MODEL_TIMEOUT, retry=Retry())
DEFAULT_SETTINGS = MODEL_DEFAULTS.settings()


@dataclass(frozen=True, slots=True)
class Link:
    """One model of a fallback chain, with the settings its calls get."""

    model: Model
    settings: Settings


def model_chain(ex: Execution, agent: Agent[Any, Any]) -> tuple[Link, ...]:
    """The agent's model and its fallback models, each with its resolved settings."""
    primary = ex.model_for(agent.model, agent.name)
    outer = agent.policy.over(ex.policy) if agent.policy is not None else ex.policy
    if outer is None and not isinstance(primary, PolicyModel):
        return (Link(primary, DEFAULT_SETTINGS),)
    own = primary.policy if isinstance(primary, PolicyModel) else None
    models = [primary]
    for policy in (own, agent.policy, ex.policy):  # the innermost fallback models win
        if policy is not None and policy.fallback is not None:
            found = [f for f in policy.fallback if not isinstance(f, Agent)]
            if found or not policy.fallback:
                models += [ex.model_for(f, agent.name) for f in found]  # type: ignore[arg-type]
                break
    return tuple(
        Link(m, model_settings(m.policy.over(outer) if isinstance(m, PolicyModel) else outer))
        for m in models
    )


def model_settings(policy: Policy | None) -> Settings:
    return (MODEL_DEFAULTS if policy is None else policy.over(MODEL_DEFAULTS)).settings()


async def request_with_policy(
    ex: Execution, key: str, chain: Sequence[Link], request: ModelRequest
) -> tuple[ModelResponse, int]:
    """The response of the first model of `chain` that answers, and its position."""
    index = attempt = 0
    first = 0.0
    if ex.failures and (failures := ex.failures.pop(key, None)):
        index, attempt, due, elapsed = _resume_point(failures, chain)
        first = await resume_wait(due, elapsed)
    while True:
        link = chain[index]
        attempt += 1
        started = time.time()
        if attempt == 1:
            first = started
        if attempt > 1 or index > 0:
            ex.check_budget(link.model.name)
        try:
            if link.settings.breaker is None:
                return await _call(ex, key, link, request), index
            response, error, opened = await _guarded(ex, key, link, request)
            if error is None:
                assert response is not None
                return response, index
        except ModelError as exc:
            error, opened = exc, False
        except (OrchestrionError, AssertionError) as exc:  # AssertionError: a test fake's verdict
            await ex.failed(key, "model", exc, started)
            raise
        retry = link.settings.retry
        wait = None
        # An attempt that opened the circuit (or met it open) goes to the fallback.
        if retry is not None and not opened and is_transient(error):
            wait = retry.wait(attempt, retry_after(error), time.time() - first, random.random())
        result: dict[str, Any] = {**describe(error), "model": link.model.name, "attempt": attempt}
        if opened:
            result["opened_circuit"] = True
        following = chain[index + 1].model.name if wait is None and index + 1 < len(chain) else None
        if wait is not None:
            result["retry_in"] = round(wait, 3)
        elif following is not None:
            result["fallback"] = following
        await ex.record(key, "model", StepStatus.FAILED, result, started)
        message = f"{type(error).__name__}: {error}"
        if wait is not None:
            ex.check_budget(link.model.name, ahead=wait)  # not a wait past the budget
            if ex.sink is not None:
                ex.sink(Retrying(ex.run_id, key, "model", link.model.name, attempt, message, wait))
            await asyncio.sleep(wait)
        elif following is not None:
            if ex.sink is not None:
                ex.sink(FallbackUsed(ex.run_id, key, link.model.name, following, message))
            index, attempt = index + 1, 0
        else:
            if ex.sink is not None:
                ex.sink(StepFailed(ex.run_id, key, "model", message))
            raise _final(key, chain, index, attempt, error)


async def _guarded(
    ex: Execution, key: str, link: Link, request: ModelRequest
) -> tuple[ModelResponse | None, ModelError | BreakerOpen | None, bool]:
    """One call to `link.model` through its breaker: its response, or why it failed
    and whether that failure opened the circuit."""
    model, breaker = link.model, link.settings.breaker
    assert breaker is not None
    try:
        permit = await ex.breakers.acquire(model.name, breaker)
    except BreakerOpen as exc:
        return None, exc, False
    outcome: bool | None = None
    response = error = None
    try:
        if permit.transition is not None:
            breaker_changed(ex, key, model.name, permit.transition)
        response = await _call(ex, key, link, request)
        outcome = True
    except ModelError as exc:
        outcome = False if exc.transient else None
        error = exc
    finally:  # on cancellation and other errors too: a probe's slot is given back
        transition = await ex.breakers.release(permit, outcome)
        if transition is not None:
            breaker_changed(ex, key, model.name, transition)
    opened = transition is not None and transition[1] == "open"
    return response, error, opened


async def _call(ex: Execution, key: str, link: Link, request: ModelRequest) -> ModelResponse:
    """The request within the timeout; any failure of the model as a `ModelError`
    (a transient one for timeouts, connection errors, 429, 5xx and `RetryLater`)."""
    model, timeout = link.model, link.settings.timeout
    try:
        if timeout is None:
            return await ex.send(key, model, request)
        with Deadline(timeout) as deadline:
            return await ex.send(key, model, request)
    except TimeoutError as exc:
        expired = timeout is not None and deadline.expired
        what = f"did not answer within {timeout:g} s" if expired else f"timed out ({exc})"
        raise ModelError(f"Model {model.name} {what}.", transient=True) from exc
    except ModelError:
        raise
    except (OrchestrionError, AssertionError) as exc:
        if not isinstance(exc, RetryLater):
            raise
        raise _as_model_error(model, exc) from exc
    except Exception as exc:
        raise _as_model_error(model, exc) from exc


def _as_model_error(model: Model, exc: Exception) -> ModelError:
    return ModelError(
        f"Model {model.name} failed: {type(exc).__name__}: {exc}",
        status_code=status_code(exc),
        retry_after=retry_after(exc),
        transient=is_transient(exc),
    )


def breaker_changed(ex: Execution, key: str, name: str, transition: tuple[str, str]) -> None:
    if ex.sink is not None:
        ex.sink(BreakerChanged(ex.run_id, key, name, *transition))


def _final(
    key: str, chain: Sequence[Link], index: int, attempts: int, error: ModelError | BreakerOpen
) -> ModelError | BreakerOpen:
    """The error a step fails with once no model of its chain is left to try."""
    if index == 0:
        if attempts == 1 or not isinstance(error, ModelError):
            return error
        final = ModelError(
            f"{error} ({attempts} attempts)",
            status_code=error.status_code,
            retry_after=error.retry_after,
            transient=error.transient,
        )
        final.__cause__ = error.__cause__
        return final
    tried = ", ".join(link.model.name for link in chain[: index + 1])
    final = ModelError(
        f"Every model of the fallback chain failed at {key} ({tried}); the last: {error}",
        transient=is_transient(error),
    )
    final.__cause__ = error
    return final


def _resume_point(failures: list[Entry], chain: Sequence[Link]) -> tuple[int, int, float, float]:
    """(chain position, attempts made there, when the next may start, seconds from its
    first attempt to then) after the journaled failed attempts of a step."""
    names = [link.model.name for link in chain]
    retry = retry_point(failures)
    last = failures[-1].result if failures and isinstance(failures[-1].result, dict) else {}
    if retry is not None and last.get("model") in names:
        return (names.index(as_str(last["model"])), *retry)
    if last.get("fallback") in names:
        return names.index(as_str(last["fallback"])), 0, 0.0, 0.0
    return 0, 0, 0.0, 0.0  # the step had failed for good: a resume starts it over


def retry_point(failures: list[Entry]) -> tuple[int, float, float] | None:
    """(attempts made, when the next is due, seconds from the first attempt to then)
    when the last journaled failure of a call was to be retried, else None. The
    first attempt is the latest `attempt == 1` of the same target (`model`, if any)."""
    last = failures[-1] if failures else None
    if last is None or not isinstance(last.result, dict) or "retry_in" not in last.result:
        return None
    target, first = last.result.get("model"), last
    for entry in reversed(failures):
        if not isinstance(entry.result, dict) or entry.result.get("model") != target:
            break
        first = entry
        if entry.result.get("attempt") == 1:
            break
    due = last.ended_at + as_number(last.result["retry_in"])  # the wait counts towards max_time
    return int(as_number(last.result["attempt"])), due, due - first.started_at


async def resume_wait(due: float, elapsed: float) -> float:
    """Wait what is left until `due`, a journaled retry's time; return when the
    first attempt counts as started, so that `max_time` goes on where it was."""
    if (left := due - time.time()) > 0:
        await asyncio.sleep(left)
    return time.time() - elapsed
